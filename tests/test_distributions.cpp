// The seeded RNG and the delay distributions: golden values (same draws on every
// platform), per-device streams, and sample statistics against the closed forms.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "runtime/train/straggler/distribution.h"

namespace nbsgd::straggler {
namespace {

// Golden values from an independent Python implementation of splitmix64 and
// xoshiro256** (and, for splitmix64 seed 0, the published reference output).
TEST(Rng, GoldenValues) {
  uint64_t state = 0;
  EXPECT_EQ(splitmix64(state), 0xe220a8397b1dcdafULL);
  Rng rng(0);
  EXPECT_EQ(rng.next_u64(), 0x99ec5f36cb75f2b4ULL);
  EXPECT_EQ(rng.next_u64(), 0xbf6e1f784956452aULL);
  EXPECT_EQ(rng.next_u64(), 0x1a5f849d4933e6e0ULL);
  Rng r42(42);
  // The first word of seed 42 is 0x15780b2e0c2ec716: its top 53 bits times 2^-53.
  EXPECT_EQ(r42.uniform(), static_cast<double>(0x15780b2e0c2ec716ULL >> 11) * 0x1.0p-53);
}

TEST(Rng, UniformRangeAndMean) {
  Rng rng(7);
  const int n = 200000;
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  // Mean 1/2, variance 1/12: within 5 standard errors.
  EXPECT_NEAR(sum / n, 0.5, 5 * std::sqrt(1.0 / 12 / n));
}

std::vector<uint64_t> first_words(Rng rng, int n) {
  std::vector<uint64_t> v;
  for (int i = 0; i < n; ++i) v.push_back(rng.next_u64());
  return v;
}

TEST(Rng, DeviceStreams) {
  const auto a = first_words(device_stream(5, 2, RngPurpose::Delay), 8);
  EXPECT_EQ(a, first_words(device_stream(5, 2, RngPurpose::Delay), 8)) << "same seed and device: same draws";
  EXPECT_NE(a, first_words(device_stream(5, 3, RngPurpose::Delay), 8)) << "another device";
  EXPECT_NE(a, first_words(device_stream(5, 2, RngPurpose::Stall), 8)) << "another purpose";
  EXPECT_NE(a, first_words(device_stream(6, 2, RngPurpose::Delay), 8)) << "another seed";
  // Streams of neighbouring devices are not shifted copies of each other.
  const auto b = first_words(device_stream(5, 3, RngPurpose::Delay), 64);
  for (uint64_t w : a) EXPECT_EQ(std::count(b.begin(), b.end(), w), 0);
}

struct Case {
  const char* label;
  Distribution dist;
  double x1, x2;  // points for P(X > x)
};

class DistributionStats : public ::testing::TestWithParam<Case> {};

// 200k seeded draws: the sample mean is within 5 standard errors of mean_ms()
// (SE from the exact variance), and the empirical P(X > x) within 5 binomial
// standard errors of tail_prob(x), at two points.
TEST_P(DistributionStats, MeanAndTailMatchClosedForm) {
  const Case& c = GetParam();
  const int n = 200000;
  Rng rng = device_stream(11, 0, RngPurpose::Delay);
  double sum = 0;
  int over1 = 0, over2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = c.dist.sample_ms(rng);
    ASSERT_GE(x, 0.0);
    sum += x;
    over1 += x > c.x1;
    over2 += x > c.x2;
  }
  const double se = std::sqrt(c.dist.variance_ms2() / n);
  EXPECT_NEAR(sum / n, c.dist.mean_ms(), 5 * se + 1e-12) << c.dist.describe();
  for (auto [x, over] : {std::pair{c.x1, over1}, std::pair{c.x2, over2}}) {
    const double p = c.dist.tail_prob(x);
    const double pse = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(static_cast<double>(over) / n, p, 5 * pse + 1e-12) << c.dist.describe() << " x=" << x;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllKinds, DistributionStats,
    ::testing::Values(Case{"constant", Distribution::constant(3), 2.5, 3.5},
                      Case{"uniform", Distribution::uniform(2, 10), 3, 8},
                      Case{"exponential", Distribution::exponential(5), 2, 12},
                      Case{"shifted_exponential", Distribution::shifted_exponential(4, 2), 4.5, 9},
                      Case{"pareto", Distribution::pareto(2, 4.5), 2.5, 5},
                      Case{"lognormal", Distribution::lognormal(1.0, 0.5), 2, 5}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.label); });

TEST(Distribution, ClosedForms) {
  EXPECT_DOUBLE_EQ(Distribution::exponential(5).tail_prob(5), std::exp(-1.0));
  EXPECT_DOUBLE_EQ(Distribution::shifted_exponential(4, 2).tail_prob(3), 1.0);
  EXPECT_DOUBLE_EQ(Distribution::shifted_exponential(4, 2).mean_ms(), 6.0);
  EXPECT_DOUBLE_EQ(Distribution::pareto(2, 3).mean_ms(), 3.0);
  EXPECT_TRUE(std::isinf(Distribution::pareto(2, 1).mean_ms()));
  EXPECT_DOUBLE_EQ(Distribution::pareto(2, 3).tail_prob(4), 0.125);
  EXPECT_NEAR(Distribution::lognormal(1, 0.5).tail_prob(std::exp(1.0)), 0.5, 1e-15);
  EXPECT_DOUBLE_EQ(Distribution::uniform(2, 10).tail_prob(4), 0.75);
}

TEST(Distribution, NamesRoundTrip) {
  for (auto k : {Distribution::Constant, Distribution::Uniform, Distribution::Exponential,
                 Distribution::ShiftedExponential, Distribution::Pareto, Distribution::Lognormal}) {
    Distribution::Kind back{};
    ASSERT_TRUE(kind_from_name(kind_name(k), back));
    EXPECT_EQ(back, k);
  }
  Distribution::Kind k{};
  EXPECT_FALSE(kind_from_name("gaussian", k));
  EXPECT_EQ(Distribution::exponential(5).describe(), "exponential(mean_ms=5)");
}

TEST(RandomDelay, BernoulliAndStreamUse) {
  RandomDelay d{0.3, Distribution::constant(2)};
  Rng rng(3);
  const int n = 200000;
  int fired = 0;
  for (int i = 0; i < n; ++i) fired += d.draw_ms(rng) > 0;
  EXPECT_NEAR(static_cast<double>(fired) / n, 0.3, 5 * std::sqrt(0.3 * 0.7 / n));
  EXPECT_DOUBLE_EQ(d.mean_ms(), 0.6);

  // An inactive delay draws nothing, so switching a delay off does not shift the
  // stream of later draws.
  RandomDelay off;
  Rng a(9), b(9);
  EXPECT_EQ(off.draw_ms(a), 0.0);
  EXPECT_EQ(a.next_u64(), b.next_u64());
  EXPECT_TRUE(off.deterministic());
  EXPECT_TRUE((RandomDelay{1.0, Distribution::constant(2)}).deterministic());
  EXPECT_FALSE((RandomDelay{1.0, Distribution::exponential(2)}).deterministic());
  EXPECT_FALSE((RandomDelay{0.5, Distribution::constant(2)}).deterministic());
}

}  // namespace
}  // namespace nbsgd::straggler
