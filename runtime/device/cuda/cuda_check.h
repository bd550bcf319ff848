// CUDA-library variants of runtime/check.h: cudart, cuBLAS, cuDNN, NCCL. Each throws
// an nbsgd::Error naming the device, the failing call and file:line; the _LOG forms
// only log (for destructors).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <nccl.h>

#include <string>

#include "runtime/device/check.h"

namespace nbsgd::detail {
inline std::string cuda_detail(cudaError_t e) {
  return std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ", " + std::to_string(int(e)) + ")";
}
inline std::string cublas_detail(cublasStatus_t s) {
  return std::string(cublasGetStatusString(s)) + " (" + std::to_string(int(s)) + ")";
}
inline std::string cudnn_detail(cudnnStatus_t s) {
  return std::string(cudnnGetErrorString(s)) + " (" + std::to_string(int(s)) + ")";
}
inline std::string nccl_detail(ncclResult_t r, ncclComm_t comm = nullptr) {
  std::string s = std::string(ncclGetErrorString(r)) + " (" + std::to_string(int(r)) + ")";
  const char* last = ncclGetLastError(comm);
  if (last && *last) s += ": " + std::string(last);
  return s;
}
}  // namespace nbsgd::detail

#define NBSGD_CUDA_CHECK(dev, call)                                                            \
  do {                                                                                         \
    cudaError_t nbsgd_e_ = (call);                                                             \
    if (nbsgd_e_ != cudaSuccess)                                                               \
      ::nbsgd::throw_error(__FILE__, __LINE__, (dev), #call, ::nbsgd::detail::cuda_detail(nbsgd_e_)); \
  } while (0)
#define NBSGD_CUDA_LOG(dev, call)                                                              \
  do {                                                                                         \
    cudaError_t nbsgd_e_ = (call);                                                             \
    if (nbsgd_e_ != cudaSuccess)                                                               \
      ::nbsgd::log_error(__FILE__, __LINE__, (dev), #call, ::nbsgd::detail::cuda_detail(nbsgd_e_)); \
  } while (0)
#define NBSGD_CUBLAS_CHECK(dev, call)                                                          \
  do {                                                                                         \
    cublasStatus_t nbsgd_s_ = (call);                                                          \
    if (nbsgd_s_ != CUBLAS_STATUS_SUCCESS)                                                     \
      ::nbsgd::throw_error(__FILE__, __LINE__, (dev), #call, ::nbsgd::detail::cublas_detail(nbsgd_s_)); \
  } while (0)
#define NBSGD_CUDNN_CHECK(dev, call)                                                           \
  do {                                                                                         \
    cudnnStatus_t nbsgd_s_ = (call);                                                           \
    if (nbsgd_s_ != CUDNN_STATUS_SUCCESS)                                                      \
      ::nbsgd::throw_error(__FILE__, __LINE__, (dev), #call, ::nbsgd::detail::cudnn_detail(nbsgd_s_)); \
  } while (0)
#define NBSGD_NCCL_CHECK(dev, call)                                                            \
  do {                                                                                         \
    ncclResult_t nbsgd_r_ = (call);                                                            \
    if (nbsgd_r_ != ncclSuccess)                                                               \
      ::nbsgd::throw_error(__FILE__, __LINE__, (dev), #call, ::nbsgd::detail::nccl_detail(nbsgd_r_)); \
  } while (0)
