#include "nets/data/synthetic_cifar.h"

#include <array>
#include <cmath>
#include <numbers>
#include <vector>

#include "nets/data/rng.h"
#include "runtime/device/check.h"

namespace nbsgd::data {
namespace {

constexpr int kC = 3, kH = 32, kW = 32, kClasses = 10;
constexpr int kPixels = kC * kH * kW;
// A class is a colour cast, a stripe texture (orientation and frequency) and a
// coloured blob near a class-specific place. Per sample the stripe phase is
// random and the blob moves, so the texture averages away in a class mean: a
// nearest-mean classifier sees mostly colour and a blurred blob and gets part of
// the way, a convolutional net can also read the texture.
struct ClassPattern {
  std::array<double, kC> cast, stripe, blob;
  double angle, freq, cy, cx, radius;
};
// The class patterns are part of the task, not of the draw: a fixed seed.
constexpr uint64_t kPatternSeed = 0x5EED0F0C1FA12ULL;
// Per-sample streams: split in the high bits, sample index in the low bits.
constexpr uint64_t kTrainStream = 1ULL << 40, kTestStream = 2ULL << 40, kLabelStream = 3ULL << 40;
// Chosen so that nearest class mean on the test split scores about 0.68 (chance is
// 0.1): learnable, with room left for a net to do better.
constexpr double kNoiseStd = 1.0;    // per pixel
constexpr double kCastJitter = 0.5;  // per sample and channel, shared by all pixels
constexpr double kBlobJitter = 2.5;  // blob centre, pixels per axis
constexpr double kCastScale = 0.6;   // spread of the class colour casts

std::array<ClassPattern, kClasses> make_patterns() {
  Rng rng(kPatternSeed);
  std::array<ClassPattern, kClasses> patterns{};
  for (int k = 0; k < kClasses; ++k) {
    ClassPattern& p = patterns[k];
    for (int c = 0; c < kC; ++c) {
      p.cast[c] = kCastScale * rng.normal();
      p.stripe[c] = 0.5 + 0.5 * rng.uniform();
      p.blob[c] = 1.5 * rng.normal();
    }
    // Orientations spread over the half circle, two frequencies.
    p.angle = std::numbers::pi * (k + 0.5 * rng.uniform()) / kClasses;
    p.freq = 2.0 * std::numbers::pi * (2.0 + 2.0 * static_cast<double>(rng.below(2))) / kW;
    p.cy = 8 + static_cast<double>(rng.below(kH - 16));
    p.cx = 8 + static_cast<double>(rng.below(kW - 16));
    p.radius = 3.0 + 3.0 * rng.uniform();
  }
  return patterns;
}

void fill_split(Dataset& d, const char* name, int64_t n, uint64_t seed, uint64_t stream,
                const std::array<ClassPattern, kClasses>& patterns) {
  d.name = name;
  d.n = n;
  d.c = kC;
  d.h = kH;
  d.w = kW;
  d.classes = kClasses;
  d.labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) d.labels[i] = static_cast<int32_t>(i % kClasses);
  Rng label_rng(derive_seed(seed, kLabelStream + stream));
  shuffle(d.labels, label_rng);
  d.images.resize(static_cast<size_t>(n) * kPixels);
  for (int64_t i = 0; i < n; ++i) {
    Rng rng(derive_seed(seed, stream + static_cast<uint64_t>(i)));
    const ClassPattern& p = patterns[d.labels[i]];
    const double phase = 2.0 * std::numbers::pi * rng.uniform();
    const double contrast = 0.7 + 0.6 * rng.uniform();
    const double cy = p.cy + kBlobJitter * rng.normal(), cx = p.cx + kBlobJitter * rng.normal();
    std::array<double, kC> cast{};
    for (int c = 0; c < kC; ++c) cast[c] = p.cast[c] + kCastJitter * rng.normal();
    const double ca = std::cos(p.angle) * p.freq, sa = std::sin(p.angle) * p.freq;
    float* out = d.images.data() + i * kPixels;
    for (int c = 0; c < kC; ++c)
      for (int y = 0; y < kH; ++y)
        for (int x = 0; x < kW; ++x) {
          const double d2 = (y - cy) * (y - cy) + (x - cx) * (x - cx);
          const double v = cast[c] +
                           contrast * (p.stripe[c] * std::sin(x * ca + y * sa + phase + c) +
                                       p.blob[c] * std::exp(-d2 / (2.0 * p.radius * p.radius))) +
                           kNoiseStd * rng.normal();
          out[(c * kH + y) * kW + x] = static_cast<float>(v);
        }
  }
}

// Per-channel mean and std of the training split (sequential double sums, so the
// result does not depend on threading), applied to both splits.
void normalise(DataSplit& s) {
  std::array<double, kC> mean{}, stdev{};
  const int64_t per_channel = static_cast<int64_t>(kH) * kW;
  for (int c = 0; c < kC; ++c) {
    double sum = 0.0, sq = 0.0;
    for (int64_t i = 0; i < s.train.n; ++i) {
      const float* p = s.train.images.data() + i * kPixels + c * per_channel;
      for (int64_t j = 0; j < per_channel; ++j) {
        sum += p[j];
        sq += static_cast<double>(p[j]) * p[j];
      }
    }
    const double count = static_cast<double>(s.train.n * per_channel);
    mean[c] = count > 0 ? sum / count : 0.0;
    const double var = count > 0 ? sq / count - mean[c] * mean[c] : 1.0;
    stdev[c] = var > 1e-12 ? std::sqrt(var) : 1.0;
  }
  for (Dataset* d : {&s.train, &s.test})
    for (int64_t i = 0; i < d->n; ++i)
      for (int c = 0; c < kC; ++c) {
        float* p = d->images.data() + i * kPixels + c * per_channel;
        const float m = static_cast<float>(mean[c]), inv = static_cast<float>(1.0 / stdev[c]);
        for (int64_t j = 0; j < per_channel; ++j) p[j] = (p[j] - m) * inv;
      }
}

}  // namespace

DataSplit make_synthetic_cifar(int64_t n_train, int64_t n_test, uint64_t seed) {
  if (n_train <= 0 || n_test < 0)
    throw InputError("synthetic-cifar: need a positive training size and a non-negative test size (got " +
                     std::to_string(n_train) + " and " + std::to_string(n_test) + ")");
  NBSGD_CHECK(n_train < (int64_t{1} << 40) && n_test < (int64_t{1} << 40), "synthetic-cifar size too large");
  const auto patterns = make_patterns();
  DataSplit s;
  fill_split(s.train, "synthetic-cifar/train", n_train, seed, kTrainStream, patterns);
  fill_split(s.test, "synthetic-cifar/test", n_test, seed, kTestStream, patterns);
  normalise(s);
  return s;
}

}  // namespace nbsgd::data
