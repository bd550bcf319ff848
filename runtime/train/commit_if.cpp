#include "runtime/train/commit_if.h"

#include "kernels/launch.h"
#include "runtime/train/commit_if_op.h"

namespace nbsgd::engine {

void commit_if(Stream& s, const float* scratch, float* accumulator, size_t P, const volatile int* flag) {
  kernels::launch_1d(s, P + 2, CommitIfOp{scratch, accumulator, flag});
}

}  // namespace nbsgd::engine
