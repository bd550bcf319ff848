// A small portable random number generator for data generation and shuffling.
//
// std::mt19937 is portable but the std:: distributions are not (libstdc++, libc++
// and MSVC give different numbers for the same engine), so anything whose result
// must be identical everywhere (the synthetic data set, the epoch permutation)
// draws from this generator: xoshiro256** seeded through splitmix64, integer
// ranges by rejection, normals by Box-Muller written here.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <utility>

namespace nbsgd::data {

// splitmix64 step: also a good 64-bit mixing function for deriving seeds.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Derives an independent stream seed from a base seed and a stream number
// (epoch, class, split, ...), so streams do not overlap for neighbouring seeds.
inline uint64_t derive_seed(uint64_t seed, uint64_t stream) {
  uint64_t s = seed;
  uint64_t a = splitmix64(s);
  s = a ^ (stream * 0xD1B54A32D192ED03ULL);
  return splitmix64(s);
}

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) {
    uint64_t s = seed;
    for (auto& w : s_) w = splitmix64(s);
  }

  // xoshiro256** (Blackman and Vigna).
  uint64_t next_u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, bound), unbiased (rejects the short top range).
  uint64_t below(uint64_t bound) {
    if (bound <= 1) return 0;
    const uint64_t limit = UINT64_MAX - (UINT64_MAX % bound);
    uint64_t r;
    do r = next_u64();
    while (r >= limit);
    return r % bound;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Standard normal by Box-Muller; the second value of each pair is kept.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * std::numbers::pi * u2;
    spare_ = r * std::sin(theta);
    has_spare_ = true;
    return r * std::cos(theta);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// Fisher-Yates, back to front, with the portable generator.
template <typename Vec>
void shuffle(Vec& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.below(i));
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace nbsgd::data
