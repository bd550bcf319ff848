// The fused softmax cross-entropy at the end of every net.
#pragma once

#include <cstdint>

#include "runtime/device/stream.h"

namespace nbsgd::nets {

// For n samples of `classes` logits, enqueued on s:
//   dlogits (if not null) = softmax - onehot, per sample, NOT divided by n;
//   training (evaluate = false): totals[0] = n, totals[1] = sum of the losses
//     (the [count, loss_sum] tail of the scratch buffer, written);
//   evaluation (evaluate = true): totals[0] += sum of the losses, totals[1] += number
//     of correct top-1 predictions.
// work: 2*n floats of device scratch (per-sample loss and hit).
void softmax_xent(Stream& s, const float* logits, const int32_t* labels, int n, int classes, float* dlogits,
                  float* work, float* totals, bool evaluate);

}  // namespace nbsgd::nets
