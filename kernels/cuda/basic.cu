// CUDA instantiations of the basic kernels, CUB's reduction and the delay kernels.
#include <cub/device/device_reduce.cuh>

#include "kernels/basic.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/elementwise.h"
#include "runtime/device/device_guard.h"

NBSGD_INSTANTIATE_1D(nbsgd::kernels::FillOp);
NBSGD_INSTANTIATE_1D(nbsgd::kernels::ScaleOp);
NBSGD_INSTANTIATE_1D(nbsgd::kernels::AxpyOp);

namespace nbsgd::kernels::cuda {

void sum(void* stream, int device, const float* x, size_t n, float* out) {
  auto st = static_cast<cudaStream_t>(stream);
  DeviceGuard guard(device);
  size_t temp_bytes = 0;
  NBSGD_CUDA_CHECK(device, cub::DeviceReduce::Sum(nullptr, temp_bytes, x, out, n, st));
  void* temp = nullptr;
  NBSGD_CUDA_CHECK(device, cudaMallocAsync(&temp, temp_bytes, st));
  NBSGD_CUDA_CHECK(device, cub::DeviceReduce::Sum(temp, temp_bytes, x, out, n, st));
  NBSGD_CUDA_CHECK(device, cudaFreeAsync(temp, st));
}

namespace {
__device__ __forceinline__ unsigned long long global_timer_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// One thread sleeps in short naps until the deadline: the stream is held, the SMs
// stay free.
__global__ void delay_idle(unsigned long long ns) {
  const unsigned long long start = global_timer_ns();
  while (global_timer_ns() - start < ns) __nanosleep(1000);
}

// Every thread of every block spins: the GPU's compute is occupied.
__global__ void delay_busy(unsigned long long ns, float* sink) {
  const unsigned long long start = global_timer_ns();
  float acc = threadIdx.x;
  while (global_timer_ns() - start < ns) acc = acc * 0.999f + 1.0f;
  if (acc == -1.0f) *sink = acc;  // never true; keeps the loop from being removed
}
}  // namespace

void delay(void* stream, int device, double seconds, DelayMode mode) {
  auto st = static_cast<cudaStream_t>(stream);
  const auto ns = static_cast<unsigned long long>(seconds * 1e9);
  DeviceGuard guard(device);
  if (mode == DelayMode::Idle) {
    delay_idle<<<1, 32, 0, st>>>(ns);
  } else {
    int sms = 0, threads = 0;
    NBSGD_CUDA_CHECK(device, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    NBSGD_CUDA_CHECK(device, cudaDeviceGetAttribute(&threads, cudaDevAttrMaxThreadsPerMultiProcessor, device));
    delay_busy<<<sms * (threads / 256), 256, 0, st>>>(ns, nullptr);
  }
  NBSGD_CUDA_CHECK(device, cudaGetLastError());
}

}  // namespace nbsgd::kernels::cuda
