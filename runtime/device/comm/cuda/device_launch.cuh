// CUDA side of runtime/device/comm/device_launch.h.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/launch.cuh"
#include "runtime/device/device_guard.h"
#include "runtime/device/comm/device_launch.h"

namespace nbsgd::comm::detail {

template <class F>
void launch_cuda_on_device(void* stream, int device, size_t n, const F& f) {
  DeviceGuard guard(device);
  kernels::detail::launch_cuda_1d(stream, device, n, f);
}

}  // namespace nbsgd::comm::detail

#define NBSGD_INSTANTIATE_ON_DEVICE(F) \
  template void nbsgd::comm::detail::launch_cuda_on_device<F>(void*, int, size_t, const F&)
