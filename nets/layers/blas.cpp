#include "nets/layers/blas.h"

#include <oneapi/dnnl/dnnl.h>

#include "runtime/device/check.h"
#include "runtime/device/context.h"

namespace nbsgd::nets {

void gemm(DeviceContext& ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  Stream& s = ctx.compute();
  if (s.backend() == Backend::Cuda) {
#if NBSGD_HAVE_CUDA
    s.note(Issue::Library);
    cuda::gemm(ctx.cublas(), s.native(), s.device(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
    NBSGD_FAIL("CUDA stream in a build without the CUDA backend");
#endif
    return;
  }
  // oneDNN's sgemm, not OpenBLAS's: OpenBLAS 0.3.21 does not know this machine's
  // CPU (family 6 model 207) and falls back to its SSE3 "Prescott" kernels, while
  // oneDNN picks its AVX-512 ones from the CPU's feature flags. Same row-major
  // convention.
  s.device_task(
      [=] {
        const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb,
                                            beta, c, ldc);
        NBSGD_CHECK(st == dnnl_success, "dnnl_sgemm failed with status " + std::to_string(int(st)));
      },
      Issue::Library);
}

}  // namespace nbsgd::nets
