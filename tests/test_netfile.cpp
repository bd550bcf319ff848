// Nets from TOML descriptions: the built-in files against the hand-written
// builders they replace (bit for bit: names, shapes, initial values, five training
// steps), the CIFAR nets' published parameter counts, short training runs of them,
// the layer table, and one-line errors naming file, line and problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "nets/data/synthetic_cifar.h"
#include "nets/model.h"
#include "nets/net_table.h"
#include "nets/netfile.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"
#include "support/test_support.h"

namespace nbsgd::test {
namespace {

using nets::Model;
using nets::NetBuilder;
using nets::NetSpec;

// ---- The hand-written builders the zoo files replace, kept verbatim as the
// reference (they were nets/models.cpp before the nets became files).
NetSpec ref_mlp() {
  NetBuilder b("mlp", {1, 28, 28}, 10);
  int x = b.flatten(NetBuilder::kInput);
  x = b.relu(b.linear("fc1", x, 512));
  x = b.relu(b.linear("fc2", x, 256));
  b.linear("fc3", x, 10);
  return b.build();
}
NetSpec ref_lenet() {
  NetBuilder b("lenet", {1, 28, 28}, 10);
  int x = b.maxpool(b.relu(b.conv("conv1", NetBuilder::kInput, 6, 5, 1, 2, true)), 2, 2);
  x = b.maxpool(b.relu(b.conv("conv2", x, 16, 5, 1, 0, true)), 2, 2);
  x = b.flatten(x);
  x = b.relu(b.linear("fc1", x, 120));
  x = b.relu(b.linear("fc2", x, 84));
  b.linear("fc3", x, 10);
  return b.build();
}
int ref_basic_block(NetBuilder& b, const std::string& p, int x, int out_c, int stride) {
  int y = b.relu(b.batchnorm(p + ".bn1", b.conv(p + ".conv1", x, out_c, 3, stride, 1, false)));
  y = b.batchnorm(p + ".bn2", b.conv(p + ".conv2", y, out_c, 3, 1, 1, false));
  int shortcut = x;
  if (stride != 1 || b.channels(x) != out_c)
    shortcut = b.batchnorm(p + ".shortcut.1", b.conv(p + ".shortcut.0", x, out_c, 1, stride, 0, false));
  return b.relu(b.add(y, shortcut));
}
NetSpec ref_resnet20() {
  NetBuilder b("resnet20", {3, 32, 32}, 10);
  int x = b.relu(b.batchnorm("bn1", b.conv("conv1", NetBuilder::kInput, 16, 3, 1, 1, false)));
  const int widths[3] = {16, 32, 64};
  for (int stage = 0; stage < 3; ++stage)
    for (int block = 0; block < 3; ++block) {
      const int stride = (stage > 0 && block == 0) ? 2 : 1;
      x = ref_basic_block(b, "layer" + std::to_string(stage + 1) + "." + std::to_string(block), x, widths[stage],
                          stride);
    }
  x = b.flatten(b.global_avg_pool(x));
  b.linear("fc", x, 10);
  return b.build();
}

class NetFileTest : public testing::Test {
 protected:
  NetFileTest() : ctx_(host_device(), ClockKind::Real) {}
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
  // `steps` plain SGD steps on one fixed batch (g is a sum: lr / count); returns
  // the loss sums, and leaves the trained parameters in m.
  std::vector<float> train(Model& m, const std::vector<float>& x, const std::vector<int32_t>& y, int n, int steps,
                           float lr) {
    Buffer bx = up(x), by = up(y);
    Buffer s(Backend::Host, 0, (m.num_params() + 2) * sizeof(float));
    std::vector<float> losses;
    for (int k = 0; k < steps; ++k) {
      m.forward_backward(bx.as<float>(), by.as<int32_t>(), n, s.as<float>());
      ctx_.compute().synchronize();
      const float* g = s.as<float>();
      std::vector<float> p = m.download_params();
      for (size_t i = 0; i < p.size(); ++i) p[i] -= lr / float(n) * g[i];
      m.upload_params(p);
      losses.push_back(g[m.num_params() + 1]);
    }
    return losses;
  }
  static std::vector<float> images(size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = g(rng);
    return v;
  }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  // The InputError message of loading `text` as a file, or "" if it loaded.
  std::string error_of(const std::string& text) {
    const std::string path = write("bad.toml", text);
    try {
      nets::load_net_file(path);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  }
  DeviceContext ctx_;
  std::string dir_ = make_temp_dir("netfile");
};

TEST_F(NetFileTest, BuiltinFilesMatchTheHandWrittenNetsBitForBit) {
  const std::pair<const char*, NetSpec> nets_[] = {{"mlp", ref_mlp()}, {"lenet", ref_lenet()},
                                                  {"resnet20", ref_resnet20()}};
  for (const auto& [name, ref] : nets_) {
    SCOPED_TRACE(name);
    Model a = Model::create(ref, ctx_, 8, 7);
    Model b = Model::create(name, ctx_, 8, 7);  // from nets/zoo/<name>.toml
    EXPECT_EQ(a.description(), b.description());
    const auto pa = a.param_info(), pb = b.param_info();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      EXPECT_EQ(pa[i].name, pb[i].name);
      EXPECT_EQ(pa[i].shape, pb[i].shape) << pa[i].name;
      EXPECT_EQ(pa[i].offset, pb[i].offset) << pa[i].name;
    }
    const auto ba = a.buffer_info(), bb = b.buffer_info();
    ASSERT_EQ(ba.size(), bb.size());
    for (size_t i = 0; i < ba.size(); ++i) EXPECT_EQ(ba[i].name, bb[i].name);
    const auto va = a.download_params(), vb = b.download_params();
    ASSERT_EQ(va.size(), vb.size());
    EXPECT_EQ(std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)), 0);
    EXPECT_EQ(a.flops_per_sample(), b.flops_per_sample());

