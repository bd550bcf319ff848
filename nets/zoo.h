// The built-in net descriptions (nets/zoo/*.toml), compiled into the library by
// nets/zoo/Zoo.cmake. describe_net() looks names up here.
#pragma once

#include <string_view>
#include <vector>

namespace nbsgd::nets {

struct ZooEntry {
  std::string_view name;  // the file's stem: "lenet", "resnet18-cifar", ...
  std::string_view toml;  // the file's text
};

// In file-name order.
const std::vector<ZooEntry>& zoo();

}  // namespace nbsgd::nets
