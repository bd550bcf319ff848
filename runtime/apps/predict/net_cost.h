// What the virtual clock's duration model needs to know about a net: its
// parameter count P (the exchange moves P+2 floats, the update touches P) and its
// training FLOPs per sample. The same numbers the engine takes from its Model, so
// `nbsgd predict` and `nbsgd train --clock virtual` cost a step identically.
#pragma once

#include <cstddef>
#include <string>

namespace nbsgd::predict {

struct NetCost {
  std::string net;
  size_t params = 0;
  double flops_per_sample = 0;
};

// Builds one replica on a host context (cheap for the shipped nets) and reads its
// P and FLOPs. Throws InputError naming --net for an unknown net.
NetCost net_cost(const std::string& net);

}  // namespace nbsgd::predict
