// Every layer's forward and backward on a backend, against the double-precision
// twins of layers_reference.h, whose backward passes are in turn checked by central
// finite differences. Random shapes with a fixed seed; odd sizes on purpose.
//
// Tolerances (stated, not tuned to pass):
//   twin vs finite differences (double, h = 1e-6): |fd - g| <= 1e-6 * (1 + |g|)
//   backend (fp32) vs twin: max|got - ref| <= 2e-4 * max(1, max|ref|)  (GEMMs,
//     convolutions and reductions accumulate a few hundred fp32 terms)
#pragma once

#include <cmath>
#include <random>

#include "bodies/layers_reference.h"
#include "nets/layers/layer.h"
#include "nets/layers/loss.h"
#include "nets/model.h"
#include "runtime/device/context.h"
#include "support/backend_test.h"

namespace nbsgd::test {

class LayersTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped()) return;
    Device d;
    if (backend() == Backend::Cuda) {
      d = discover_devices().devices[0];
    } else {
      d.backend = Backend::Host;
      d.name = "host0";
      d.kind = "host";
    }
    ctx_ = std::make_unique<DeviceContext>(d, ClockKind::Real);
  }

  static Vec random_vec(size_t n, std::mt19937& rng, double lo = -1.0, double hi = 1.0) {
    std::uniform_real_distribution<double> u(lo, hi);
    Vec v(n);
    for (auto& x : v) x = u(rng);
    return v;
  }
  Buffer to_device(const Vec& v) {
    std::vector<float> f(v.begin(), v.end());
    if (f.empty()) f.push_back(0.0f);
    return upload(ctx_->compute(), f);
  }
  Vec from_device(const Buffer& b, size_t n) {
    std::vector<float> f = download<float>(ctx_->compute(), b, n);
    return Vec(f.begin(), f.end());
  }
  static void expect_close(const Vec& got, const Vec& want, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    double scale = 1.0, err = 0.0;
    size_t worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      scale = std::max(scale, std::fabs(want[i]));
      if (std::fabs(got[i] - want[i]) > err) {
        err = std::fabs(got[i] - want[i]);
        worst = i;
      }
    }
    EXPECT_LE(err, 2e-4 * scale) << what << ": worst at " << worst << " got " << got[worst] << " want " << want[worst];
  }

  // The twin's backward against central differences of its forward.
  static void check_twin_by_fd(const RefLayer& L, std::vector<Vec> xs, Vec p, const Vec& r, const std::string& what) {
    std::vector<Vec> dxs;
    Vec dp;
    L.backward(xs, p, r, dxs, dp);
    const double h = 1e-6;
    auto check = [&](Vec& v, const Vec& g, const std::string& name) {
      for (size_t i = 0; i < v.size(); ++i) {
        const double keep = v[i];
        v[i] = keep + h;
        const double up = ref_objective(L, xs, p, r);
        v[i] = keep - h;
        const double down = ref_objective(L, xs, p, r);
        v[i] = keep;
        const double fd = (up - down) / (2 * h);
        ASSERT_NEAR(fd, g[i], 1e-6 * (1 + std::fabs(g[i]))) << what << " " << name << "[" << i << "]";
      }
    };
    for (size_t k = 0; k < xs.size(); ++k) check(xs[k], dxs[k], "dx" + std::to_string(k));
    check(p, dp, "dparams");
  }

  // The whole check for one layer spec on n samples.
  void check_layer(const nets::LayerSpec& spec, const std::vector<nets::Shape>& in, int n, unsigned seed) {
    SCOPED_TRACE(std::string(nets::to_string(spec.kind)) + " " + spec.name);
    std::mt19937 rng(seed);
    auto layer = nets::make_layer(*ctx_, spec, in, n);
    RefLayer L{spec, in, layer->out_shape(), n};
    ASSERT_EQ(L.out, nets::infer_shape(spec, in));

    size_t np = 0, nb = 0;
    for (const auto& d : layer->params()) np += d.numel();
    for (const auto& d : layer->buffers()) nb += d.numel();
    Vec p = random_vec(np, rng);
    if (spec.kind == nets::LayerKind::BatchNorm2d)
      for (int c = 0; c < in[0].c; ++c) p[c] = 0.5 + std::fabs(p[c]);  // gamma away from 0
    Vec buffers(nb, 0.0);
    for (size_t i = nb / 2; i < nb; ++i) buffers[i] = 1.0;  // running_var starts at 1
    std::vector<Vec> xs;
    for (const auto& s : in) xs.push_back(random_vec(size_t(n) * s.size(), rng, -2.0, 2.0));
    const Vec r = random_vec(size_t(n) * L.out.size(), rng);

    // Finite differences cost (inputs + parameters) forward passes: only on small cases.
    size_t n_in = np;
    for (const Vec& x : xs) n_in += x.size();
    if (double(n_in) * double(r.size()) <= 2e6) check_twin_by_fd(L, xs, p, r, "twin");

    Buffer dp_params = to_device(p), dp_buf = to_device(buffers), dgrad = to_device(Vec(std::max<size_t>(np, 1), 0.0));
    layer->bind(dp_params.as<float>(), dp_buf.as<float>());
    std::vector<Buffer> dx_in, dx_grad;
    std::vector<const float*> xptr;
    std::vector<float*> gptr;
    for (const Vec& x : xs) {
      dx_in.push_back(to_device(x));
      xptr.push_back(dx_in.back().as<float>());
      dx_grad.push_back(to_device(Vec(x.size(), 0.5)));
      gptr.push_back(dx_grad.back().as<float>());
    }
    Buffer dy = to_device(r), y = to_device(Vec(size_t(n) * L.out.size(), 0.0));

    // Forward (train) and the running statistics it updates.
    Vec ref_buffers = buffers;
    const Vec ref_y = L.forward(xs, p, true, &ref_buffers);
    layer->forward(xptr, y.as<float>(), n, true);
    expect_close(from_device(y, ref_y.size()), ref_y, "forward");
    if (nb) expect_close(from_device(dp_buf, nb), ref_buffers, "running statistics");

    std::vector<Vec> ref_dx;
    Vec ref_dp;
    L.backward(xs, p, r, ref_dx, ref_dp);
    // Write mode, then accumulate mode on top of what was written.
    for (int pass = 0; pass < 2; ++pass) {
      bool acc[2] = {pass == 1, pass == 1};
      layer->backward(xptr, y.as<float>(), dy.as<float>(), gptr, std::span<const bool>(acc, xs.size()),
                      dgrad.as<float>(), n);
      for (size_t k = 0; k < xs.size(); ++k) {
        Vec want = ref_dx[k];
        if (pass == 1)
          for (double& v : want) v *= 2.0;
        expect_close(from_device(dx_grad[k], want.size()), want, "dx" + std::to_string(k) + (pass ? " (add)" : ""));
      }
      if (np) expect_close(from_device(dgrad, np), ref_dp, pass ? "dparams (again)" : "dparams");
    }
    // A null dx is skipped (the network input's gradient is never computed).
    std::vector<float*> none(xs.size(), nullptr);
    bool acc[2] = {false, false};
    layer->backward(xptr, y.as<float>(), dy.as<float>(), none, std::span<const bool>(acc, xs.size()),
                    dgrad.as<float>(), n);
    ctx_->compute().synchronize();

    if (spec.kind == nets::LayerKind::BatchNorm2d) {  // eval mode uses the running statistics
      const Vec ref_eval = L.forward(xs, p, false, &ref_buffers);
      layer->forward(xptr, y.as<float>(), n, false);
      expect_close(from_device(y, ref_eval.size()), ref_eval, "forward (eval)");
    }
  }

  std::unique_ptr<DeviceContext> ctx_;
};

