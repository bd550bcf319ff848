// Seeded random numbers and the delay distributions of straggler profiles.
//
// A profile plus a seed must be one exact experiment on every platform, so
// nothing here uses std:: random engines or distributions (their output is
// implementation-defined). The engine is xoshiro256** seeded through
// splitmix64; samples are drawn by inverse CDF (Box-Muller for the normal
// inside the lognormal), written out below. The only libm calls on the sample
// path are log1p, exp, pow, cos and sqrt; sqrt is exact in IEEE 754 and the others
// agree across glibc/musl/MSVC for all practical purposes.
#pragma once

#include <cstdint>
#include <string>

#include "nets/data/rng.h"

namespace nbsgd::straggler {

// The project's one generator (nets/data/rng.h): xoshiro256** seeded through
// splitmix64; uniform() takes the top 53 bits (every value a multiple of 2^-53).
using data::Rng;
using data::splitmix64;

// Which stream of a device: delays and stalls get separate streams so that
// turning stalls on does not change the delay draws.
enum class RngPurpose : uint64_t { Delay = 1, Stall = 2, Model = 3, Jitter = 4 };

// Per-device stream derived from the seed by hashing (seed, device, purpose).
// Streams of different devices or purposes are statistically independent.
Rng device_stream(uint64_t seed, int device, uint64_t purpose);
inline Rng device_stream(uint64_t seed, int device, RngPurpose purpose) {
  return device_stream(seed, device, static_cast<uint64_t>(purpose));
}

// A non-negative random duration. All parameters are in milliseconds except the
// shape parameters alpha (Pareto) and mu, sigma (lognormal: of ln(X / 1 ms)).
struct Distribution {
  enum Kind { Constant, Uniform, Exponential, ShiftedExponential, Pareto, Lognormal };
  Kind kind = Constant;
  double value_ms = 0;  // Constant
  double min_ms = 0;    // Uniform
  double max_ms = 0;    // Uniform
  double exp_mean_ms = 0;  // Exponential; ShiftedExponential: mean of the exponential part
                           // (the profile key is mean_ms)
  double shift_ms = 0;  // ShiftedExponential
  double scale_ms = 0;  // Pareto (the minimum value)
  double alpha = 0;     // Pareto shape
  double mu = 0;        // Lognormal
  double sigma = 0;     // Lognormal

  static Distribution constant(double value_ms);
  static Distribution uniform(double min_ms, double max_ms);
  static Distribution exponential(double mean_ms);
  static Distribution shifted_exponential(double shift_ms, double mean_ms);
  static Distribution pareto(double scale_ms, double alpha);
  static Distribution lognormal(double mu, double sigma);

  double sample_ms(Rng& rng) const;
  // E[X]; +infinity for a Pareto with alpha <= 1.
  double mean_ms() const;
  // +infinity where the variance does not exist (Pareto alpha <= 2).
  double variance_ms2() const;
  // P(X > x_ms), closed form.
  double tail_prob(double x_ms) const;
  // "exponential(mean_ms=5)": for logs and the predict report.
  std::string describe() const;
};

// The distribution's name in profiles ("shifted-exponential") and back.
const char* kind_name(Distribution::Kind kind);
// Returns false if `name` is not a known distribution.
bool kind_from_name(const std::string& name, Distribution::Kind& kind);

// A delay that happens with some probability, each time it is drawn (per
// mini-batch for delays, per step for stalls).
struct RandomDelay {
  double probability = 0;
  Distribution dist;

  bool active() const { return probability > 0; }
  // No randomness at all: never happens, or always happens with a constant value.
  bool deterministic() const;
  // 0 without touching the stream when inactive; otherwise one uniform for the
  // Bernoulli and, if it fires, the draws of one sample.
  double draw_ms(Rng& rng) const;
  double mean_ms() const;
};

}  // namespace nbsgd::straggler
