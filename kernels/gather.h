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
// stream. The CUDA kernel runs operator() per value; the host backend runs
// sample_on_host per sample (the same table lookups, without the per-value
// divisions). Both are checked against the loader bit for bit (GatherTest).
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
  // The host backend's loop: sample s whole, with no division per value (the
  // same values as operator() for each of its elements).
  void sample_on_host(size_t s) const {
    const size_t per = static_cast<size_t>(sample), hw = static_cast<size_t>(plane);
    const size_t src = static_cast<size_t>(index[s]) * per;
    float* out = x + s * per;
    if (bytes) {
      const uint8_t* in = bytes + src;
      const size_t ch = static_cast<size_t>(channels);
      for (size_t c = 0; c < ch; ++c) {
        const float* t = lut + c * 256;
        float* o = out + c * hw;
        if (nhwc) {
          for (size_t p = 0; p < hw; ++p) o[p] = t[in[p * ch + c]];
        } else {
          const uint8_t* i = in + c * hw;
          for (size_t p = 0; p < hw; ++p) o[p] = t[i[p]];
        }
      }
    } else {
      for (size_t p = 0; p < per; ++p) out[p] = floats[src + p];
    }
    y[s] = labels[index[s]];
  }
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
