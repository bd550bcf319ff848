// The mini-batch gather as one single-source functor: for a mini-batch of `count`
// samples picked by an index buffer, x[s] = the normalised NCHW pixels of sample
// index[s] and y[s] = labels[index[s]], from a training set kept on the device and
// uploaded once (runtime/train/device_data.h):
//   - a set stored as bytes (Fashion-MNIST, uint8 npy) stays uint8, one byte per
//     value, NCHW or channel-last, and is normalised as it is gathered through the
//     loader's own table (lut[channel * 256 + byte], data::BytePixels): the table
//     is built once on the host by the loader's expression, so the device's floats
//     are the loader's bit for bit, whatever the compiler does with arithmetic;
//   - any other set is kept as its normalised NCHW floats and copied.
// It replaces the host function that gathered into pinned memory on the copy
// stream: the CUDA kernel and the host backend's loop run the same functor.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/hd.h"
#include "runtime/device/stream.h"

namespace nbsgd::kernels {

struct GatherOp {
  const uint8_t* bytes = nullptr;  // the set as bytes: n_total x sample, or null
  const float* lut = nullptr;      // with bytes: channels x 256
  const float* floats = nullptr;   // without bytes: n_total x sample normalised floats
  const int32_t* labels = nullptr;  // n_total
  const int32_t* index = nullptr;   // `count` sample numbers into the set
  float* x = nullptr;               // count x sample, NCHW
  int32_t* y = nullptr;             // count
  int64_t sample = 0;               // values per sample (c x h x w)
  int64_t plane = 0;                // h x w
  int channels = 1;
  bool nhwc = false;  // bytes stored channel-last
  // One element per i in [0, count x sample).
  NBSGD_HD void operator()(size_t i) const {
    const size_t per = static_cast<size_t>(sample);
    const size_t s = i / per;
    const size_t p = i - s * per;
    const size_t src = static_cast<size_t>(index[s]) * per;
    if (bytes) {
      const size_t hw = static_cast<size_t>(plane);
      const size_t c = p / hw;
      const size_t off = nhwc ? (p - c * hw) * static_cast<size_t>(channels) + c : p;
      x[i] = lut[c * 256 + bytes[src + off]];
    } else {
      x[i] = floats[src + p];
    }
    if (p == 0) y[s] = labels[index[s]];
  }
};

// Enqueues the gather of `count` samples on `s` (all pointers on s's device; host
// memory on the host backend). The indices must lie in the set: the caller draws
// them from the epoch queue.
void gather(Stream& s, const GatherOp& op, size_t count);

}  // namespace nbsgd::kernels
