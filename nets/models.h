// Net descriptions: a list of layer specs whose inputs name earlier entries, so
// residual blocks are just entries with two inputs. They are written in TOML
// (nets/netfile.h; the built-in ones are nets/zoo/*.toml, compiled in) or with the
// NetBuilder below. Model (model.h) turns a description into layers and buffers;
// nothing here allocates.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nets/layers/layer.h"

namespace nbsgd::nets {

struct NetSpec {
  std::string name;
  Shape input;  // one sample
  int classes = 0;
  std::vector<LayerSpec> layers;  // in execution order; the last one gives the logits
};

// A built-in net by name ("lenet", "resnet18-cifar", ...: net_names()), or the
// description file at a path (anything with a '/' or ending in ".toml"). Throws
// InputError naming the built-in nets for an unknown name, or "file:line: problem"
// for a bad file.
NetSpec describe_net(const std::string& name);
std::vector<std::string> net_names();

// The net name and a stable 64-bit FNV-1a hash of the layer list and input shape,
// e.g. "lenet:3f9a...": stored in checkpoints to recognise one made for another net.
std::string net_signature(const NetSpec& net);

// Appends layer specs; each call returns the index of the new entry, to be used as
// an input of later entries. `kInput` is the network input.
class NetBuilder {
 public:
  static constexpr int kInput = -1;
  NetBuilder(std::string name, Shape input, int classes);

  int conv(const std::string& name, int x, int out_channels, int kernel, int stride, int pad, bool bias);
  int linear(const std::string& name, int x, int out_features, bool bias = true);
  int batchnorm(const std::string& name, int x);
  int relu(int x);
  int maxpool(int x, int kernel, int stride);
  int global_avg_pool(int x);
  int flatten(int x);
  int add(int a, int b);
  // Output channels of entry x (the input's for kInput).
  int channels(int x) const;

  NetSpec build() const { return net_; }

 private:
  int push(LayerSpec s);
  NetSpec net_;
  std::vector<Shape> shapes_;
};

}  // namespace nbsgd::nets
