// An image classification data set in host memory, already normalised: either its
// own pixel vector (Fashion-MNIST, synthetic CIFAR) or pixels read in place from a
// memory-mapped file (npy:DIR), converted per sample as they are copied out.
// Staging to devices is done elsewhere; the epoch queue hands out indices into it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nbsgd::data {

// Pixels of a mapped array: sample i starts at base + i * c*h*w * (u8 ? 1 : 4)
// bytes, channel-last when nhwc. A copied-out value is raw * scale[c] + shift[c].
struct MappedImages {
  std::shared_ptr<const void> keep;  // keeps the mapping alive
  const unsigned char* base = nullptr;
  bool u8 = false;  // else float32 (little-endian, any alignment)
  bool nhwc = false;
  std::vector<float> scale, shift;  // per channel
  // float32 NCHW, aligned, taken as stored: image() can point into the mapping.
  bool in_place() const;
};

// The set as stored, when it is stored as bytes (Fashion-MNIST, uint8 npy): one
// uint8 per value, sample after sample, NCHW or channel-last, and the table that
// normalises it: a copied-out pixel of channel k with byte v is lut[k * 256 + v],
// the very float copy_images gives. Kept so that the training set can live on a
// device as uint8, a quarter of its float size (runtime/train/device_data.h).
struct BytePixels {
  std::shared_ptr<const void> keep;  // owns or maps `base`
  const unsigned char* base = nullptr;
  bool nhwc = false;
  std::vector<float> lut;  // c x 256
};

struct Dataset {
  std::string name;  // e.g. "fashion-mnist/train"
  int64_t n = 0;     // number of samples
  int c = 0, h = 0, w = 0;
  int classes = 0;
  std::vector<float> images;    // n*c*h*w, NCHW, normalised; empty when `mapped`
  std::vector<int32_t> labels;  // n, each in [0, classes)
  std::shared_ptr<const MappedImages> mapped;
  std::shared_ptr<const BytePixels> bytes;  // null when the set is not stored as bytes

  int64_t sample_size() const { return static_cast<int64_t>(c) * h * w; }
  // Sample i's normalised NCHW pixels in place. For a mapped set that needs
  // converting (uint8, NHWC) this throws Error: use copy_images.
  const float* image(int64_t i) const;
  // Normalised NCHW pixels of samples idx[0..count) (or first..first+count) into
  // out, count * sample_size() floats: works for every kind of set.
  void copy_images(const int32_t* idx, int64_t count, float* out) const;
  void copy_range(int64_t first, int64_t count, float* out) const;
  // Keeps the first n samples (n <= this->n).
  void truncate(int64_t n);
};

// The byte view of a uint8 mapped set with c channels (its table built from the
// mapping's scale and shift); null for a float32 one.
std::shared_ptr<const BytePixels> byte_pixels_of(const std::shared_ptr<const MappedImages>& m, int c);

struct DataSplit {
  Dataset train, test;
  std::string summary;  // one line saying what was read (layout, dtype, sizes); may be empty
};

}  // namespace nbsgd::data
