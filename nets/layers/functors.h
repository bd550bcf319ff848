// The element-wise and reduction math of the layers, written once: each functor
// runs in a host loop (nets/layers/launch.h) or as a CUDA kernel (instantiated in
// nets/cuda/layer_functors.cu). f(i) handles index i of the launch; the comment on
// each says what i ranges over.
//
// Index conventions: a tensor of n samples of shape C x HW (HW = H*W, 1 for a
// feature vector) has element (s, c, p) at (s*C + c)*HW + p.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>

#include "kernels/hd.h"

namespace nbsgd::nets {

// dst = src, or dst += src (residual gradients, gradient accumulation). i: element.
struct CopyOrAddOp {
  const float* src;
  float* dst;
  bool accumulate;
  NBSGD_HD void operator()(size_t i) const { dst[i] = accumulate ? dst[i] + src[i] : src[i]; }
};

// y = a + b (residual add). i: element.
struct AddOp {
  const float* a;
  const float* b;
  float* y;
  NBSGD_HD void operator()(size_t i) const { y[i] = a[i] + b[i]; }
};

// i: element.
struct ReluForwardOp {
  const float* x;
  float* y;
  NBSGD_HD void operator()(size_t i) const { y[i] = x[i] > 0.0f ? x[i] : 0.0f; }
};

// The mask is taken from y (y > 0 exactly where x > 0). i: element.
struct ReluBackwardOp {
  const float* y;
  const float* dy;
  float* dx;
  bool accumulate;
  NBSGD_HD void operator()(size_t i) const {
    const float d = dy[i];  // loaded unconditionally: a select, not a branch, on the host
    const float g = y[i] > 0.0f ? d : 0.0f;
    dx[i] = accumulate ? dx[i] + g : g;
  }
};

// Functors whose math needs the channel of element i define at(i, c) and
// channels/hw; operator()(i) finds c by division (GPU), while the host launcher
// walks contiguous ranges and steps c once per plane (nets/layers/launch.h).
#define NBSGD_PER_CHANNEL_CALL \
  NBSGD_HD void operator()(size_t i) const { at(i, int((int64_t(i) / hw) % channels)); }

// y[s, c, p] += b[c]. i: element.
struct BiasAddOp {
  float* y;
  const float* b;
  int channels;
  int64_t hw;
  NBSGD_HD void at(size_t i, int c) const { y[i] += b[c]; }
  NBSGD_PER_CHANNEL_CALL
};

// Per-channel partial sums, the first half of a two-pass reduction that keeps
// enough threads busy on a GPU when there are few channels. Part p of channel c
// sums a share of the channel's n*HW elements (m, sample-major) of
//   Sum:      a
//   SqDev:    (a - shift[c])^2
//   ProdDev:  a * (b - shift[c])
// into partial[c*parts + p]. The share is m = p, p + parts, ... on a GPU
// (neighbouring threads read neighbouring addresses), or one contiguous range of m
// on the host (`contiguous`: one thread streams through memory, see LaneSums).
// i: c*parts + p.
enum class ChannelReduce { Sum, SqDev, ProdDev };

// The host's running sums for a contiguous range: eight of them, element q of a
// plane going to sum q % 8 (a plane's tail of fewer than 8 to sum 0), combined
// pairwise at the end. A single running sum is one chain of dependent adds (about
// 4 cycles each); eight independent ones vectorise. The order is fixed by the
// range, so every run gives the same bits.
struct LaneSums {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  NBSGD_HD float total() const { return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])); }
};

// Calls f(base, q0, q1) for each plane's piece [q0, q1) of the sample-major range
// [lo, hi) of channel c's elements; base is the piece's plane offset.
template <class F>
NBSGD_HD void for_channel_pieces(int64_t lo, int64_t hi, int64_t hw, int channels, int c, const F& f) {
  for (int64_t m = lo; m < hi;) {
    const int64_t s = m / hw, q0 = m - s * hw;
    const int64_t q1 = (hi - s * hw) < hw ? hi - s * hw : hw;
    f((s * channels + c) * hw, q0, q1);
    m = s * hw + q1;
  }
}

