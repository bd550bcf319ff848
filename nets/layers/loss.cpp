#include "nets/layers/loss.h"

#include "nets/layers/functors.h"
#include "nets/layers/launch.h"

namespace nbsgd::nets {

void softmax_xent(Stream& s, const float* logits, const int32_t* labels, int n, int classes, float* dlogits,
                  float* work, float* totals, bool evaluate) {
  launch(s, size_t(n), SoftmaxXentOp{logits, labels, dlogits, work, work + n, classes}, size_t(classes) * 8);
  // One thread, in sample order: the same sum on every backend (see LossTotalsOp).
  launch(s, 1, LossTotalsOp{work, work + n, totals, n, evaluate});
}

}  // namespace nbsgd::nets
