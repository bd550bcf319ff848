// The 1-D launcher: kernels::launch_1d(stream, n, functor) runs f(i) for i in [0, n)
// as a grid-stride kernel on a CUDA stream, or as one ordered task (a plain loop) on
// a host stream. The functor is written once with NBSGD_HD.
//
// CUDA instantiation: the kernel template is defined in kernels/cuda/launch.cuh; each
// functor used with a CUDA stream is instantiated once in a .cu file with
// NBSGD_INSTANTIATE_1D(Functor). A missing instantiation is a link error, not a
// silent host fallback.
#pragma once

#include <cstddef>

#include "kernels/hd.h"
#include "runtime/device/check.h"
#include "runtime/device/stream.h"

namespace nbsgd::kernels {

namespace detail {
template <class F>
void launch_cuda_1d(void* stream, int device, size_t n, const F& f);
}  // namespace detail

template <class F>
void launch_1d(Stream& s, size_t n, const F& f) {
  if (n == 0) return;
  if (s.backend() == Backend::Cuda) {
#if NBSGD_HAVE_CUDA
    s.note(Issue::Launch);
    detail::launch_cuda_1d(s.native(), s.device(), n, f);
#else
    NBSGD_FAIL("CUDA stream in a build without the CUDA backend");
#endif
    return;
  }
  s.device_task(
      [f, n] {
        for (size_t i = 0; i < n; ++i) f(i);
      },
      Issue::Launch);
}

}  // namespace nbsgd::kernels