using nets::LayerKind;
using nets::LayerSpec;
using nets::Shape;

TEST_P(LayersTest, LinearMatchesTwin) {
  check_layer({LayerKind::Linear, "fc", {-1}, 7, 0, 1, 0, true}, {{3, 2, 2}}, 5, 1);
  check_layer({LayerKind::Linear, "fc", {-1}, 3, 0, 1, 0, false}, {{9, 1, 1}}, 1, 2);
  check_layer({LayerKind::Linear, "fc", {-1}, 33, 0, 1, 0, true}, {{17, 1, 1}}, 300, 3);  // > 1 reduction part
}

TEST_P(LayersTest, Conv2dMatchesTwin) {
  check_layer({LayerKind::Conv2d, "conv", {-1}, 4, 3, 2, 1, true}, {{3, 7, 6}}, 3, 4);
  check_layer({LayerKind::Conv2d, "conv", {-1}, 5, 1, 2, 0, false}, {{2, 5, 5}}, 2, 5);
  check_layer({LayerKind::Conv2d, "conv", {-1}, 2, 5, 1, 2, true}, {{1, 8, 9}}, 2, 6);
  check_layer({LayerKind::Conv2d, "conv", {-1}, 3, 3, 1, 1, false}, {{4, 6, 6}}, 1, 7);
  // Channel counts of the CIFAR nets, where oneDNN picks its blocked layouts
  // (nChw16c and friends) and the layer reorders around the call.
  check_layer({LayerKind::Conv2d, "conv", {-1}, 16, 3, 1, 1, false}, {{16, 6, 5}}, 3, 17);
  check_layer({LayerKind::Conv2d, "conv", {-1}, 32, 3, 2, 1, false}, {{16, 7, 7}}, 2, 18);
  check_layer({LayerKind::Conv2d, "conv", {-1}, 32, 1, 2, 0, false}, {{16, 6, 6}}, 2, 19);
  check_layer({LayerKind::Conv2d, "conv", {-1}, 16, 5, 1, 0, true}, {{6, 9, 9}}, 3, 20);  // LeNet's conv2 shape
}

