#include "nets/optim/commit.h"

#include "nets/optim/ops.h"
#include "runtime/device/comm/device_launch.h"

namespace nbsgd::optim {

void commit(Stream& s, const float* scratch, float* accumulator, size_t P) {
  comm::launch_on_device(s, P + 2, CommitOp{scratch, accumulator});
}

void zero(Stream& s, float* accumulator, size_t P) { comm::launch_on_device(s, P + 2, ZeroOp{accumulator}); }

}  // namespace nbsgd::optim
