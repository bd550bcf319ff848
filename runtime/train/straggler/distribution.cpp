#include "runtime/train/straggler/distribution.h"

#include <cmath>
#include <cstdio>
#include <limits>

namespace nbsgd::straggler {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kTwoPi = 6.283185307179586476925286766559;

// The splitmix64 finaliser alone: a bijective 64-bit mixer.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string fmt_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

Rng device_stream(uint64_t seed, int device, uint64_t purpose) {
  // Chain the mixer over the three inputs, each offset by a distinct odd constant,
  // so (seed, device, purpose) triples that differ anywhere give unrelated states.
  uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ULL);
  h = mix64(h ^ (static_cast<uint64_t>(static_cast<int64_t>(device)) + 0xd1b54a32d192ed03ULL));
  h = mix64(h ^ (purpose + 0x8cb92ba72f3d8dd7ULL));
  return Rng(h);
}

Distribution Distribution::constant(double value_ms) {
  Distribution d;
  d.kind = Constant;
  d.value_ms = value_ms;
  return d;
}

Distribution Distribution::uniform(double min_ms, double max_ms) {
  Distribution d;
  d.kind = Uniform;
  d.min_ms = min_ms;
  d.max_ms = max_ms;
  return d;
}

Distribution Distribution::exponential(double mean_ms) {
  Distribution d;
  d.kind = Exponential;
  d.exp_mean_ms = mean_ms;
  return d;
}

Distribution Distribution::shifted_exponential(double shift_ms, double mean_ms) {
  Distribution d;
  d.kind = ShiftedExponential;
  d.shift_ms = shift_ms;
  d.exp_mean_ms = mean_ms;
  return d;
}

Distribution Distribution::pareto(double scale_ms, double alpha) {
  Distribution d;
  d.kind = Pareto;
  d.scale_ms = scale_ms;
  d.alpha = alpha;
  return d;
}

Distribution Distribution::lognormal(double mu, double sigma) {
  Distribution d;
  d.kind = Lognormal;
  d.mu = mu;
  d.sigma = sigma;
  return d;
}

double Distribution::sample_ms(Rng& rng) const {
  switch (kind) {
    case Constant:
      return value_ms;
    case Uniform:
      return min_ms + (max_ms - min_ms) * rng.uniform();
    case Exponential:
      // 1 - u lies in (0, 1], so the log is finite.
      return -exp_mean_ms * std::log1p(-rng.uniform());
    case ShiftedExponential:
      return shift_ms - exp_mean_ms * std::log1p(-rng.uniform());
    case Pareto:
      return scale_ms * std::pow(1.0 - rng.uniform(), -1.0 / alpha);
    case Lognormal: {
      // Box-Muller; the second normal of the pair is dropped so that every
      // sample consumes exactly two uniforms and streams stay easy to reason about.
      const double u1 = rng.uniform();
      const double u2 = rng.uniform();
      const double z = std::sqrt(-2.0 * std::log1p(-u1)) * std::cos(kTwoPi * u2);
      return std::exp(mu + sigma * z);
    }
  }
  return 0;
}

double Distribution::mean_ms() const {
  switch (kind) {
    case Constant:
      return value_ms;
    case Uniform:
      return 0.5 * (min_ms + max_ms);
    case Exponential:
      return exp_mean_ms;
    case ShiftedExponential:
      return shift_ms + exp_mean_ms;
    case Pareto:
      return alpha > 1 ? alpha * scale_ms / (alpha - 1) : kInf;
    case Lognormal:
      return std::exp(mu + 0.5 * sigma * sigma);
  }
  return 0;
}

double Distribution::variance_ms2() const {
  switch (kind) {
    case Constant:
      return 0;
    case Uniform:
      return (max_ms - min_ms) * (max_ms - min_ms) / 12.0;
    case Exponential:
    case ShiftedExponential:
      return exp_mean_ms * exp_mean_ms;
    case Pareto:
      return alpha > 2 ? scale_ms * scale_ms * alpha / ((alpha - 1) * (alpha - 1) * (alpha - 2))
                       : kInf;
    case Lognormal:
      return std::expm1(sigma * sigma) * std::exp(2 * mu + sigma * sigma);
  }
  return 0;
}

double Distribution::tail_prob(double x) const {
  switch (kind) {
    case Constant:
      return x < value_ms ? 1.0 : 0.0;
    case Uniform:
      if (x < min_ms) return 1.0;
      if (x >= max_ms) return 0.0;
      return (max_ms - x) / (max_ms - min_ms);
    case Exponential:
    case ShiftedExponential: {
      const double shift = kind == Exponential ? 0.0 : shift_ms;
      if (x < shift) return 1.0;
      if (exp_mean_ms <= 0) return 0.0;
      return std::exp(-(x - shift) / exp_mean_ms);
    }
    case Pareto:
      return x < scale_ms ? 1.0 : std::pow(scale_ms / x, alpha);
    case Lognormal:
      if (x <= 0) return 1.0;
      if (sigma <= 0) return x < std::exp(mu) ? 1.0 : 0.0;
      return 0.5 * std::erfc((std::log(x) - mu) / (sigma * std::sqrt(2.0)));
  }
  return 0;
}

std::string Distribution::describe() const {
  std::string s = kind_name(kind);
  switch (kind) {
    case Constant:
      return s + "(value_ms=" + fmt_num(value_ms) + ")";
    case Uniform:
      return s + "(min_ms=" + fmt_num(min_ms) + ", max_ms=" + fmt_num(max_ms) + ")";
    case Exponential:
      return s + "(mean_ms=" + fmt_num(exp_mean_ms) + ")";
    case ShiftedExponential:
      return s + "(shift_ms=" + fmt_num(shift_ms) + ", mean_ms=" + fmt_num(exp_mean_ms) + ")";
    case Pareto:
      return s + "(scale_ms=" + fmt_num(scale_ms) + ", alpha=" + fmt_num(alpha) + ")";
    case Lognormal:
      return s + "(mu=" + fmt_num(mu) + ", sigma=" + fmt_num(sigma) + ")";
  }
  return s;
}

const char* kind_name(Distribution::Kind kind) {
  switch (kind) {
    case Distribution::Constant:
      return "constant";
    case Distribution::Uniform:
      return "uniform";
    case Distribution::Exponential:
      return "exponential";
    case Distribution::ShiftedExponential:
      return "shifted-exponential";
    case Distribution::Pareto:
      return "pareto";
    case Distribution::Lognormal:
      return "lognormal";
  }
  return "?";
}

bool kind_from_name(const std::string& name, Distribution::Kind& kind) {
  for (auto k : {Distribution::Constant, Distribution::Uniform, Distribution::Exponential,
                 Distribution::ShiftedExponential, Distribution::Pareto, Distribution::Lognormal}) {
    if (name == kind_name(k)) {
      kind = k;
      return true;
    }
  }
  return false;
}

bool RandomDelay::deterministic() const {
  return probability <= 0 || (probability >= 1 && dist.kind == Distribution::Constant);
}

double RandomDelay::draw_ms(Rng& rng) const {
  if (!active()) return 0;
  // u < p with u in [0, 1): p = 1 always fires, p = 0 never does.
  if (rng.uniform() >= probability) return 0;
  return dist.sample_ms(rng);
}

double RandomDelay::mean_ms() const { return active() ? probability * dist.mean_ms() : 0.0; }

}  // namespace nbsgd::straggler