    const int n = 8;
    const auto x = images(size_t(n) * a.input_size(), 3);
    std::vector<int32_t> y(n);
    for (int i = 0; i < n; ++i) y[i] = (i * 7) % 10;
    const std::vector<float> la = train(a, x, y, n, 5, 0.05f), lb = train(b, x, y, n, 5, 0.05f);
    ASSERT_EQ(la.size(), 5u);
    for (int k = 0; k < 5; ++k) EXPECT_EQ(std::memcmp(&la[k], &lb[k], sizeof(float)), 0) << "step " << k;
    EXPECT_LT(la[4], la[0]);  // the steps did train
    const auto ta = a.download_params(), tb = b.download_params();
    EXPECT_EQ(std::memcmp(ta.data(), tb.data(), ta.size() * sizeof(float)), 0);
    EXPECT_EQ(a.download_bn_buffers(), b.download_bn_buffers());
  }
}

// Published counts, re-derived here from the layer shapes so that the figure is
// checked twice:
//  - resnet18-cifar, 11,173,962: the torchsummary of kuangliu/pytorch-cifar's
//    ResNet18() printed in github.com/JinchengLiang/DLminiproject ("ResNet18 has
//    11,173,962 parameters"; also the "Total number of Parameters" of ResNet-18 in
//    github.com/hariya99/resnet18_analysis).
//  - vgg11-cifar, 9,231,114: kuangliu/pytorch-cifar's VGG('VGG11'), summed below
//    layer by layer (no published table for it was found; see the report).
TEST_F(NetFileTest, CifarNetsHaveThePublishedParameterCounts) {
  auto conv = [](int64_t ci, int64_t co, int64_t k, bool bias) { return ci * co * k * k + (bias ? co : 0); };
  auto bn = [](int64_t c) { return 2 * c; };
  int64_t r18 = conv(3, 64, 3, false) + bn(64);
  int64_t cin = 64;
  for (int64_t w : {64, 128, 256, 512})
    for (int b = 0; b < 2; ++b) {
      r18 += conv(cin, w, 3, false) + bn(w) + conv(w, w, 3, false) + bn(w);
      if (cin != w) r18 += conv(cin, w, 1, false) + bn(w);
      cin = w;
    }
  r18 += 512 * 10 + 10;
  EXPECT_EQ(r18, 11173962);
  int64_t vgg = 0;
  cin = 3;
  for (int64_t w : {64, 128, 256, 256, 512, 512, 512, 512}) {
    vgg += conv(cin, w, 3, true) + bn(w);
    cin = w;
  }
  vgg += 512 * 10 + 10;
  EXPECT_EQ(vgg, 9231114);

  Model r = Model::create("resnet18-cifar", ctx_, 1, 1);
  EXPECT_EQ(r.num_params(), 11173962u);
  Model v = Model::create("vgg11-cifar", ctx_, 1, 1);
  EXPECT_EQ(v.num_params(), 9231114u);
  // Names of the PyTorch modules the files follow (kuangliu/pytorch-cifar).
  auto shape_of = [](const Model& m, const std::string& name) {
    for (const auto& p : m.param_info())
      if (p.name == name) return p.shape;
    return std::vector<int64_t>{};
  };
  EXPECT_EQ(shape_of(r, "conv1.weight"), (std::vector<int64_t>{64, 3, 3, 3}));  // 3x3 stem
  EXPECT_EQ(shape_of(r, "layer2.0.shortcut.0.weight"), (std::vector<int64_t>{128, 64, 1, 1}));
  EXPECT_EQ(shape_of(r, "layer4.1.bn2.bias"), (std::vector<int64_t>{512}));
  EXPECT_EQ(shape_of(r, "linear.weight"), (std::vector<int64_t>{10, 512}));
  EXPECT_EQ(shape_of(v, "features.0.weight"), (std::vector<int64_t>{64, 3, 3, 3}));
  EXPECT_EQ(shape_of(v, "features.1.running_mean"), (std::vector<int64_t>{}));  // a buffer, not a parameter
  EXPECT_EQ(shape_of(v, "features.26.weight"), (std::vector<int64_t>{512}));    // the last BN
  EXPECT_EQ(shape_of(v, "classifier.weight"), (std::vector<int64_t>{10, 512}));
  // No max-pool in the CIFAR ResNet-18: the stem keeps 32x32 maps.
  const nets::NetTable t = nets::net_table(nets::describe_net("resnet18-cifar"));
  EXPECT_EQ(t.rows[2].out, (nets::Shape{64, 32, 32}));
  for (const auto& row : t.rows) EXPECT_NE(row.spec.kind, nets::LayerKind::MaxPool2d);
}

