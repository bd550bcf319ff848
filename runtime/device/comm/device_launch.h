// launch_on_device(stream, n, functor): kernels::launch_1d, but the CUDA side first
// makes the stream's device current. The communicators and the optimizer drive N
// workers on different GPUs from one host thread, and a kernel launched into a
// stream of a device that is not current fails; launch_1d leaves the current device
// alone. Host streams: one ordered task running the plain loop, as launch_1d.
//
// CUDA instantiation: NBSGD_INSTANTIATE_ON_DEVICE(Functor) in a .cu file (see
// runtime/device/comm/cuda/device_launch.cuh).
#pragma once

#include <cstddef>

#include "kernels/hd.h"
#include "runtime/device/check.h"
#include "runtime/device/stream.h"

namespace nbsgd::comm {

namespace detail {
template <class F>
void launch_cuda_on_device(void* stream, int device, size_t n, const F& f);
}  // namespace detail

template <class F>
void launch_on_device(Stream& s, size_t n, const F& f) {
  if (n == 0) return;
  if (s.backend() == Backend::Cuda) {
#if NBSGD_HAVE_CUDA
    detail::launch_cuda_on_device(s.native(), s.device(), n, f);
#else
    NBSGD_FAIL("CUDA stream in a build without the CUDA backend");
#endif
    return;
  }
  s.host_task([f, n] {
    for (size_t i = 0; i < n; ++i) f(i);
  });
}

}  // namespace nbsgd::comm
