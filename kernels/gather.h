// The mini-batch gather as one single-source functor: for a mini-batch of `count`
// samples picked by an index buffer, x[s][p] = normalise(images[index[s]][p]) and
// y[s] = labels[index[s]], from a training set kept on the device as uint8 (one
// byte per pixel, uploaded once). It is the building block that replaces the host
// function that gathers into pinned memory on the copy stream: the CUDA kernel and
// the host backend's loop run the same functor, so they give the same bits.
//
// normalise(v) = (v / 255 - mean) / std, written exactly as the host loader writes
// its lookup table (nets/data/fashion_mnist.cpp), so a gathered batch equals the
// float data set's images bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/hd.h"
#include "runtime/device/stream.h"

namespace nbsgd::kernels {

struct GatherNormalizeOp {
  const uint8_t* images;   // the whole set: n_total x sample bytes
  const int32_t* labels;   // n_total
  const int32_t* index;    // `count` sample numbers into the set
  float* x;                // count x sample, normalised
  int32_t* y;              // count
  int64_t sample;          // pixels per sample (c x h x w)
  float mean, std;
  NBSGD_HD float normalise(uint8_t v) const { return (static_cast<float>(v) / 255.0f - mean) / std; }
  // One element per i in [0, count x sample).
  NBSGD_HD void operator()(size_t i) const {
    const size_t s = i / static_cast<size_t>(sample);
    const size_t p = i - s * static_cast<size_t>(sample);
    const size_t src = static_cast<size_t>(index[s]);
    x[i] = normalise(images[src * static_cast<size_t>(sample) + p]);
    if (p == 0) y[s] = labels[src];
  }
};

// Enqueues the gather of `count` samples on `s` (all pointers on s's device; host
// memory on the host backend). The indices must lie in the set: the caller draws
// them from the epoch queue.
void gather_normalize(Stream& s, const GatherNormalizeOp& op, size_t count);

}  // namespace nbsgd::kernels