// A few steps of the two CIFAR nets on synthetic CIFAR, host backend: the loss is
// finite and falls on a repeated batch (tiny batch: these nets are big for a CPU).
TEST_F(NetFileTest, CifarNetsTrainOnSyntheticCifar) {
  const data::DataSplit d = data::make_synthetic_cifar(4, 1, 5);
  const std::vector<int32_t> y(d.train.labels.begin(), d.train.labels.begin() + 2);
  const std::vector<float> x(d.train.images.begin(), d.train.images.begin() + 2 * 3072);
  for (const char* name : {"vgg11-cifar", "resnet18-cifar"}) {
    SCOPED_TRACE(name);
    Model m = Model::create(name, ctx_, 2, 11);
    const std::vector<float> l = train(m, x, y, 2, 3, 0.01f);
    for (float v : l) EXPECT_TRUE(std::isfinite(v));
    EXPECT_LT(l[2], l[0]);
  }
}

TEST_F(NetFileTest, ModelFlopsAreTheTablesTotal) {
  for (const std::string& name : nets::net_names()) {
    SCOPED_TRACE(name);
    const nets::NetTable t = nets::net_table(nets::describe_net(name));
    Model m = Model::create(name, ctx_, 1, 0);
    EXPECT_EQ(m.flops_per_sample(), t.train_flops);
    EXPECT_EQ(int64_t(m.num_params()), t.params);
    EXPECT_EQ(int64_t(m.num_bn_buffers()), t.buffers);
  }
  // LeNet by hand: conv1 reads the network input (no input gradient: 2 x 2 MACs),
  // every other weighted layer 3 x 2 MACs.
  const double conv1 = 6.0 * 28 * 28 * 25, conv2 = 16.0 * 10 * 10 * 150, fc = 400.0 * 120 + 120 * 84 + 84 * 10;
  EXPECT_EQ(nets::net_table(nets::describe_net("lenet")).train_flops, 4 * conv1 + 6 * (conv2 + fc));
}

TEST_F(NetFileTest, AFileNetLoadsByPathAndNamesItself) {
  const std::string path = write("tiny.toml", R"(input = [2, 6, 6]
classes = 3

[[layer]]
type = "conv2d"
name = "c"
out_channels = 4
kernel = 3

[[layer]]
type = "residual"
name = "block"
  [[layer.body]]
  type = "batchnorm2d"
  name = "bn"
  [[layer.body]]
  type = "relu"

[[layer]]
type = "maxpool2d"
kernel = 2

[[layer]]
type = "global_avg_pool"

[[layer]]
type = "flatten"

[[layer]]
type = "linear"
name = "head"
out_features = 3
bias = false
)");
  const NetSpec net = nets::describe_net(path);
  EXPECT_EQ(net.name, "tiny");
  Model m = Model::create(path, ctx_, 2, 1);
  const auto p = m.param_info();
  ASSERT_EQ(p.size(), 5u);
  EXPECT_EQ(p[0].name, "c.weight");
  EXPECT_EQ(p[1].name, "c.bias");  // bias defaults to true, as in PyTorch
  EXPECT_EQ(p[2].name, "block.bn.weight");
  EXPECT_EQ(p[4].name, "head.weight");
  EXPECT_EQ(p[4].shape, (std::vector<int64_t>{3, 4}));
  // maxpool stride defaults to the kernel: 4x4 -> 2x2.
  EXPECT_EQ(nets::net_table(net).rows[4].out, (nets::Shape{4, 2, 2}));
}