TEST_P(LayersTest, BatchNormMatchesTwin) {
  check_layer({LayerKind::BatchNorm2d, "bn", {-1}}, {{3, 5, 4}}, 4, 8);
  check_layer({LayerKind::BatchNorm2d, "bn", {-1}}, {{2, 16, 16}}, 3, 9);  // several reduction parts
  check_layer({LayerKind::BatchNorm2d, "bn", {-1}}, {{5, 1, 1}}, 2, 10);
}

TEST_P(LayersTest, ElementwiseLayersMatchTwin) {
  check_layer({LayerKind::ReLU, "", {-1}}, {{3, 5, 7}}, 3, 11);
  check_layer({LayerKind::MaxPool2d, "", {-1}, 0, 2, 2}, {{2, 6, 7}}, 3, 12);  // odd width: floor mode
  check_layer({LayerKind::MaxPool2d, "", {-1}, 0, 3, 2}, {{2, 7, 7}}, 2, 13);  // overlapping windows
  check_layer({LayerKind::MaxPool2d, "", {-1}, 0, 2, 2}, {{3, 7, 6}}, 2, 21);  // odd height: a row no window covers
  check_layer({LayerKind::MaxPool2d, "", {-1}, 0, 2, 3}, {{2, 8, 8}}, 2, 22);  // gaps between windows
  check_layer({LayerKind::GlobalAvgPool, "", {-1}}, {{4, 3, 5}}, 3, 14);
  check_layer({LayerKind::Flatten, "", {-1}}, {{2, 3, 3}}, 2, 15);
  check_layer({LayerKind::Add, "", {-1, -1}}, {{3, 4, 4}, {3, 4, 4}}, 2, 16);
}

