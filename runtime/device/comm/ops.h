// The communicators' element-wise math, written once (NBSGD_HD) for host loops and
// CUDA kernels. Sources are passed by value (at most kMaxSources pointers), and
// every sum runs over them in the order given, which the callers make ascending in
// worker number: the result never depends on timing.
#pragma once

#include <cstddef>

#include "kernels/hd.h"

namespace nbsgd::comm {

// N workers, or neighbours of one worker, in one kernel's parameters (< 1 KiB).
inline constexpr int kMaxSources = 64;

// dst[e] = ((src[0][e] + src[1][e]) + src[2][e]) + ...; dst may be one of the
// sources (each element is read from every source before it is written).
struct ChunkSumOp {
  const float* src[kMaxSources];
  int n;
  float* dst;
  NBSGD_HD void operator()(size_t e) const {
    float s = src[0][e];
    for (int j = 1; j < n; ++j) s += src[j][e];
    dst[e] = s;
  }
};

// dst[e] = w[0]*src[0][e] + w[1]*src[1][e] + ..., left to right; dst may be a source.
struct WeightedSumOp {
  const float* src[kMaxSources];
  float w[kMaxSources];
  int n;
  float* dst;
  NBSGD_HD void operator()(size_t e) const {
    float s = w[0] * src[0][e];
    for (int j = 1; j < n; ++j) s += w[j] * src[j][e];
    dst[e] = s;
  }
};

// The gossip variants' local step, x - lr * (G/n + wd*x), or x when n == 0 (no
// local step). The same expression as nets/optim's SgdUpdateOp with momentum 0, so
// the fused and unfused gossip paths agree.
NBSGD_HD float local_sgd_step(float x, float G, float n, float lr, float wd) {
  if (n == 0.0f) return x;
  float g = G / n;
  if (wd != 0.0f) g += wd * x;
  return x - lr * g;
}

// Fused local step + neighbour average (METHOD "Aggregation", gossip variants):
//   dst[e] = sum_j W_ij * local_sgd_step(x_j[e], G_j[e], n_j, lr, wd)
// i.e. each neighbour's post-step model, formed on the fly from its pre-step model
// and its accumulator, so no neighbour has to write its stepped model first.
struct GossipSgdOp {
  const float* x[kMaxSources];
  const float* acc[kMaxSources];  // G at [0, P), n at [P]
  float w[kMaxSources];
  int n;
  size_t P;
  float lr, wd;
  float* dst;
  NBSGD_HD void operator()(size_t e) const {
    float s = w[0] * local_sgd_step(x[0][e], acc[0][e], acc[0][P], lr, wd);
    for (int j = 1; j < n; ++j) s += w[j] * local_sgd_step(x[j][e], acc[j][e], acc[j][P], lr, wd);
    dst[e] = s;
  }
};

// The local step alone, in place, clearing the accumulator (P+2 entries); for the
// NCCL path, where the stepped model must exist before it is sent. Runs over
// e in [0, P); the tail [P, P+2) is cleared by a later launch (every element reads
// n = acc[P]).
struct LocalSgdStepOp {
  float* x;
  float* acc;
  size_t P;
  float lr, wd;
  NBSGD_HD void operator()(size_t e) const {
    x[e] = local_sgd_step(x[e], acc[e], acc[P], lr, wd);
    acc[e] = 0.0f;
  }
};

// After the neighbours are done reading: x = tmp and clear the accumulator, over
// e in [0, P+2).
struct GossipFinishOp {
  const float* tmp;
  float* x;
  float* acc;
  size_t P;
  NBSGD_HD void operator()(size_t e) const {
    if (e < P) x[e] = tmp[e];
    acc[e] = 0.0f;
  }
};

struct ClearOp {
  float* p;
  NBSGD_HD void operator()(size_t e) const { p[e] = 0.0f; }
};

}  // namespace nbsgd::comm
