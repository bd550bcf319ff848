#include "runtime/train/commit_if.h"

#include "runtime/device/check.h"
#include "runtime/train/commit_if_op.h"

namespace nbsgd::engine {

#if NBSGD_HAVE_CUDA
namespace cuda {
void commit_if(void* stream, int device, size_t n, const CommitIfOp& op);
}  // namespace cuda
#endif

void commit_if(Stream& s, const float* scratch, float* accumulator, size_t P, const volatile int* flag) {
  const CommitIfOp op{scratch, accumulator, flag};
  const size_t n = P + 2;
  if (s.backend() == Backend::Cuda) {
#if NBSGD_HAVE_CUDA
    s.note(Issue::Launch);
    cuda::commit_if(s.native(), s.device(), n, op);
#else
    NBSGD_FAIL("CUDA stream in a build without the CUDA backend");
#endif
    return;
  }
  // The host twin: the whole range is one block, so the flag is read once.
  s.device_task([op, n] { commit_block(op, 0, n, 1, [&op] { return op.counted(); }); }, Issue::Launch);
}

}  // namespace nbsgd::engine
