#include "nets/models.h"

#include <cstdio>

#include "nets/netfile.h"
#include "nets/zoo.h"
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

std::vector<std::string> net_names() {
  std::vector<std::string> v;
  for (const ZooEntry& e : zoo()) v.emplace_back(e.name);
  return v;
}

NetSpec describe_net(const std::string& name) {
  const bool path = name.find('/') != std::string::npos ||
                    (name.size() > 5 && name.compare(name.size() - 5, 5, ".toml") == 0);
  if (path) return load_net_file(name);
  for (const ZooEntry& e : zoo())
    if (e.name == name) return parse_net_toml(e.toml, "nets/zoo/" + name + ".toml", name);
  std::string known;
  for (const std::string& n : net_names()) known += (known.empty() ? "" : ", ") + n;
  throw InputError("unknown net '" + name + "' (built-in: " + known + "; or a path to a .toml description)");
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
