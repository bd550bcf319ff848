// The launcher the layers use for their functors: on a CUDA stream it is
// kernels::launch_1d (instantiate the functor in nets/cuda/layer_functors.cu); on a
// host stream it is one ordered task that splits large loops across OpenMP threads,
// because a single-threaded loop over a ResNet activation would cost as much as the
// convolution next to it. Not for .cu files (it uses OpenMP pragmas).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/launch.h"
#include "runtime/stream.h"

namespace nbsgd::nets {

// Below this many iterations a host loop stays on the stream's thread: a parallel
// region costs a few microseconds.
inline constexpr size_t kParallelThreshold = 16384;

// `grain` is the rough cost of one f(i) in element operations (a reduction part
// sums many elements), for the decision to go parallel.
template <class F>
void launch(Stream& s, size_t n, const F& f, size_t grain = 1) {
  if (n == 0) return;
  if (s.backend() != Backend::Host) {
    kernels::launch_1d(s, n, f);
    return;
  }
  s.host_task([f, n, grain] {
    const int64_t m = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static) if (n * grain >= kParallelThreshold && n > 1)
    for (int64_t i = 0; i < m; ++i) f(static_cast<size_t>(i));
  });
}

}  // namespace nbsgd::nets
