#include "nets/optim/commit.h"

#include "nets/optim/ops.h"
#include "kernels/launch.h"

namespace nbsgd::optim {

void commit(Stream& s, const float* scratch, float* accumulator, size_t P) {
  kernels::launch_1d(s, P + 2, CommitOp{scratch, accumulator});
}

void zero(Stream& s, float* accumulator, size_t P) { kernels::launch_1d(s, P + 2, ZeroOp{accumulator}); }

}  // namespace nbsgd::optim