TEST_P(LayersTest, SoftmaxCrossEntropyIsStableAndUnscaled) {
  const int n = 5, k = 7;
  std::mt19937 rng(17);
  Vec z = random_vec(size_t(n) * k, rng, -3, 3);
  for (int j = 0; j < k; ++j) z[j] += 1000.0;  // sample 0: huge logits, must not overflow
  std::vector<int32_t> labels{0, 6, 3, 3, 1};
  Buffer dz = to_device(z), dl = to_device(Vec(size_t(n) * k, 0.0)), work = to_device(Vec(2 * n, 0.0));
  Buffer lab = upload(ctx_->compute(), labels), tot = to_device(Vec{-1.0, -1.0}), ev = to_device(Vec{0.5, 0.25});
  nets::softmax_xent(ctx_->compute(), dz.as<float>(), lab.as<int32_t>(), n, k, dl.as<float>(), work.as<float>(),
                     tot.as<float>(), false);
  nets::softmax_xent(ctx_->compute(), dz.as<float>(), lab.as<int32_t>(), n, k, nullptr, work.as<float>(),
                     ev.as<float>(), true);
  double loss = 0, correct = 0;
  Vec want_d(size_t(n) * k);
  for (int i = 0; i < n; ++i) {
    const double* row = z.data() + i * k;
    const double mx = *std::max_element(row, row + k);
    double se = 0;
    for (int j = 0; j < k; ++j) se += std::exp(row[j] - mx);
    loss += mx + std::log(se) - row[labels[i]];
    correct += (std::max_element(row, row + k) - row) == labels[i];
    for (int j = 0; j < k; ++j) want_d[i * k + j] = std::exp(row[j] - mx) / se - (j == labels[i]);
  }
  expect_close(from_device(dl, want_d.size()), want_d, "dlogits");
  const Vec t = from_device(tot, 2), e = from_device(ev, 2);
  EXPECT_EQ(t[0], n);
  EXPECT_NEAR(t[1], loss, 1e-5 * loss);
  EXPECT_NEAR(e[0], 0.5 + loss, 1e-5 * loss);
  EXPECT_EQ(e[1], 0.25 + correct);
}

// A whole model's gradient on this backend against the same model on the host
// backend: cross-backend agreement of the wiring, init and every layer together.
TEST_P(LayersTest, ModelGradientMatchesHostBackend) {
  Device hd;
  hd.name = "host-ref";
  hd.kind = "host";
  DeviceContext host_ctx(hd, ClockKind::Real);
  for (const char* net : {"lenet", "resnet20"}) {
    SCOPED_TRACE(net);
    const int n = 3;
    nets::Model here = nets::Model::create(net, *ctx_, n, 5), ref = nets::Model::create(net, host_ctx, n, 5);
    std::mt19937 rng(23);
    const Vec x = random_vec(size_t(n) * here.input_size(), rng, -1.5, 1.5);
    std::vector<int32_t> labels{1, 7, 4};
    const size_t P = here.num_params();
    auto run = [&](nets::Model& m, DeviceContext& c) {
      std::vector<float> xf(x.begin(), x.end());
      Buffer bx(c.backend(), c.device().ordinal, xf.size() * 4), by(c.backend(), c.device().ordinal, 12),
          sc(c.backend(), c.device().ordinal, (P + 2) * 4);
      copy_async(c.compute(), bx.data(), xf.data(), xf.size() * 4);
      copy_async(c.compute(), by.data(), labels.data(), 12);
      m.forward_backward(bx.as<float>(), by.as<int32_t>(), n, sc.as<float>());
      std::vector<float> out(P + 2);
      copy_async(c.compute(), out.data(), sc.data(), (P + 2) * 4);
      c.compute().synchronize();
      return Vec(out.begin(), out.end());
    };
    const Vec g = run(here, *ctx_), want = run(ref, host_ctx);
    expect_close(g, want, "scratch [g, count, loss]");
    EXPECT_EQ(g[P], n);
  }
}

}  // namespace nbsgd::test
