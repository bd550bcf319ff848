// CUDA side of kernels/launch.h: the grid-stride kernel and its launcher.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/launch.h"
#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/device_guard.h"

namespace nbsgd::kernels::detail {

template <class F>
__global__ void grid_stride_1d(size_t n, F f) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) f(i);
}

template <class F>
void launch_cuda_1d(void* stream, int device, size_t n, const F& f) {
  constexpr int kBlock = 256;
  // Enough blocks to fill any current GPU; the grid-stride loop covers the rest.
  const size_t blocks = std::min<size_t>((n + kBlock - 1) / kBlock, 65535);
  // Any host thread may launch on any worker's stream: its device is current for
  // the launch, and the caller's current device is back afterwards.
  DeviceGuard guard(device);
  grid_stride_1d<<<static_cast<unsigned>(blocks), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(n, f);
  NBSGD_CUDA_CHECK(device, cudaGetLastError());
}

}  // namespace nbsgd::kernels::detail

#define NBSGD_INSTANTIATE_1D(F) \
  template void nbsgd::kernels::detail::launch_cuda_1d<F>(void*, int, size_t, const F&)
