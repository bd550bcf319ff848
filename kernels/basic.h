// First kernels: fill, scale, axpy, sum-reduce, and the delay kernel. Each takes the
// stream it is ordered on; pointers are device pointers of that stream's device
// (host memory on the host backend).
#pragma once

#include <cstddef>

#include "runtime/device/stream.h"

namespace nbsgd::kernels {

void fill(Stream& s, float* p, float value, size_t n);
void scale(Stream& s, float* p, float a, size_t n);
void axpy(Stream& s, float a, const float* x, float* y, size_t n);
// *out = sum of x[0..n) (device scalar). CUDA: CUB's device reduction (float tree);
// host: accumulated in double. Compare the two by normalised error, not bitwise.
void sum(Stream& s, const float* x, size_t n, float* out);

// Holds the stream for `seconds`.
//   Idle: one thread spins on the global timer with __nanosleep (the GPU stays free
//         for other streams) - a straggler that is late, not busy.
//   Busy: every SM is occupied by spinning blocks - compute contention.
// Host backend: a real sleep on the real clock, modelled time on the virtual clock.
enum class DelayMode { Idle, Busy };
void delay(Stream& s, double seconds, DelayMode mode = DelayMode::Idle);

}  // namespace nbsgd::kernels
