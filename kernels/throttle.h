// Straggler injection on a stream, measured on the device itself (no host round
// trip): `stamp` records the time at a point of the stream; `throttle` later holds
// the stream for factor x (now - stamp) + extra seconds. With factor = s - 1 this is
// a duty-cycle throttle of slowdown s over the work between the two.
//   CUDA: the global timer (%globaltimer), spin with __nanosleep (Idle) or on every
//         SM (Busy).
//   Host: the steady clock and a real sleep. (The virtual clock does not use these:
//         its durations are modelled.)
#pragma once

#include <cstdint>

#include "kernels/basic.h"
#include "runtime/device/stream.h"

namespace nbsgd::kernels {

// *slot = now, in nanoseconds of the stream's device clock. `slot` is device memory.
void stamp(Stream& s, uint64_t* slot);
void throttle(Stream& s, const uint64_t* slot, double factor, double extra_s, DelayMode mode);

}  // namespace nbsgd::kernels
