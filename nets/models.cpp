#include "nets/models.h"

#include <cstdio>

#include "runtime/device/check.h"

namespace nbsgd::nets {

NetBuilder::NetBuilder(std::string name, Shape input, int classes) {
  net_.name = std::move(name);
  net_.input = input;
  net_.classes = classes;
}

int NetBuilder::push(LayerSpec s) {
  std::vector<Shape> in;
  for (int i : s.inputs) {
    NBSGD_CHECK(i >= kInput && i < int(shapes_.size()), "layer input refers to a later entry");
    in.push_back(i == kInput ? net_.input : shapes_[i]);
  }
  shapes_.push_back(infer_shape(s, in));  // validates the geometry as the net is written
  net_.layers.push_back(std::move(s));
  return int(net_.layers.size()) - 1;
}

int NetBuilder::channels(int x) const { return x == kInput ? net_.input.c : shapes_.at(x).c; }

int NetBuilder::conv(const std::string& name, int x, int out_channels, int kernel, int stride, int pad, bool bias) {
  return push({LayerKind::Conv2d, name, {x}, out_channels, kernel, stride, pad, bias});
}
int NetBuilder::linear(const std::string& name, int x, int out_features, bool bias) {
  return push({LayerKind::Linear, name, {x}, out_features, 0, 1, 0, bias});
}
int NetBuilder::batchnorm(const std::string& name, int x) { return push({LayerKind::BatchNorm2d, name, {x}}); }
int NetBuilder::relu(int x) { return push({LayerKind::ReLU, "", {x}}); }
int NetBuilder::maxpool(int x, int kernel, int stride) {
  return push({LayerKind::MaxPool2d, "", {x}, 0, kernel, stride, 0, false});
}
int NetBuilder::global_avg_pool(int x) { return push({LayerKind::GlobalAvgPool, "", {x}}); }
int NetBuilder::flatten(int x) { return push({LayerKind::Flatten, "", {x}}); }
int NetBuilder::add(int a, int b) { return push({LayerKind::Add, "", {a, b}}); }

namespace {

// 784-512-256-10 with ReLU, on Fashion-MNIST's 1x28x28.
NetSpec mlp() {
  NetBuilder b("mlp", {1, 28, 28}, 10);
  int x = b.flatten(NetBuilder::kInput);
  x = b.relu(b.linear("fc1", x, 512));
  x = b.relu(b.linear("fc2", x, 256));
  b.linear("fc3", x, 10);
  return b.build();
}

// LeNet-5 (ReLU, max pooling) on 1x28x28: conv1 pads by 2 to give the classic 28x28.
NetSpec lenet() {
  NetBuilder b("lenet", {1, 28, 28}, 10);
  int x = b.maxpool(b.relu(b.conv("conv1", NetBuilder::kInput, 6, 5, 1, 2, true)), 2, 2);
  x = b.maxpool(b.relu(b.conv("conv2", x, 16, 5, 1, 0, true)), 2, 2);
  x = b.flatten(x);
  x = b.relu(b.linear("fc1", x, 120));
  x = b.relu(b.linear("fc2", x, 84));
  b.linear("fc3", x, 10);
  return b.build();
}

// A CIFAR ResNet basic block (He et al. 2016, section 4.2). Where the shape changes
// the shortcut is a 1x1 strided conv + BN projection: option B of the paper, not
// option A's zero-padded identity, because B is a plain layer list that a PyTorch
// module reproduces exactly (`shortcut.0` conv, `shortcut.1` BN).
int basic_block(NetBuilder& b, const std::string& p, int x, int out_c, int stride) {
  int y = b.relu(b.batchnorm(p + ".bn1", b.conv(p + ".conv1", x, out_c, 3, stride, 1, false)));
  y = b.batchnorm(p + ".bn2", b.conv(p + ".conv2", y, out_c, 3, 1, 1, false));
  int shortcut = x;
  if (stride != 1 || b.channels(x) != out_c)
    shortcut = b.batchnorm(p + ".shortcut.1", b.conv(p + ".shortcut.0", x, out_c, 1, stride, 0, false));
  return b.relu(b.add(y, shortcut));
}

// ResNet-20 for 3x32x32: stem conv, 3 stages x 3 blocks (16/32/64 channels, stride
// 2 at the start of stages 2 and 3), global average pool, fc. 272,474 parameters
// with the option-B shortcuts (option A would give 269,722).
NetSpec resnet20() {
  NetBuilder b("resnet20", {3, 32, 32}, 10);
  int x = b.relu(b.batchnorm("bn1", b.conv("conv1", NetBuilder::kInput, 16, 3, 1, 1, false)));
  const int widths[3] = {16, 32, 64};
  for (int stage = 0; stage < 3; ++stage)
    for (int block = 0; block < 3; ++block) {
      const int stride = (stage > 0 && block == 0) ? 2 : 1;
      x = basic_block(b, "layer" + std::to_string(stage + 1) + "." + std::to_string(block), x, widths[stage], stride);
    }
  x = b.flatten(b.global_avg_pool(x));
  b.linear("fc", x, 10);
  return b.build();
}

}  // namespace

std::vector<std::string> net_names() { return {"mlp", "lenet", "resnet20"}; }

NetSpec describe_net(const std::string& name) {
  if (name == "mlp") return mlp();
  if (name == "lenet") return lenet();
  if (name == "resnet20") return resnet20();
  throw InputError("unknown net '" + name + "' (known: mlp, lenet, resnet20)");
}

std::string net_signature(const NetSpec& net) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64
  auto mix = [&h](const std::string& s) {
    for (unsigned char ch : s) {
      h ^= ch;
      h *= 0x100000001b3ULL;
    }
  };
  mix(std::to_string(net.input.c) + "x" + std::to_string(net.input.h) + "x" + std::to_string(net.input.w) + "/" +
      std::to_string(net.classes) + ";");
  for (const LayerSpec& s : net.layers) {
    std::string line = std::string(to_string(s.kind)) + " " + s.name + " (";
    for (int i : s.inputs) line += std::to_string(i) + ",";
    line += ") " + std::to_string(s.out) + " " + std::to_string(s.kernel) + " " + std::to_string(s.stride) + " " +
            std::to_string(s.pad) + " " + (s.bias ? "b" : "-") + ";";
    mix(line);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return net.name + ":" + hex;
}

}  // namespace nbsgd::nets
