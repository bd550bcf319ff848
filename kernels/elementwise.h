// Element-wise functors, written once for both backends.
#pragma once

#include <cstddef>

#include "kernels/hd.h"

namespace nbsgd::kernels {

struct FillOp {
  float* p;
  float v;
  NBSGD_HD void operator()(size_t i) const { p[i] = v; }
};

struct ScaleOp {
  float* p;
  float a;
  NBSGD_HD void operator()(size_t i) const { p[i] *= a; }
};

// y += a * x
struct AxpyOp {
  float a;
  const float* x;
  float* y;
  NBSGD_HD void operator()(size_t i) const { y[i] += a * x[i]; }
};

}  // namespace nbsgd::kernels
