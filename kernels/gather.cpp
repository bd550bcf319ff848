#include "kernels/gather.h"

#include "kernels/launch.h"

namespace nbsgd::kernels {

void gather(Stream& s, const GatherOp& op, size_t count) {
  if (count == 0) return;
  if (s.backend() == Backend::Host) {
    // One task, a sample at a time: the element-wise functor's two divisions per
    // value cost about a tenth of a LeNet mini-batch on a CPU core.
    s.device_task(
        [op, count] {
          for (size_t k = 0; k < count; ++k) op.sample_on_host(k);
        },
        Issue::Launch);
    return;
  }
  launch_1d(s, count * static_cast<size_t>(op.sample), op);
}

}  // namespace nbsgd::kernels
