// The layer table of a net description: each entry's output shape, parameter
// count and per-sample cost, computed from the shapes alone (no device, no
// allocation). `nbsgd describe-net` prints it, and Model::flops_per_sample() is
// its total, so predict, the virtual clock and the table always agree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nets/models.h"

namespace nbsgd::nets {

struct LayerRow {
  int index = 0;
  LayerSpec spec;
  std::vector<Shape> in;
  Shape out;
  int64_t params = 0;       // trained parameters
  int64_t buffers = 0;      // untrained state (BatchNorm running statistics)
  double macs = 0.0;        // forward multiply-adds per sample
  bool wants_dx = false;    // the backward pass computes an input gradient
  // Training FLOPs per sample: 2*macs forward, 2*macs for the weight gradient and
  // 2*macs for the input gradient where one is needed (not for a layer fed only by
  // the network input). Element-wise layers count 0, as the layers themselves do.
  double train_flops = 0.0;
};

struct NetTable {
  std::vector<LayerRow> rows;  // one per description entry, in order
  int64_t params = 0, buffers = 0;
  double macs = 0.0, train_flops = 0.0;
};

// Shapes via infer_shape (throws Error for a layer that cannot take its input).
NetTable net_table(const NetSpec& net);

// The table as text: one row per entry, then the totals.
std::string format_net_table(const NetSpec& net, const NetTable& t);

}  // namespace nbsgd::nets
