#include "nets/layers/blas.h"

#include <cblas.h>

#include "runtime/device/check.h"
#include "runtime/device/context.h"

namespace nbsgd::nets {

void gemm(DeviceContext& ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  Stream& s = ctx.compute();
  if (s.backend() == Backend::Cuda) {
#if NBSGD_HAVE_CUDA
    cuda::gemm(ctx.cublas(), s.native(), s.device(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
    NBSGD_FAIL("CUDA stream in a build without the CUDA backend");
#endif
    return;
  }
  s.host_task([=] {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha,
                a, lda, b, ldb, beta, c, ldc);
  });
}

}  // namespace nbsgd::nets