template <ChannelReduce K>
NBSGD_HD float reduce_term(const float* a, const float* b, int64_t at, float mu) {
  if constexpr (K == ChannelReduce::Sum) return a[at];
  else if constexpr (K == ChannelReduce::SqDev) return (a[at] - mu) * (a[at] - mu);
  else return a[at] * (b[at] - mu);
}

template <ChannelReduce K>
NBSGD_HD void lane_add(LaneSums& acc, const float* a, const float* b, int64_t base, int64_t q0, int64_t q1, float mu) {
  int64_t q = q0;
  for (; q + 8 <= q1; q += 8)
    for (int j = 0; j < 8; ++j) acc.s[j] += reduce_term<K>(a, b, base + q + j, mu);
  for (; q < q1; ++q) acc.s[0] += reduce_term<K>(a, b, base + q, mu);
}

struct ChannelPartialOp {
  const float* a;
  const float* b;
  const float* shift;
  float* partial;
  ChannelReduce kind;
  int n, channels, parts;
  int64_t hw;
  bool contiguous;
  NBSGD_HD float term(int64_t at, float mu) const {
    if (kind == ChannelReduce::Sum) return a[at];
    if (kind == ChannelReduce::SqDev) return (a[at] - mu) * (a[at] - mu);
    return a[at] * (b[at] - mu);
  }
  template <ChannelReduce K>
  NBSGD_HD float contiguous_sum(int c, int p, float mu) const {
    const int64_t m_end = int64_t(n) * hw;
    LaneSums acc;
    for_channel_pieces(m_end * p / parts, m_end * (p + 1) / parts, hw, channels, c,
                       [&](int64_t base, int64_t q0, int64_t q1) { lane_add<K>(acc, a, b, base, q0, q1, mu); });
    return acc.total();
  }
  NBSGD_HD void operator()(size_t i) const {
    const int c = int(i / size_t(parts));
    const int p = int(i % size_t(parts));
    const int64_t m_end = int64_t(n) * hw;
    const float mu = shift ? shift[c] : 0.0f;
    float acc = 0.0f;
    if (contiguous) {
      if (kind == ChannelReduce::Sum) acc = contiguous_sum<ChannelReduce::Sum>(c, p, mu);
      else if (kind == ChannelReduce::SqDev) acc = contiguous_sum<ChannelReduce::SqDev>(c, p, mu);
      else acc = contiguous_sum<ChannelReduce::ProdDev>(c, p, mu);
    } else {
      for (int64_t m = p; m < m_end; m += parts) {
        const int64_t s = m / hw, q = m - s * hw;
        acc += term((s * channels + c) * hw + q, mu);
      }
    }
    partial[i] = acc;
  }
};

// Host only: BatchNorm2d backward's two partial sums in one pass over dy and x,
// sum dy into dy_partial and sum dy*(x - mean) into dyx_partial, each in the
// order ChannelPartialOp's contiguous Sum and ProdDev use. i: c*parts + p.
struct BnBackwardPartialOp {
  const float* dy;
  const float* x;
  const float* mean;
  float* dy_partial;
  float* dyx_partial;
  int n, channels, parts;
  int64_t hw;
  NBSGD_HD void operator()(size_t i) const {
    const int c = int(i / size_t(parts));
    const int p = int(i % size_t(parts));
    const int64_t m_end = int64_t(n) * hw;
    const float mu = mean[c];
    LaneSums sdy, sdyx;
    for_channel_pieces(m_end * p / parts, m_end * (p + 1) / parts, hw, channels, c,
                       [&](int64_t base, int64_t q0, int64_t q1) {
                         lane_add<ChannelReduce::Sum>(sdy, dy, nullptr, base, q0, q1, 0.0f);
                         lane_add<ChannelReduce::ProdDev>(sdyx, dy, x, base, q0, q1, mu);
                       });
    dy_partial[i] = sdy.total();
    dyx_partial[i] = sdyx.total();
  }
};

