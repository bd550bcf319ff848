// cuBLAS side of nets/layers/blas.h. cuBLAS is column-major: a row-major C = A*B is
// the column-major C^T = B^T * A^T, so the operands are passed swapped.
#include <cublas_v2.h>

#include "nets/layers/blas.h"
#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/device_guard.h"

namespace nbsgd::nets::cuda {

void gemm(void* cublas, void* stream, int device, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
          const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  DeviceGuard g(device);  // cuBLAS calls run on the current device: the handle's
  auto h = static_cast<cublasHandle_t>(cublas);
  // The handle is shared by the context's streams: bind it to this one per call.
  NBSGD_CUBLAS_CHECK(device, cublasSetStream(h, static_cast<cudaStream_t>(stream)));
  NBSGD_CUBLAS_CHECK(device, cublasSgemm(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n,
                                         m, k, &alpha, b, ldb, a, lda, &beta, c, ldc));
}

}  // namespace nbsgd::nets::cuda
