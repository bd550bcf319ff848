// Plain-loop double-precision twins of every layer (the llm.c habit: a CPU
// reference with the same meaning as the fast code). Finite differences check the
// twins' backward passes; the backend layers are then compared to the twins.
// Parameters are laid out as the layers declare them (weight, then bias; BN:
// weight, bias; buffers: running_mean, running_var).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "nets/layers/layer.h"

namespace nbsgd::test {

using Vec = std::vector<double>;

struct RefLayer {
  nets::LayerSpec spec;
  std::vector<nets::Shape> in;
  nets::Shape out;
  int n = 1;

  static constexpr double kEps = 1e-5, kMomentum = 0.1;

  // y for inputs xs; train-mode BatchNorm updates `buffers` if given.
  Vec forward(const std::vector<Vec>& xs, const Vec& p, bool train, Vec* buffers) const {
    using nets::LayerKind;
    const Vec& x = xs[0];
    Vec y(size_t(n) * out.size(), 0.0);
    const nets::Shape& s = in[0];
    switch (spec.kind) {
      case LayerKind::Linear: {
        const int64_t fi = s.size(), fo = out.c;
        for (int b = 0; b < n; ++b)
          for (int64_t o = 0; o < fo; ++o) {
            double acc = spec.bias ? p[fo * fi + o] : 0.0;
            for (int64_t i = 0; i < fi; ++i) acc += p[o * fi + i] * x[b * fi + i];
            y[b * fo + o] = acc;
          }
        break;
      }
      case LayerKind::Conv2d: {
        const int k = spec.kernel;
        for (int b = 0; b < n; ++b)
          for (int o = 0; o < out.c; ++o)
            for (int oy = 0; oy < out.h; ++oy)
              for (int ox = 0; ox < out.w; ++ox) {
                double acc = spec.bias ? p[size_t(out.c) * s.c * k * k + o] : 0.0;
                for (int c = 0; c < s.c; ++c)
                  for (int ky = 0; ky < k; ++ky)
                    for (int kx = 0; kx < k; ++kx) {
                      const int iy = oy * spec.stride - spec.pad + ky, ix = ox * spec.stride - spec.pad + kx;
                      if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                      acc += p[((size_t(o) * s.c + c) * k + ky) * k + kx] * x[((size_t(b) * s.c + c) * s.h + iy) * s.w + ix];
                    }
                y[((size_t(b) * out.c + o) * out.h + oy) * out.w + ox] = acc;
              }
        break;
      }
      case LayerKind::BatchNorm2d: {
        const int64_t hw = int64_t(s.h) * s.w, m = n * hw;
        for (int c = 0; c < s.c; ++c) {
          double mean, var;
          if (train) {
            mean = 0;
            for (int b = 0; b < n; ++b)
              for (int64_t q = 0; q < hw; ++q) mean += x[(b * s.c + c) * hw + q];
            mean /= double(m);
            var = 0;
            for (int b = 0; b < n; ++b)
              for (int64_t q = 0; q < hw; ++q) var += std::pow(x[(b * s.c + c) * hw + q] - mean, 2);
            if (buffers) {
              (*buffers)[c] = (1 - kMomentum) * (*buffers)[c] + kMomentum * mean;
              (*buffers)[s.c + c] = (1 - kMomentum) * (*buffers)[s.c + c] + kMomentum * var / double(m - 1);
            }
            var /= double(m);
          } else {
            mean = (*buffers)[c];
            var = (*buffers)[s.c + c];
          }
          const double inv = 1.0 / std::sqrt(var + kEps);
          for (int b = 0; b < n; ++b)
            for (int64_t q = 0; q < hw; ++q) {
              const int64_t at = (b * s.c + c) * hw + q;
              y[at] = p[c] * (x[at] - mean) * inv + p[s.c + c];
            }
        }
        break;
      }
      case LayerKind::ReLU:
        for (size_t i = 0; i < y.size(); ++i) y[i] = std::max(0.0, x[i]);
        break;
      case LayerKind::Flatten: y = x; break;
      case LayerKind::Add:
        for (size_t i = 0; i < y.size(); ++i) y[i] = x[i] + xs[1][i];
        break;
      case LayerKind::GlobalAvgPool: {
        const int64_t hw = int64_t(s.h) * s.w;
        for (int64_t i = 0; i < int64_t(y.size()); ++i) {
          double acc = 0;
          for (int64_t q = 0; q < hw; ++q) acc += x[i * hw + q];
          y[i] = acc / double(hw);
        }
        break;
      }
      case LayerKind::MaxPool2d: {
        for (int64_t pl = 0; pl < int64_t(n) * s.c; ++pl)
          for (int oy = 0; oy < out.h; ++oy)
            for (int ox = 0; ox < out.w; ++ox) {
              double best = -INFINITY;
              for (int ky = 0; ky < spec.kernel; ++ky)
                for (int kx = 0; kx < spec.kernel; ++kx)
                  best = std::max(best, x[(pl * s.h + oy * spec.stride + ky) * s.w + ox * spec.stride + kx]);
              y[(pl * out.h + oy) * out.w + ox] = best;
            }
        break;
      }
    }
    return y;
  }

