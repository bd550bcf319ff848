#include "kernels/gather.h"

#include "kernels/launch.h"

namespace nbsgd::kernels {

void gather(Stream& s, const GatherOp& op, size_t count) {
  launch_1d(s, count * static_cast<size_t>(op.sample), op);
}

}  // namespace nbsgd::kernels
