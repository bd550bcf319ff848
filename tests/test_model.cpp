// Models on the host backend: shapes and parameter counts, names as in PyTorch,
// seeded init, whole-model gradients by finite differences, gradients as sums,
// evaluation, checkpoints, and a short LeNet training run on Fashion-MNIST.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "kernels/basic.h"
#include "nets/data/fashion_mnist.h"
#include "nets/model.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"
#include "bodies/layers_reference.h"
#include "support/test_support.h"

namespace nbsgd::test {
namespace {

using nets::Model;

class ModelTest : public testing::Test {
 protected:
  ModelTest() : ctx_(host_device(), ClockKind::Real) {}
  static Device host_device() {
    Device d;
    d.name = "host0";
    d.kind = "host";
    return d;
  }
  template <class T>
  Buffer up(const std::vector<T>& v) {
    Buffer b(Backend::Host, 0, std::max<size_t>(v.size(), 1) * sizeof(T));
    copy_async(ctx_.compute(), b.data(), v.data(), v.size() * sizeof(T));
    ctx_.compute().synchronize();
    return b;
  }
  std::vector<float> down(const float* p, size_t n) {
    std::vector<float> v(n);
    copy_async(ctx_.compute(), v.data(), p, n * sizeof(float));
    ctx_.compute().synchronize();
    return v;
  }
  // [g (P), count, loss_sum] of one forward_backward.
  std::vector<float> scratch_of(Model& m, const Buffer& x, const Buffer& y, int n) {
    Buffer s(Backend::Host, 0, (m.num_params() + 2) * sizeof(float));
    m.forward_backward(x.as<float>(), y.as<int32_t>(), n, s.as<float>());
    return down(s.as<float>(), m.num_params() + 2);
  }
  static std::vector<float> random_images(size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = g(rng);
    return v;
  }
  DeviceContext ctx_;
};

TEST_F(ModelTest, ParameterCountsAndShapes) {
  struct Want {
    const char* net;
    size_t params, bn;
    int c, h, w;
  };
  // resnet20: 272,474 with the option-B projection shortcuts this project uses.
  for (const Want& w : {Want{"mlp", 535818, 0, 1, 28, 28}, Want{"lenet", 61706, 0, 1, 28, 28},
                        Want{"resnet20", 272474, 2 * 784, 3, 32, 32}}) {
    SCOPED_TRACE(w.net);
    Model m = Model::create(w.net, ctx_, 4, 1);
    EXPECT_EQ(m.num_params(), w.params);
    EXPECT_EQ(m.num_bn_buffers(), w.bn);
    EXPECT_EQ(m.input_channels(), w.c);
    EXPECT_EQ(m.input_height(), w.h);
    EXPECT_EQ(m.input_width(), w.w);
    EXPECT_EQ(m.classes(), 10);
    size_t total = 0;
    for (const auto& p : m.param_info()) {
      EXPECT_EQ(p.offset, total) << p.name;
      total += p.count;
    }
    EXPECT_EQ(total, m.num_params());

    Buffer x = up(random_images(3 * m.input_size(), 2));
    m.forward(x.as<float>(), 3, false);
    const std::vector<float> z = down(m.logits(), 3 * 10);
    for (float v : z) EXPECT_TRUE(std::isfinite(v));
    EXPECT_GT(m.flops_per_sample(), 0.0);
  }
}

TEST_F(ModelTest, NamesAndLayoutFollowPyTorch) {
  Model lenet = Model::create("lenet", ctx_, 2, 1);
  const auto p = lenet.param_info();
  ASSERT_EQ(p.size(), 10u);
  EXPECT_EQ(p[0].name, "conv1.weight");
  EXPECT_EQ(p[0].shape, (std::vector<int64_t>{6, 1, 5, 5}));
  EXPECT_EQ(p[5].name, "fc1.bias");
  EXPECT_EQ(p[4].shape, (std::vector<int64_t>{120, 400}));

  Model r = Model::create("resnet20", ctx_, 2, 1);
  bool shortcut = false;
  for (const auto& i : r.param_info())
    if (i.name == "layer2.0.shortcut.0.weight") {
      shortcut = true;
      EXPECT_EQ(i.shape, (std::vector<int64_t>{32, 16, 1, 1}));
    }
  EXPECT_TRUE(shortcut);
  EXPECT_EQ(r.buffer_info()[0].name, "bn1.running_mean");
  EXPECT_EQ(r.buffer_info()[1].name, "bn1.running_var");
  EXPECT_EQ(r.description().rfind("resnet20:", 0), 0u);
  EXPECT_EQ(r.description(), Model::create("resnet20", ctx_, 4, 9).description());
  EXPECT_NE(r.description().substr(9), lenet.description().substr(6));
  EXPECT_THROW(Model::create("vgg", ctx_, 2, 1), InputError);
}

TEST_F(ModelTest, FlopsCountedFromShapes) {
  Model m = Model::create("mlp", ctx_, 2, 1);
  // fc1 gets no input gradient (it reads the network input through the flatten).
  const double macs1 = 784.0 * 512, macs23 = 512.0 * 256 + 256.0 * 10;
  EXPECT_DOUBLE_EQ(m.flops_per_sample(), 2 * macs1 * 2 + 2 * macs23 * 3);
  // ResNet-20: about 41 M forward MACs per 32x32 image.
  Model r = Model::create("resnet20", ctx_, 2, 1);
  EXPECT_NEAR(r.flops_per_sample() / 6.0, 40.8e6, 1.0e6);
}

TEST_F(ModelTest, InitIsSeededAndKaiming) {
  Model a = Model::create("mlp", ctx_, 2, 42), b = Model::create("mlp", ctx_, 8, 42), c = Model::create("mlp", ctx_, 2, 43);
  const auto pa = a.download_params(), pb = b.download_params(), pc = c.download_params();
  EXPECT_EQ(pa, pb);
  EXPECT_NE(pa, pc);
  // fc1.weight: 401,408 draws of N(0, 2/784).
  double s = 0, ss = 0;
  const size_t n = 512 * 784;
  for (size_t i = 0; i < n; ++i) {
    s += pa[i];
    ss += double(pa[i]) * pa[i];
  }
  EXPECT_NEAR(s / n, 0.0, 5e-4);
  EXPECT_NEAR(std::sqrt(ss / n), std::sqrt(2.0 / 784), 0.01 * std::sqrt(2.0 / 784));
  for (size_t i = n; i < n + 512; ++i) EXPECT_EQ(pa[i], 0.0f);  // fc1.bias
}

// Whole-model gradient by central differences of the fp32 loss sum, on two
// parameters chosen at random from every tensor: h = 2e-3, and the check is on
// the chosen set as a whole, |fd - g|_2 <= 3e-2 * |g|_2, plus a per-entry bound
// that allows for fp32 noise and crossing a ReLU or max-pool kink. (ResNet-20's
// early layers are too rough for fp32 differences: the double twin below covers it.)
TEST_F(ModelTest, GradientMatchesFiniteDifferences) {
  for (const char* net : {"mlp", "lenet"}) {
    SCOPED_TRACE(net);
    const int n = 4;
    Model m = Model::create(net, ctx_, n, 7);
    Buffer x = up(random_images(n * m.input_size(), 3));
    Buffer y = up(std::vector<int32_t>{3, 1, 4, 1});
    const size_t P = m.num_params();
    const std::vector<float> g = scratch_of(m, x, y, n);
    EXPECT_EQ(g[P], float(n));
    std::vector<float> theta = m.download_params();
    std::mt19937 rng(11);
    double num = 0, den = 0;
    for (const auto& info : m.param_info()) {
      for (int k = 0; k < 2; ++k) {
        const size_t i = info.offset + rng() % info.count;
        const float keep = theta[i], h = 2e-3f;
        theta[i] = keep + h;
        m.upload_params(theta);
        const double up_l = scratch_of(m, x, y, n)[P + 1];
        theta[i] = keep - h;
        m.upload_params(theta);
        const double down_l = scratch_of(m, x, y, n)[P + 1];
        theta[i] = keep;
        const double fd = (up_l - down_l) / (2.0 * h);
        num += (fd - g[i]) * (fd - g[i]);
        den += double(g[i]) * g[i];
        EXPECT_NEAR(fd, g[i], 0.1 * std::fabs(g[i]) + 0.02) << info.name << " entry " << i - info.offset;
      }
    }
    m.upload_params(theta);
    EXPECT_LE(std::sqrt(num), 3e-2 * std::sqrt(den) + 1e-3);
  }
}

// The whole model against its double-precision twin (tests/bodies/layers_reference.h),
// whose gradient is checked by central differences in double (h = 1e-6,
// |fd - g| <= 1e-5 * (1 + |g|)) on random parameters. Model vs twin, per tensor:
// max|g - g_twin| <= 2e-3 * max|g_twin| + 1e-5 (fp32 through up to 20 layers).
TEST_F(ModelTest, GradientMatchesDoubleTwin) {
  for (const char* net : {"mlp", "lenet", "resnet20"}) {
    SCOPED_TRACE(net);
    const bool big = std::string(net) == "resnet20";
    const int n = big ? 2 : 4;
    const nets::NetSpec spec = nets::describe_net(net);
    Model m = Model::create(spec, ctx_, n, 13);
    const std::vector<float> xs = random_images(n * m.input_size(), 4);
    const std::vector<int32_t> ys{2, 9, 0, 5};
    Buffer x = up(xs), y = up(ys);
    const size_t P = m.num_params();
    const std::vector<float> g = scratch_of(m, x, y, n);
    const std::vector<float> pf = m.download_params();
    Vec p(pf.begin(), pf.end());
    const Vec xd(xs.begin(), xs.end());
    const RefModelResult ref = ref_model(spec, p, xd, ys, n, true);
    ASSERT_EQ(ref.grad.size(), P);
    EXPECT_NEAR(g[P + 1], ref.loss, 1e-5 * ref.loss);
    for (const auto& info : m.param_info()) {
      double scale = 0, err = 0;
      for (size_t i = info.offset; i < info.offset + info.count; ++i) {
        scale = std::max(scale, std::fabs(ref.grad[i]));
        err = std::max(err, std::fabs(g[i] - ref.grad[i]));
      }
      EXPECT_LE(err, 2e-3 * scale + 1e-5) << info.name;
    }
    std::mt19937 rng(29);
    const int checks = big ? 6 : 12;
    for (int c = 0; c < checks; ++c) {
      const size_t i = rng() % P;
      const double keep = p[i], h = 1e-6;
      p[i] = keep + h;
      const double up_l = ref_model(spec, p, xd, ys, n, false).loss;
      p[i] = keep - h;
      const double down_l = ref_model(spec, p, xd, ys, n, false).loss;
      p[i] = keep;
      EXPECT_NEAR((up_l - down_l) / (2 * h), ref.grad[i], 1e-5 * (1 + std::fabs(ref.grad[i]))) << "parameter " << i;
    }
  }
}

// Gradients are sums over samples: a batch's gradient is the sum of its halves'
// (LeNet has no batch statistics, so the halves see the same function).
TEST_F(ModelTest, GradientIsASumOverSamples) {
  Model m = Model::create("lenet", ctx_, 6, 3);
  const size_t S = m.input_size(), P = m.num_params();
  const std::vector<float> xs = random_images(6 * S, 5);
  const std::vector<int32_t> ys{0, 1, 2, 3, 4, 5};
  Buffer x = up(xs), y = up(ys);
  const auto all = scratch_of(m, x, y, 6);
  Buffer x1 = up(std::vector<float>(xs.begin(), xs.begin() + 2 * S)), y1 = up(std::vector<int32_t>(ys.begin(), ys.begin() + 2));
  Buffer x2 = up(std::vector<float>(xs.begin() + 2 * S, xs.end())), y2 = up(std::vector<int32_t>(ys.begin() + 2, ys.end()));
  const auto a = scratch_of(m, x1, y1, 2), b = scratch_of(m, x2, y2, 4);
  double err = 0, mag = 0;
  for (size_t i = 0; i < P; ++i) {
    err = std::max(err, double(std::fabs(all[i] - a[i] - b[i])));
    mag = std::max(mag, double(std::fabs(all[i])));
  }
  EXPECT_LE(err, 1e-4 * mag);
  EXPECT_EQ(all[P], 6.0f);
  EXPECT_NEAR(all[P + 1], a[P + 1] + b[P + 1], 1e-5 * all[P + 1]);

  // Evaluation adds [loss_sum, correct] into its output.
  Buffer out = up(std::vector<float>{1.0f, 2.0f});
  m.evaluate(x.as<float>(), y.as<int32_t>(), 6, out.as<float>());
  const auto o = down(out.as<float>(), 2);
  EXPECT_NEAR(o[0], 1.0f + all[P + 1], 1e-5 * all[P + 1]);
  EXPECT_GE(o[1], 2.0f);
  EXPECT_LE(o[1], 8.0f);
  EXPECT_EQ(o[1], std::floor(o[1]));
}

TEST_F(ModelTest, ReplicasAndCheckpoints) {
  Model a = Model::create("resnet20", ctx_, 2, 1), b = Model::create("resnet20", ctx_, 2, 2);
  Buffer x = up(random_images(2 * a.input_size(), 8)), y = up(std::vector<int32_t>{1, 2});
  scratch_of(a, x, y, 2);  // moves a's running statistics
  b.copy_params_from(a);
  ctx_.compute().synchronize();
  EXPECT_EQ(a.download_params(), b.download_params());
  EXPECT_EQ(a.download_bn_buffers(), b.download_bn_buffers());

  const std::string dir = make_temp_dir("model_ckpt");
  const std::string path = dir + "/r.safetensors";
  std::vector<float> mom(a.num_params(), 0.25f);
  a.save(path, {{"optimizer.momentum", {int64_t(a.num_params())}, mom.data()}}, {{"step", "12"}});
  Model c = Model::create("resnet20", ctx_, 2, 3);
  const auto loaded = c.load(path, {{"optimizer.momentum", {int64_t(a.num_params())}}});
  EXPECT_EQ(c.download_params(), a.download_params());
  EXPECT_EQ(c.download_bn_buffers(), a.download_bn_buffers());
  EXPECT_EQ(loaded.metadata.at("step"), "12");
  EXPECT_EQ(loaded.tensors.at("optimizer.momentum").second, mom);
  // Missing the extra tensor the caller expects, or another net: refused by name.
  EXPECT_THROW(c.load(path), InputError);
  Model l = Model::create("lenet", ctx_, 2, 3);
  try {
    l.load(path, {{"optimizer.momentum", {int64_t(a.num_params())}}});
    ADD_FAILURE() << "loaded a resnet20 checkpoint into lenet";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("made for another net"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

// A few hundred steps of plain SGD on 2,048 Fashion-MNIST images lower the loss.
TEST_F(ModelTest, LenetLearnsFashionMnist) {
  if (!std::filesystem::exists(std::string(data::kFashionMnistDefaultDir) + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "no Fashion-MNIST at " << data::kFashionMnistDefaultDir;
  const data::DataSplit d = data::load_fashion_mnist(data::kFashionMnistDefaultDir, 2048);
  const int b = 32, steps = 300;
  Model m = Model::create("lenet", ctx_, b, 1);
  const size_t S = m.input_size(), P = m.num_params();
  Buffer x = up(d.train.images), y = up(d.train.labels);
  Buffer scratch(Backend::Host, 0, (P + 2) * sizeof(float));
  auto mean_loss = [&] {
    Buffer out = up(std::vector<float>{0.0f, 0.0f});
    for (int64_t i = 0; i + b <= d.train.n; i += b)
      m.evaluate(x.as<float>() + i * S, y.as<int32_t>() + i, b, out.as<float>());
    return down(out.as<float>(), 2)[0] / float(d.train.n);
  };
  const float before = mean_loss();
  for (int step = 0; step < steps; ++step) {
    const int64_t at = (int64_t(step) * b) % d.train.n;
    m.forward_backward(x.as<float>() + at * S, y.as<int32_t>() + at, b, scratch.as<float>());
    kernels::axpy(ctx_.compute(), -0.05f / b, scratch.as<float>(), m.params(), P);  // mean gradient, lr 0.05
  }
  const float after = mean_loss();
  EXPECT_LT(after, 0.6f * before) << "before " << before << " after " << after;
  EXPECT_LT(after, 0.9f);
}

}  // namespace
}  // namespace nbsgd::test
