#pragma once

#include <cstddef>

#include "kernels/hd.h"

namespace nbsgd::engine {

struct CommitIfOp {
  const float* scratch;
  float* acc;
  const volatile int* flag;
  NBSGD_HD void operator()(size_t i) const {
    if (*flag) acc[i] += scratch[i];
  }
};

}  // namespace nbsgd::engine
