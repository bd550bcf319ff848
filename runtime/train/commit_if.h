// The real-clock commit: accumulator += scratch for all P+2 entries, only if the
// mini-batch's completion notice (a host task that ran just before, in stream
// order) marked it as counted in the mapped flag. A cancelled mini-batch's commit
// is a no-op, so its partial work never reaches the accumulator.
#pragma once

#include <cstddef>

#include "runtime/device/stream.h"

namespace nbsgd::engine {

void commit_if(Stream& s, const float* scratch, float* accumulator, size_t P, const volatile int* flag);

}  // namespace nbsgd::engine
