// The optimizer's element-wise math, written once (NBSGD_HD) for the host loop and
// the CUDA kernels. Layout of scratch and accumulator (P+2 floats):
//   [0, P)  gradient sum over samples, [P] sample count n, [P+1] loss sum.
#pragma once

#include <cstddef>

#include "kernels/hd.h"

namespace nbsgd::optim {

// acc[i] += scratch[i] over all P+2 entries: the whole mini-batch in one kernel.
struct CommitOp {
  const float* scratch;
  float* acc;
  NBSGD_HD void operator()(size_t i) const { acc[i] += scratch[i]; }
};

struct ZeroOp {
  float* p;
  NBSGD_HD void operator()(size_t i) const { p[i] = 0.0f; }
};

// One element of torch.optim.SGD (dampening 0) on the mean gradient G/n, followed
// by clearing G. Runs over i in [0, P); every thread reads n = acc[P], so the two
// tail entries [P, P+2) are cleared by a launch ordered after this one (no block of
// a kernel may clear a value another block may not have read yet).
struct SgdUpdateOp {
  float* w;
  float* buf;    // momentum buffer (unused when mu == 0)
  float* acc;    // P+2
  size_t P;
  float lr;      // lr * lr_scale
  float mu;      // momentum
  float wd;      // weight decay
  bool nesterov;
  float count_ref;  // > 0: the step is further scaled by n / count_ref (linear lr scaling)

  NBSGD_HD void operator()(size_t i) const {
    const float n = acc[P];
    const float G = acc[i];
    acc[i] = 0.0f;
    if (n == 0.0f) return;  // nobody finished anything: no update, momentum untouched
    const float x = w[i];
    float g = G / n;
    if (wd != 0.0f) g += wd * x;  // PyTorch: d_p = d_p.add(p, alpha=weight_decay)
    float step = g;
    if (mu != 0.0f) {
      // A zero-initialised buffer gives mu*0 + g == g exactly: PyTorch's first-step
      // buf = clone(d_p) without a flag.
      const float b = mu * buf[i] + g;
      buf[i] = b;
      step = nesterov ? g + mu * b : b;
    }
    const float eff = count_ref > 0.0f ? lr * (n / count_ref) : lr;
    w[i] = x - eff * step;
  }
};

}  // namespace nbsgd::optim
