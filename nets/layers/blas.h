// The one GEMM interface the layers call: row-major, enqueued on the context's
// compute stream. Host: oneDNN's dnnl_sgemm inside a stream task; CUDA: cuBLAS
// with the compute stream set on the handle before the call.
#pragma once

namespace nbsgd {
class DeviceContext;
}

namespace nbsgd::nets {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, all row-major with leading
// dimensions lda, ldb, ldc (of the stored, untransposed matrices).
void gemm(DeviceContext& ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc);

#if NBSGD_HAVE_CUDA
namespace cuda {
void gemm(void* cublas, void* stream, int device, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
          const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc);
}  // namespace cuda
#endif

}  // namespace nbsgd::nets