// out[c] = scale * sum_p partial[c*parts + p]. i: channel.
struct ChannelFinishOp {
  const float* partial;
  float* out;
  int parts;
  float scale;
  NBSGD_HD void operator()(size_t c) const {
    float acc = 0.0f;
    for (int p = 0; p < parts; ++p) acc += partial[c * parts + p];
    out[c] = acc * scale;
  }
};

// BatchNorm2d, training, after the mean pass: the biased batch variance gives
// invstd (used by forward and backward), the unbiased one updates the running
// variance, as PyTorch does (momentum weighs the new value). i: channel.
struct BnStatsOp {
  const float* mean;
  const float* sq_partial;  // SqDev partial sums around mean
  float* invstd;
  float* running_mean;
  float* running_var;
  int parts;
  int64_t m;  // elements per channel, n*HW
  float eps, momentum;
  NBSGD_HD void operator()(size_t c) const {
    float ss = 0.0f;
    for (int p = 0; p < parts; ++p) ss += sq_partial[c * parts + p];
    const float var = ss / float(m);
    invstd[c] = 1.0f / sqrtf(var + eps);
    const float unbiased = m > 1 ? ss / float(m - 1) : var;
    running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean[c];
    running_var[c] = (1.0f - momentum) * running_var[c] + momentum * unbiased;
  }
};

// Eval mode: mean and invstd from the running statistics. i: channel.
struct BnEvalStatsOp {
  const float* running_mean;
  const float* running_var;
  float* mean;
  float* invstd;
  float eps;
  NBSGD_HD void operator()(size_t c) const {
    mean[c] = running_mean[c];
    invstd[c] = 1.0f / sqrtf(running_var[c] + eps);
  }
};

// y = gamma * (x - mean) * invstd + beta. i: element.
struct BnApplyOp {
  const float* x;
  const float* mean;
  const float* invstd;
  const float* gamma;
  const float* beta;
  float* y;
  int channels;
  int64_t hw;
  NBSGD_HD void at(size_t i, int c) const { y[i] = gamma[c] * (x[i] - mean[c]) * invstd[c] + beta[c]; }
  NBSGD_PER_CHANNEL_CALL
};

// Parameter gradients from the partial sums of dy and dy*(x - mean):
// dbeta = sum dy, dgamma = invstd * sum dy*(x - mean). i: channel.
struct BnParamGradOp {
  const float* dy_partial;
  const float* dyx_partial;
  const float* invstd;
  float* dgamma;
  float* dbeta;
  int parts;
  NBSGD_HD void operator()(size_t c) const {
    float sdy = 0.0f, sdyx = 0.0f;
    for (int p = 0; p < parts; ++p) {
      sdy += dy_partial[c * parts + p];
      sdyx += dyx_partial[c * parts + p];
    }
    dbeta[c] = sdy;
    dgamma[c] = sdyx * invstd[c];
  }
};

// dx = gamma * invstd / m * (m*dy - dbeta - xhat*dgamma), xhat = (x - mean)*invstd:
// the gradient through the batch statistics. i: element.
struct BnBackwardDataOp {
  const float* x;
  const float* dy;
  const float* mean;
  const float* invstd;
  const float* gamma;
  const float* dgamma;
  const float* dbeta;
  float* dx;
  int channels;
  int64_t hw;
  int64_t m;
  bool accumulate;
  NBSGD_HD void at(size_t i, int c) const {
    const float xhat = (x[i] - mean[c]) * invstd[c];
    const float g = gamma[c] * invstd[c] / float(m) * (float(m) * dy[i] - dbeta[c] - xhat * dgamma[c]);
    dx[i] = accumulate ? dx[i] + g : g;
  }
  NBSGD_PER_CHANNEL_CALL
};

