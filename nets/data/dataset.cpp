#include "nets/data/dataset.h"

#include <cstring>

#include "runtime/device/check.h"

namespace nbsgd::data {

bool MappedImages::in_place() const {
  if (u8 || nhwc || reinterpret_cast<uintptr_t>(base) % alignof(float) != 0) return false;
  for (size_t k = 0; k < scale.size(); ++k)
    if (scale[k] != 1.0f || shift[k] != 0.0f) return false;
  return true;
}

const float* Dataset::image(int64_t i) const {
  if (!mapped) return images.data() + i * sample_size();
  NBSGD_CHECK(mapped->in_place(), name + ": a " + std::string(mapped->u8 ? "uint8" : "NHWC") +
                                      " mapped set has no float pixels in place (copy them with copy_images)");
  return reinterpret_cast<const float*>(mapped->base) + i * sample_size();
}

// A stored byte of a mapped set as a normalised float: one expression, used by the
// copy-out and by the byte table, so the two agree bit for bit.
static inline float scaled(unsigned char v, float a, float b) { return float(v) * a + b; }

std::shared_ptr<const BytePixels> byte_pixels_of(const std::shared_ptr<const MappedImages>& m, int c) {
  if (!m || !m->u8) return nullptr;
  auto b = std::make_shared<BytePixels>();
  b->keep = m;
  b->base = m->base;
  b->nhwc = m->nhwc;
  b->lut.resize(size_t(c) * 256);
  for (int k = 0; k < c; ++k)
    for (int v = 0; v < 256; ++v) b->lut[size_t(k) * 256 + v] = scaled(static_cast<unsigned char>(v), m->scale[k], m->shift[k]);
  return b;
}

namespace {

// One sample of a mapped set, converted to normalised NCHW floats.
void convert(const MappedImages& m, int c, int64_t hw, int64_t i, float* out) {
  const int64_t s = c * hw;
  if (m.u8) {
    const unsigned char* src = m.base + i * s;
    for (int k = 0; k < c; ++k) {
      const float a = m.scale[k], b = m.shift[k];
      float* o = out + k * hw;
      if (m.nhwc)
        for (int64_t j = 0; j < hw; ++j) o[j] = scaled(src[j * c + k], a, b);
      else
        for (int64_t j = 0; j < hw; ++j) o[j] = scaled(src[k * hw + j], a, b);
    }
    return;
  }
  const unsigned char* src = m.base + i * s * 4;
  for (int k = 0; k < c; ++k) {
    const float a = m.scale[k], b = m.shift[k];
    float* o = out + k * hw;
    for (int64_t j = 0; j < hw; ++j) {
      float v;  // memcpy: the mapping need not be aligned
      std::memcpy(&v, src + 4 * (m.nhwc ? j * c + k : k * hw + j), 4);
      o[j] = v * a + b;
    }
  }
}

}  // namespace

void Dataset::copy_images(const int32_t* idx, int64_t count, float* out) const {
  const int64_t s = sample_size();
  for (int64_t j = 0; j < count; ++j) {
    NBSGD_CHECK(idx[j] >= 0 && idx[j] < n, name + ": sample index out of range");
    if (!mapped || mapped->in_place())
      std::memcpy(out + j * s, image(idx[j]), size_t(s) * sizeof(float));
    else
      convert(*mapped, c, int64_t(h) * w, idx[j], out + j * s);
  }
}

void Dataset::copy_range(int64_t first, int64_t count, float* out) const {
  NBSGD_CHECK(first >= 0 && count >= 0 && first + count <= n, name + ": sample range out of range");
  const int64_t s = sample_size();
  if (!mapped || mapped->in_place()) {
    if (count > 0) std::memcpy(out, image(first), size_t(count * s) * sizeof(float));
    return;
  }
  for (int64_t j = 0; j < count; ++j) convert(*mapped, c, int64_t(h) * w, first + j, out + j * s);
}

void Dataset::truncate(int64_t keep) {
  NBSGD_CHECK(keep >= 0 && keep <= n, name + ": cannot keep more samples than there are");
  n = keep;
  labels.resize(size_t(keep));
  if (!mapped) images.resize(size_t(keep * sample_size()));
}

}  // namespace nbsgd::data
