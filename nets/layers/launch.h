// The launcher the layers use for their functors: on a CUDA stream it is
// kernels::launch_1d (instantiate the functor in nets/cuda/layer_functors.cu); on a
// host stream it is one ordered task that splits large loops across OpenMP threads,
// because a single-threaded loop over a ResNet activation would cost as much as the
// convolution next to it. Not for .cu files (it uses OpenMP pragmas).
#pragma once

#include <omp.h>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>

#include "kernels/launch.h"
#include "runtime/device/stream.h"

namespace nbsgd::nets {

// Below this many iterations a host loop stays on the stream's thread: a parallel
// region costs a few microseconds.
inline constexpr size_t kParallelThreshold = 16384;

// Functors over NCHW elements that need the channel (see NBSGD_PER_CHANNEL_CALL).
template <class F>
concept PerChannel = requires(const F& f) {
  f.at(size_t{0}, 0);
  { f.channels } -> std::convertible_to<int>;
  { f.hw } -> std::convertible_to<int64_t>;
};

// f.at(i, c) for i in [lo, hi), c stepped once per plane instead of divided out.
template <PerChannel F>
void run_planes(const F& f, int64_t lo, int64_t hi) {
  for (int64_t i = lo; i < hi;) {
    const int64_t plane = i / f.hw;
    const int c = static_cast<int>(plane % f.channels);
    const int64_t end = std::min(hi, (plane + 1) * f.hw);
    for (; i < end; ++i) f.at(static_cast<size_t>(i), c);
  }
}

// The host half of launch(), also called directly for functors that only the host
// backend runs (a host variant of a GPU functor, in the order a CPU thread
// prefers). `grain` is the rough cost of one f(i) in element operations (a
// reduction part sums many elements), for the decision to go parallel.
template <class F>
void launch_host(Stream& s, size_t n, const F& f, size_t grain = 1) {
  if (n == 0) return;
  s.device_task([f, n, grain] {
    const int64_t m = static_cast<int64_t>(n);
#pragma omp parallel if (n * grain >= kParallelThreshold && n > 1)
    {
      // Each thread's own copy of the functor: a store through one of its pointers
      // cannot change the copy, so the loop keeps the pointers in registers and
      // vectorises (reached through the shared lambda, every member was reloaded
      // after every store and the loops stayed scalar and branchy).
      const F g = f;
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t lo = m * t / nt, hi = m * (t + 1) / nt;
      if constexpr (PerChannel<F>) {
        run_planes(g, lo, hi);
      } else {
        for (int64_t i = lo; i < hi; ++i) g(static_cast<size_t>(i));
      }
    }
  }, Issue::Launch);
}

template <class F>
void launch(Stream& s, size_t n, const F& f, size_t grain = 1) {
  if (n == 0) return;
  if (s.backend() != Backend::Host) {
    kernels::launch_1d(s, n, f);
    return;
  }
  launch_host(s, n, f, grain);
}

}  // namespace nbsgd::nets