// Max pooling, no padding, floor mode. argmax keeps the input index (within the
// sample's plane) of each output's maximum for the backward pass; the first
// maximum wins on ties. xp is the sample's plane; o the output's index.
NBSGD_HD void maxpool_window(const float* xp, float* y, int32_t* argmax, int64_t o, int w, int k, int stride, int oy,
                             int ox) {
  int best = (oy * stride) * w + ox * stride;
  float bv = xp[best];
  for (int dy = 0; dy < k; ++dy)
    for (int dx = 0; dx < k; ++dx) {
      const int at = (oy * stride + dy) * w + ox * stride + dx;
      const float v = xp[at];
      const bool gt = v > bv;  // selects, not a branch the data makes unpredictable
      bv = gt ? v : bv;
      best = gt ? at : best;
    }
  y[o] = bv;
  argmax[o] = best;
}

// i: output element (s*C + c)*OH*OW + oy*OW + ox.
struct MaxPoolForwardOp {
  const float* x;
  float* y;
  int32_t* argmax;
  int h, w, oh, ow, k, stride;
  NBSGD_HD void operator()(size_t i) const {
    const int64_t plane = int64_t(i) / (int64_t(oh) * ow);
    const int r = int(int64_t(i) - plane * oh * ow);
    maxpool_window(x + plane * h * w, y, argmax, int64_t(i), w, k, stride, r / ow, r % ow);
  }
};

// The same outputs a row at a time (the host's order: no division per output).
// i: output row (s*C + c)*OH + oy.
struct MaxPoolRowForwardOp {
  const float* x;
  float* y;
  int32_t* argmax;
  int h, w, oh, ow, k, stride;
  NBSGD_HD void operator()(size_t i) const {
    const int64_t plane = int64_t(i) / oh;
    const int oy = int(int64_t(i) - plane * oh);
    const float* xp = x + plane * h * w;
    for (int ox = 0; ox < ow; ++ox) maxpool_window(xp, y, argmax, int64_t(i) * ow + ox, w, k, stride, oy, ox);
  }
};

// Backward for windows that do not overlap (k <= stride), the host's order: output
// row oy owns input rows [oy*stride, oy*stride + stride) (the last one also the
// rows below, which no window covers), clears them unless accumulating, and adds
// each output's dy at its argmax, which lies in those rows. Every input element
// gets at most one dy, so the sums are those of MaxPoolBackwardOp.
// i: output row (s*C + c)*OH + oy.
struct MaxPoolScatterBackwardOp {
  const float* dy;
  const int32_t* argmax;
  float* dx;
  int h, w, oh, ow, stride;
  bool accumulate;
  NBSGD_HD void operator()(size_t i) const {
    const int64_t plane = int64_t(i) / oh;
    const int oy = int(int64_t(i) - plane * oh);
    float* xp = dx + plane * h * w;
    if (!accumulate) {
      const int r0 = oy * stride, r1 = oy == oh - 1 ? h : r0 + stride;
      for (int q = r0 * w; q < r1 * w; ++q) xp[q] = 0.0f;
    }
    for (int ox = 0; ox < ow; ++ox) {
      const int64_t o = int64_t(i) * ow + ox;
      xp[argmax[o]] += dy[o];
    }
  }
};

