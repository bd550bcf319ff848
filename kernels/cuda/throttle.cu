#include "kernels/throttle.h"
#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/device_guard.h"

namespace nbsgd::kernels::cuda {
namespace {
__device__ __forceinline__ unsigned long long now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__global__ void stamp_kernel(uint64_t* slot) { *slot = now_ns(); }

__device__ __forceinline__ unsigned long long throttle_until(const uint64_t* slot, double factor, double extra_s) {
  const unsigned long long now = now_ns();
  return now + static_cast<unsigned long long>(factor * double(now - *slot) + extra_s * 1e9);
}
__global__ void throttle_idle(const uint64_t* slot, double factor, double extra_s) {
  const unsigned long long until = throttle_until(slot, factor, extra_s);
  while (now_ns() < until) __nanosleep(1000);
}
__global__ void throttle_busy(const uint64_t* slot, double factor, double extra_s, float* sink) {
  __shared__ unsigned long long until;
  if (threadIdx.x == 0) until = throttle_until(slot, factor, extra_s);
  __syncthreads();
  float acc = threadIdx.x;
  while (now_ns() < until) acc = acc * 0.999f + 1.0f;
  if (acc == -1.0f) *sink = acc;
}
}  // namespace

void stamp(void* stream, int device, uint64_t* slot) {
  DeviceGuard guard(device);
  stamp_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(slot);
  NBSGD_CUDA_CHECK(device, cudaGetLastError());
}

void throttle(void* stream, int device, const uint64_t* slot, double factor, double extra_s, DelayMode mode) {
  auto st = static_cast<cudaStream_t>(stream);
  DeviceGuard guard(device);
  if (mode == DelayMode::Idle) {
    throttle_idle<<<1, 32, 0, st>>>(slot, factor, extra_s);
  } else {
    int sms = 0;
    NBSGD_CUDA_CHECK(device, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    throttle_busy<<<sms * 4, 256, 0, st>>>(slot, factor, extra_s, nullptr);
  }
  NBSGD_CUDA_CHECK(device, cudaGetLastError());
}

}  // namespace nbsgd::kernels::cuda