  // Gradients of sum(y * dy) with respect to every input and parameter.
  void backward(const std::vector<Vec>& xs, const Vec& p, const Vec& dy, std::vector<Vec>& dxs, Vec& dp) const {
    using nets::LayerKind;
    const Vec& x = xs[0];
    const nets::Shape& s = in[0];
    dxs.assign(xs.size(), Vec());
    for (size_t i = 0; i < xs.size(); ++i) dxs[i].assign(xs[i].size(), 0.0);
    dp.assign(p.size(), 0.0);
    Vec& dx = dxs[0];
    switch (spec.kind) {
      case LayerKind::Linear: {
        const int64_t fi = s.size(), fo = out.c;
        for (int b = 0; b < n; ++b)
          for (int64_t o = 0; o < fo; ++o) {
            const double g = dy[b * fo + o];
            if (spec.bias) dp[fo * fi + o] += g;
            for (int64_t i = 0; i < fi; ++i) {
              dp[o * fi + i] += g * x[b * fi + i];
              dx[b * fi + i] += g * p[o * fi + i];
            }
          }
        break;
      }
      case LayerKind::Conv2d: {
        const int k = spec.kernel;
        for (int b = 0; b < n; ++b)
          for (int o = 0; o < out.c; ++o)
            for (int oy = 0; oy < out.h; ++oy)
              for (int ox = 0; ox < out.w; ++ox) {
                const double g = dy[((size_t(b) * out.c + o) * out.h + oy) * out.w + ox];
                if (spec.bias) dp[size_t(out.c) * s.c * k * k + o] += g;
                for (int c = 0; c < s.c; ++c)
                  for (int ky = 0; ky < k; ++ky)
                    for (int kx = 0; kx < k; ++kx) {
                      const int iy = oy * spec.stride - spec.pad + ky, ix = ox * spec.stride - spec.pad + kx;
                      if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                      const size_t wi = ((size_t(o) * s.c + c) * k + ky) * k + kx;
                      const size_t xi = ((size_t(b) * s.c + c) * s.h + iy) * s.w + ix;
                      dp[wi] += g * x[xi];
                      dx[xi] += g * p[wi];
                    }
              }
        break;
      }
      case LayerKind::BatchNorm2d: {
        const int64_t hw = int64_t(s.h) * s.w;
        const double m = double(n * hw);
        for (int c = 0; c < s.c; ++c) {
          double mean = 0, var = 0;
          for (int b = 0; b < n; ++b)
            for (int64_t q = 0; q < hw; ++q) mean += x[(b * s.c + c) * hw + q];
          mean /= m;
          for (int b = 0; b < n; ++b)
            for (int64_t q = 0; q < hw; ++q) var += std::pow(x[(b * s.c + c) * hw + q] - mean, 2);
          const double inv = 1.0 / std::sqrt(var / m + kEps);
          double sdy = 0, sdyxh = 0;
          for (int b = 0; b < n; ++b)
            for (int64_t q = 0; q < hw; ++q) {
              const int64_t at = (b * s.c + c) * hw + q;
              sdy += dy[at];
              sdyxh += dy[at] * (x[at] - mean) * inv;
            }
          dp[c] = sdyxh;
          dp[s.c + c] = sdy;
          for (int b = 0; b < n; ++b)
            for (int64_t q = 0; q < hw; ++q) {
              const int64_t at = (b * s.c + c) * hw + q;
              const double xh = (x[at] - mean) * inv;
              dx[at] = p[c] * inv / m * (m * dy[at] - sdy - xh * sdyxh);
            }
        }
        break;
      }
      case LayerKind::ReLU:
        for (size_t i = 0; i < dx.size(); ++i) dx[i] = x[i] > 0 ? dy[i] : 0.0;
        break;
      case LayerKind::Flatten: dx = dy; break;
      case LayerKind::Add:
        dxs[0] = dy;
        dxs[1] = dy;
        break;
      case LayerKind::GlobalAvgPool: {
        const int64_t hw = int64_t(s.h) * s.w;
        for (int64_t i = 0; i < int64_t(dx.size()); ++i) dx[i] = dy[i / hw] / double(hw);
        break;
      }
      case LayerKind::MaxPool2d: {
        for (int64_t pl = 0; pl < int64_t(n) * s.c; ++pl)
          for (int oy = 0; oy < out.h; ++oy)
            for (int ox = 0; ox < out.w; ++ox) {
              int64_t arg = -1;
              double best = -INFINITY;
              for (int ky = 0; ky < spec.kernel; ++ky)
                for (int kx = 0; kx < spec.kernel; ++kx) {
                  const int64_t at = (pl * s.h + oy * spec.stride + ky) * s.w + ox * spec.stride + kx;
                  if (x[at] > best) {
                    best = x[at];
                    arg = at;
                  }
                }
              dx[arg] += dy[(pl * out.h + oy) * out.w + ox];
            }
        break;
      }
    }
  }
};

// sum(y * r) of the twin, the scalar the finite differences differentiate.
inline double ref_objective(const RefLayer& L, const std::vector<Vec>& xs, const Vec& p, const Vec& r) {
  const Vec y = L.forward(xs, p, true, nullptr);
  double acc = 0;
  for (size_t i = 0; i < y.size(); ++i) acc += y[i] * r[i];
  return acc;
}

}  // namespace nbsgd::test