// Each case: the file text, the line the error must name, and the problem.
TEST_F(NetFileTest, ErrorsNameFileLineAndProblem) {
  const std::string head = "input = [1, 8, 8]\nclasses = 2\n\n";  // 3 lines
  struct Case {
    std::string text;
    int line;
    std::string want;
  };
  const std::vector<Case> cases = {
      {head + "[[layer]]\ntype = \"conv3d\"\nname = \"c\"\n", 5, "unknown layer type 'conv3d'"},
      {head + "[[layer]]\ntype = \"conv2d\"\nname = \"c\"\nout_channels = 4\n", 4, "conv2d 'c': missing field 'kernel'"},
      {head + "[[layer]]\ntype = \"conv2d\"\nname = \"c\"\nout_channels = 4\nkernel = 3\npadding = -1\n", 9,
       "'padding' is a negative size (-1)"},
      {head + "[[layer]]\ntype = \"linear\"\nname = \"fc\"\nout_features = -2\n", 7, "'out_features' is a negative size"},
      {head + "[[layer]]\ntype = \"relu\"\n\n[[layer]]\ntype = \"conv2d\"\nname = \"c2\"\nin_channels = 3\n"
              "out_channels = 4\nkernel = 3\n",
       10, "conv2d 'c2': in_channels = 3 does not fit the output of relu (line 4), 1x8x8"},
      {head + "[[layer]]\ntype = \"linear\"\nname = \"fc\"\nout_features = 2\n", 4,
       "linear 'fc' takes a flat input but gets the network input, 1x8x8"},
      {head + "[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"linear\"\nname = \"fc\"\nin_features = 60\n"
              "out_features = 2\n",
       9, "in_features = 60 does not fit the output of flatten (line 4), 64x1x1"},
      {head + "[[layer]]\ntype = \"conv2d\"\nname = \"c\"\nout_channels = 2\nkernel = 9\n", 4,
       "kernel 9 does not fit the network input, 1x8x8 padded by 0"},
      {head + "[[layer]]\ntype = \"residual\"\nname = \"b\"\n  [[layer.body]]\n  type = \"conv2d\"\n  name = \"c\"\n"
              "  out_channels = 3\n  kernel = 1\n",
       4, "the body's output (conv2d 'b.c', line 7) is 3x8x8, which does not fit the identity shortcut carrying the "
          "network input, 1x8x8 (add a projection shortcut)"},
      {head + "[[layer]]\ntype = \"relu\"\nslope = 0.1\n", 6, "relu: unknown field 'slope' (it takes none)"},
      {head + "[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"linear\"\nname = \"fc\"\nout_features = 5\n", 6,
       "gives 5x1x1 but the net has classes = 2"},
      {head + "[[layer]]\ntype = \"batchnorm2d\"\nname = \"x\"\n[[layer]]\ntype = \"batchnorm2d\"\nname = \"x\"\n", 7,
       "the name 'x' is used twice"},
      {head + "[[layer]]\nname = \"x\"\n", 4, "layer without a 'type'"},
      {"classes = 2\n[[layer]]\ntype = \"relu\"\n", 0, "missing field 'input'"},
      {head + "[[layer]\ntype = \"relu\"\n", 4, "TOML syntax error"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::string e = error_of(c.text);
    const std::string loc = dir_ + "/bad.toml" + (c.line > 0 ? ":" + std::to_string(c.line) + ":" : ":");
    EXPECT_EQ(e.rfind(loc, 0), 0u) << e;
    EXPECT_NE(e.find(c.want), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  EXPECT_THROW(nets::describe_net(dir_ + "/missing.toml"), InputError);
  try {
    nets::describe_net("resnet-18");
    ADD_FAILURE() << "no error for an unknown name";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("resnet18-cifar"), std::string::npos) << e.what();
  }
}

TEST(DescribeNetCli, PrintsTheLayerTableAndNamesBadFiles) {
  CommandResult r = run_nbsgd("describe-net resnet18-cifar");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("11173962 parameters"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("layer4.1.conv2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("512x4x4"), std::string::npos) << r.output;

  r = run_nbsgd("describe-net lenet --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"params\": 61706"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"train_flops_per_sample\": 2263920.0"), std::string::npos) << r.output;

  const std::string dir = make_temp_dir("describe_net");
  std::ofstream(dir + "/bad.toml") << "input = [1, 8, 8]\nclasses = 2\n[[layer]]\ntype = \"pool\"\n";
  r = run_nbsgd("describe-net " + dir + "/bad.toml");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(dir + "/bad.toml:4: unknown layer type 'pool'"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace nbsgd::test