// Gathers, per input row, the gradients of every window whose maximum lies in the
// row (no atomics, overlapping windows allowed, no division per element): the
// row is cleared (unless accumulating), then each window of the output rows that
// cover it adds dy where its argmax falls in the row. i: input row (plane*h + iy).
struct MaxPoolBackwardOp {
  const float* dy;
  const int32_t* argmax;
  float* dx;
  int h, w, oh, ow, k, stride;
  bool accumulate;
  NBSGD_HD void operator()(size_t i) const {
    const int64_t plane = int64_t(i) / h;
    const int iy = int(int64_t(i) - plane * h);
    float* row = dx + int64_t(i) * w;
    if (!accumulate)
      for (int ix = 0; ix < w; ++ix) row[ix] = 0.0f;
    // Output rows oy with oy*stride <= iy < oy*stride + k.
    const int oy_lo = iy >= k ? (iy - k) / stride + 1 : 0, oy_hi = iy / stride < oh - 1 ? iy / stride : oh - 1;
    const int lo = iy * w, hi = lo + w;
    for (int oy = oy_lo; oy <= oy_hi; ++oy)
      for (int ox = 0; ox < ow; ++ox) {
        const int64_t o = (plane * oh + oy) * ow + ox;
        const int a = argmax[o];
        if (a >= lo && a < hi) row[a - lo] += dy[o];
      }
  }
};

// Global average pool: y[s, c] = mean over the plane. i: (s*C + c).
struct AvgPoolForwardOp {
  const float* x;
  float* y;
  int64_t hw;
  NBSGD_HD void operator()(size_t i) const {
    float acc = 0.0f;
    for (int64_t q = 0; q < hw; ++q) acc += x[int64_t(i) * hw + q];
    y[i] = acc / float(hw);
  }
};

// i: input element.
struct AvgPoolBackwardOp {
  const float* dy;
  float* dx;
  int64_t hw;
  bool accumulate;
  NBSGD_HD void operator()(size_t i) const {
    const float g = dy[int64_t(i) / hw] / float(hw);
    dx[i] = accumulate ? dx[i] + g : g;
  }
};

// Softmax cross-entropy, numerically stable (log-sum-exp around the row maximum).
// Per sample: loss = logsumexp(z) - z[label], correct = (argmax z == label), and,
// when dlogits is set, dlogits = softmax(z) - onehot(label): the gradient of the
// loss SUM (not divided by the batch size: gradients are sums over samples). A
// label outside [0, classes) gives a NaN loss, so it cannot pass unnoticed.
// i: sample.
struct SoftmaxXentOp {
  const float* logits;
  const int32_t* labels;
  float* dlogits;
  float* loss;
  float* correct;
  int classes;
  NBSGD_HD void operator()(size_t i) const {
    const float* z = logits + int64_t(i) * classes;
    const int y = labels[i];
    int best = 0;
    float zmax = z[0];
    for (int k = 1; k < classes; ++k)
      if (z[k] > zmax) {
        zmax = z[k];
        best = k;
      }
    float se = 0.0f;
    for (int k = 0; k < classes; ++k) se += expf(z[k] - zmax);
    const float lse = zmax + logf(se);
    const bool valid = y >= 0 && y < classes;
    loss[i] = valid ? lse - z[y] : nanf("");
    correct[i] = (valid && best == y) ? 1.0f : 0.0f;
    if (dlogits) {
      float* d = dlogits + int64_t(i) * classes;
      for (int k = 0; k < classes; ++k) d[k] = expf(z[k] - lse) - (k == y ? 1.0f : 0.0f);
    }
  }
};

// Sums the per-sample losses and hits in one thread, in sample order, so the
// result is the same on every backend and every run. Training writes the
// contract's tail [count, loss_sum]; evaluation adds [loss_sum, correct] into out.
// i: 0 only.
struct LossTotalsOp {
  const float* loss;
  const float* correct;
  float* out;
  int n;
  bool evaluate;
  NBSGD_HD void operator()(size_t) const {
    float l = 0.0f, c = 0.0f;
    for (int s = 0; s < n; ++s) {
      l += loss[s];
      c += correct[s];
    }
    if (evaluate) {
      out[0] += l;
      out[1] += c;
    } else {
      out[0] = float(n);
      out[1] = l;
    }
  }
};

}  // namespace nbsgd::nets