#include "nets/models.h"

namespace nbsgd::test {

// A whole net in double precision, built from the twins: the loss sum of softmax
// cross-entropy over n samples and, if asked, its gradient with respect to the
// flat parameter vector (laid out as Model lays it out: layers in order, each
// layer's tensors in declaration order). BatchNorm in training mode.
struct RefModelResult {
  double loss = 0;
  Vec grad;
};

inline RefModelResult ref_model(const nets::NetSpec& net, const Vec& p, const Vec& x, const std::vector<int32_t>& labels,
                                int n, bool want_grad) {
  using nets::LayerKind;
  const size_t L = net.layers.size();
  std::vector<RefLayer> layers;
  std::vector<size_t> poff;
  size_t P = 0;
  std::vector<nets::Shape> shapes;
  for (const auto& spec : net.layers) {
    std::vector<nets::Shape> in;
    for (int i : spec.inputs) in.push_back(i < 0 ? net.input : shapes[i]);
    const nets::Shape out = nets::infer_shape(spec, in);
    shapes.push_back(out);
    layers.push_back({spec, in, out, n});
    poff.push_back(P);
    if (spec.kind == LayerKind::Linear) P += size_t(out.c) * in[0].size() + (spec.bias ? out.c : 0);
    if (spec.kind == LayerKind::Conv2d) P += size_t(out.c) * in[0].c * spec.kernel * spec.kernel + (spec.bias ? out.c : 0);
    if (spec.kind == LayerKind::BatchNorm2d) P += 2 * size_t(in[0].c);
  }
  auto slice = [&](size_t i) {
    const size_t end = i + 1 < L ? poff[i + 1] : P;
    return Vec(p.begin() + poff[i], p.begin() + end);
  };
  std::vector<Vec> acts(L);
  auto inputs = [&](size_t i) {
    std::vector<Vec> xs;
    for (int j : net.layers[i].inputs) xs.push_back(j < 0 ? x : acts[j]);
    return xs;
  };
  for (size_t i = 0; i < L; ++i) acts[i] = layers[i].forward(inputs(i), slice(i), true, nullptr);

  const int K = net.classes;
  RefModelResult r;
  Vec dz(size_t(n) * K);
  for (int s = 0; s < n; ++s) {
    const double* z = acts[L - 1].data() + size_t(s) * K;
    const double mx = *std::max_element(z, z + K);
    double se = 0;
    for (int k = 0; k < K; ++k) se += std::exp(z[k] - mx);
    r.loss += mx + std::log(se) - z[labels[s]];
    for (int k = 0; k < K; ++k) dz[s * K + k] = std::exp(z[k] - mx) / se - (k == labels[s]);
  }
  if (!want_grad) return r;
  r.grad.assign(P, 0.0);
  std::vector<Vec> grads(L);
  for (size_t i = 0; i < L; ++i) grads[i].assign(acts[i].size(), 0.0);
  grads[L - 1] = dz;
  for (size_t i = L; i-- > 0;) {
    std::vector<Vec> dxs;
    Vec dp;
    layers[i].backward(inputs(i), slice(i), grads[i], dxs, dp);
    for (size_t k = 0; k < dp.size(); ++k) r.grad[poff[i] + k] = dp[k];
    for (size_t j = 0; j < net.layers[i].inputs.size(); ++j) {
      const int in = net.layers[i].inputs[j];
      if (in < 0) continue;
      for (size_t k = 0; k < dxs[j].size(); ++k) grads[in][k] += dxs[j][k];
    }
  }
  return r;
}

}  // namespace nbsgd::test
