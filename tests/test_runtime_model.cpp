// The run-time model: hand-computed deterministic cases, analytic exponential
// cases, and closed forms against Monte Carlo for several N and m.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/device/check.h"
#include "runtime/apps/predict/erlang_closed_form.h"
#include "runtime/apps/predict/runtime_model.h"

namespace nbsgd::straggler {
namespace {

StepModel deterministic_model(const std::vector<double>& c, int64_t m, int64_t b) {
  StepModel model;
  model.m = m;
  model.b = b;
  for (double ci : c) model.workers.push_back({ci, {}, {}});
  return model;
}

// Slowdowns 1,1,3,5 with m = 8 (the example of METHOD.md), worked by hand.
TEST(RuntimeModel, DeterministicByHand) {
  const StepModel model = deterministic_model({1, 1, 3, 5}, 8, 32);
  auto exact = [&](const WindowPolicy& p) {
    auto r = closed_form(model, p);
    EXPECT_TRUE(r.has_value());
    EXPECT_TRUE(r->exact);
    return *r;
  };
  const auto sync = exact(WindowPolicy::sync());
  EXPECT_DOUBLE_EQ(sync.time_s.mean, 40);
  EXPECT_DOUBLE_EQ(sync.samples.mean, 4 * 8 * 32);
  EXPECT_DOUBLE_EQ(sync.busy_s->mean, 40);

  // Window at 8: workers finish 8, 8, 2, 1; workers 2 and 3 are in the middle of
  // mini-batches ending at 9 and 10 (honest timing: they run to completion).
  const auto fastest = exact(WindowPolicy::fastest());
  EXPECT_DOUBLE_EQ(fastest.time_s.mean, 8);
  EXPECT_DOUBLE_EQ(fastest.samples.mean, 19 * 32);
  EXPECT_DOUBLE_EQ(fastest.busy_s->mean, 10);
  EXPECT_DOUBLE_EQ(fastest.samples_per_s(), 19 * 32 / 8.0);

  const auto deadline = exact(WindowPolicy::deadline(7.5));
  EXPECT_DOUBLE_EQ(deadline.time_s.mean, 7.5);
  EXPECT_DOUBLE_EQ(deadline.samples.mean, (7 + 7 + 2 + 1) * 32);
  EXPECT_DOUBLE_EQ(deadline.busy_s->mean, 10);
  EXPECT_DOUBLE_EQ(exact(WindowPolicy::deadline(7.5, 4)).samples.mean, (4 + 4 + 2 + 1) * 32);

  // Finishes by time: 1:2, 2:2, 3:3, 4:2, 5:3 -> the 10th is at 5, and the two
  // other finishes at 5 count too (ties).
  const auto quorum = exact(WindowPolicy::quorum(10));
  EXPECT_DOUBLE_EQ(quorum.time_s.mean, 5);
  EXPECT_DOUBLE_EQ(quorum.samples.mean, 12 * 32);
  // quorum:N*m with cap m is sync.
  const auto q_sync = exact(WindowPolicy::quorum(32, 8));
  EXPECT_DOUBLE_EQ(q_sync.time_s.mean, 40);
  EXPECT_DOUBLE_EQ(q_sync.samples.mean, 4 * 8 * 32);
}

TEST(RuntimeModel, DeterministicTiesDespiteRounding) {
  // 0.1 + 0.1 + 0.1 is one ulp above 0.3; the third mini-batch still finishes by
  // a 0.3 s deadline, and the worker is free then.
  const auto r = closed_form(deterministic_model({0.1, 0.3}, 3, 1), WindowPolicy::deadline(0.3));
  EXPECT_DOUBLE_EQ(r->samples.mean, 3 + 1);
  EXPECT_DOUBLE_EQ(r->busy_s->mean, 0.3);
}

TEST(RuntimeModel, ConstantDelaysAndStallsAreDeterministic) {
  StepModel model = deterministic_model({0.010, 0.010}, 4, 1);
  model.workers[1].delay = {1.0, Distribution::constant(10)};  // +10 ms per mini-batch
  model.workers[1].stall = {1.0, Distribution::constant(5)};   // 5 ms before the first
  const auto r = closed_form(model, WindowPolicy::sync());
  ASSERT_TRUE(r.has_value());
  EXPECT_NEAR(r->time_s.mean, 0.005 + 4 * 0.020, 1e-15);
  const auto mc = monte_carlo(model, WindowPolicy::sync(), 1, 10);
  EXPECT_NEAR(mc.time_s.mean, r->time_s.mean, 1e-15);
  EXPECT_EQ(mc.time_s.std_error, 0.0);
}

TEST(RuntimeModel, ErlangFunctions) {
  for (double x : {0.1, 1.0, 3.0, 20.0}) {
    EXPECT_NEAR(detail::erlang_sf(1, x), std::exp(-x), 1e-15);
    EXPECT_NEAR(detail::erlang_sf(3, x), std::exp(-x) * (1 + x + x * x / 2), 1e-14);
    EXPECT_NEAR(detail::erlang_pdf(3, x), x * x / 2 * std::exp(-x), 1e-14);
  }
  EXPECT_EQ(detail::erlang_sf(5, 0), 1.0);
  EXPECT_NEAR(detail::erlang_sf(400, 400), 0.5, 0.02);  // median of Gamma(400) ~ 399.7
  EXPECT_LT(detail::erlang_sf(4, 200), 1e-70);
}

StepModel exponential_model(const std::vector<double>& c, double theta_ms, int64_t m, int64_t b) {
  StepModel model = deterministic_model(c, m, b);
  for (auto& w : model.workers) w.delay = {1.0, Distribution::exponential(theta_ms)};
  return model;
}

// Analytic: with m = 1 and equal c, E[max of N iid Exp(theta)] = theta H_N,
// E[min] = theta / N, and under `fastest` exactly one mini-batch counts.
TEST(RuntimeModel, ExponentialAnalytic) {
  for (int n : {1, 2, 4, 8}) {
    const StepModel model = exponential_model(std::vector<double>(n, 0.010), 5, 1, 16);
    double harmonic = 0;
    for (int k = 1; k <= n; ++k) harmonic += 1.0 / k;
    const auto sync = closed_form(model, WindowPolicy::sync());
    const auto fastest = closed_form(model, WindowPolicy::fastest());
    ASSERT_TRUE(sync && fastest);
    EXPECT_NEAR(sync->time_s.mean, 0.010 + 0.005 * harmonic, 1e-12) << n;
    EXPECT_NEAR(fastest->time_s.mean, 0.010 + 0.005 / n, 1e-12) << n;
    EXPECT_NEAR(fastest->samples.mean, 16, 1e-9) << n;
  }
  // One worker: the step is m c + Erlang(m, theta), and fastest counts all m.
  const auto one = closed_form(exponential_model({0.002}, 3, 7, 4), WindowPolicy::fastest());
  EXPECT_NEAR(one->time_s.mean, 7 * 0.005, 1e-12);
  EXPECT_NEAR(one->samples.mean, 28, 1e-9);
}

void expect_agree(const StepModel& model, const WindowPolicy& policy, uint64_t seed) {
  SCOPED_TRACE(policy.describe() + " N=" + std::to_string(model.workers.size()) + " m=" + std::to_string(model.m));
  const auto cf = closed_form(model, policy);
  ASSERT_TRUE(cf.has_value());
  EXPECT_TRUE(cf->exact);
  const auto mc = monte_carlo(model, policy, seed, 20000);
  EXPECT_FALSE(mc.exact);
  // Within 4 standard errors (plus 1e-12 for cases with no spread at all).
  EXPECT_NEAR(mc.time_s.mean, cf->time_s.mean, 4 * mc.time_s.std_error + 1e-12);
  EXPECT_NEAR(mc.samples.mean, cf->samples.mean, 4 * mc.samples.std_error + 1e-12);
  ASSERT_TRUE(mc.busy_s.has_value());
  EXPECT_GE(mc.busy_s->mean, mc.time_s.mean);
}

// Heterogeneous compute times (slowdowns 1, 1.65, 1, 9.4, ...) and exponential
// delays comparable to a mini-batch, for several N and m.
TEST(RuntimeModel, ExponentialClosedFormMatchesMonteCarlo) {
  const std::vector<double> slow{1, 1.65, 1, 9.4, 1, 1.3, 2, 1};
  uint64_t seed = 100;
  for (int n : {1, 2, 4, 8}) {
    for (int64_t m : {1, 4, 16}) {
      std::vector<double> c;
      for (int i = 0; i < n; ++i) c.push_back(0.004 * slow[i]);
      const StepModel model = exponential_model(c, 3, m, 32);
      expect_agree(model, WindowPolicy::sync(), ++seed);
      expect_agree(model, WindowPolicy::fastest(), ++seed);
      expect_agree(model, WindowPolicy::deadline(0.004 * m * 1.5), ++seed);
      expect_agree(model, WindowPolicy::deadline(0.004 * m * 1.5, m), ++seed);
    }
  }
}

// Workers of every closed-form kind in one model: deterministic, exponential,
// shifted-exponential, with a constant stall.
TEST(RuntimeModel, MixedClosedFormMatchesMonteCarlo) {
  for (int64_t m : {2, 8}) {
    StepModel model = deterministic_model({0.006, 0.004, 0.005, 0.009}, m, 8);
    model.workers[1].delay = {1.0, Distribution::exponential(2)};
    model.workers[2].delay = {1.0, Distribution::shifted_exponential(1, 1.5)};
    model.workers[2].stall = {1.0, Distribution::constant(4)};
    model.workers[3].delay = {1.0, Distribution::constant(0.5)};
    expect_agree(model, WindowPolicy::sync(), 7);
    expect_agree(model, WindowPolicy::fastest(), 8);
    expect_agree(model, WindowPolicy::deadline(0.005 * m), 9);
  }
}

TEST(RuntimeModel, MonteCarloOnlyCases) {
  StepModel model = exponential_model({0.004, 0.006, 0.01}, 3, 4, 8);
  EXPECT_FALSE(closed_form(model, WindowPolicy::quorum(6)).has_value());
  const auto q = predict(model, WindowPolicy::quorum(6), 1, 5000);
  EXPECT_FALSE(q.exact);
  EXPECT_GE(q.samples.mean, 6 * 8);
  model.workers[0].delay.probability = 0.5;
  EXPECT_FALSE(closed_form(model, WindowPolicy::sync()).has_value());
  model.workers[0].delay = {1.0, Distribution::uniform(1, 2)};
  EXPECT_FALSE(closed_form(model, WindowPolicy::fastest()).has_value());
  model.workers[0].delay = {};
  model.workers[0].stall = {0.1, Distribution::pareto(50, 2.5)};
  EXPECT_FALSE(closed_form(model, WindowPolicy::fastest()).has_value());

  // Same seed, same estimate; another seed, another.
  const auto a = monte_carlo(model, WindowPolicy::fastest(), 3, 2000);
  const auto b = monte_carlo(model, WindowPolicy::fastest(), 3, 2000);
  const auto c = monte_carlo(model, WindowPolicy::fastest(), 4, 2000);
  EXPECT_EQ(a.time_s.mean, b.time_s.mean);
  EXPECT_EQ(a.samples.mean, b.samples.mean);
  EXPECT_NE(a.time_s.mean, c.time_s.mean);
  // fastest never waits longer than sync.
  EXPECT_LE(a.time_s.mean, monte_carlo(model, WindowPolicy::sync(), 3, 2000).time_s.mean);
}

TEST(RuntimeModel, Validation) {
  const StepModel model = deterministic_model({0.01, 0.02}, 4, 8);
  EXPECT_THROW(closed_form(model, WindowPolicy::quorum(9, 4)), InputError);
  EXPECT_THROW(closed_form(model, WindowPolicy::quorum(0)), InputError);
  EXPECT_THROW(closed_form(model, WindowPolicy::deadline(0)), InputError);
  EXPECT_THROW(closed_form(deterministic_model({0.01, 0}, 4, 8), WindowPolicy::sync()), InputError);
  EXPECT_THROW(closed_form(deterministic_model({0.01}, 0, 8), WindowPolicy::sync()), InputError);
  EXPECT_THROW(monte_carlo(model, WindowPolicy::sync(), 0, 1), InputError);
}

TEST(RuntimeModel, StepModelFromProfile) {
  const ResolvedProfile r = resolve(profile_from_slowdowns({1, 1, 2, 4}), 4, {});
  const StepModel model = step_model(r, {0.01, 0.01, 0.01, 0.01}, 8, 16);
  ASSERT_EQ(model.workers.size(), 4u);
  EXPECT_DOUBLE_EQ(model.workers[3].compute_s, 0.04);
  const auto p = predict(model, WindowPolicy::fastest(), 0, 100);
  EXPECT_TRUE(p.exact);
  EXPECT_DOUBLE_EQ(p.time_s.mean, 0.08);
  EXPECT_DOUBLE_EQ(p.samples.mean, (8 + 8 + 4 + 2) * 16);
}

}  // namespace
}  // namespace nbsgd::straggler
