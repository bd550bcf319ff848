// nbsgd predict: the run-time model against the engine's simulation, the
// simulation against measured virtual-clock runs (bit for bit), the rates file,
// and the command line's errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/device/check.h"
#include "runtime/train/engine.h"
#include "runtime/apps/predict/measure.h"
#include "runtime/apps/predict/predict.h"
#include "runtime/apps/predict/rates.h"
#include "support/test_support.h"

namespace nbsgd::predict {
namespace {

PredictConfig config(const std::string& slowdown, const std::vector<std::string>& windows, int64_t steps) {
  PredictConfig c;
  c.net = "lenet";
  c.workers = 4;
  c.batch = 64;
  c.split = 4;
  c.slowdown = slowdown;
  c.windows = windows;
  c.steps = steps;
  return c;
}

const WindowResult& window(const Prediction& p, const std::string& name) {
  for (const auto& w : p.windows)
    if (w.name == name) return w;
  throw std::runtime_error("no window " + name);
}

// Deterministic slowdowns: sync has no carry-over from step to step, so the
// closed form is the simulation (up to the timeline's 1 ns grid). For the other
// windows honest timing lets a cancelled mini-batch delay the next step; the
// simulated step time must lie between the model's two brackets.
TEST(Predict, ClosedFormsAgreeWithSimulation) {
  const Prediction p =
      run_prediction(config("1,1,2,4", {"sync", "fastest", "quorum:10", "deadline:0.2", "quorum:16"}, 50));
  const auto& sync = window(p, "sync");
  ASSERT_TRUE(sync.model && sync.model->exact);
  EXPECT_NEAR(sync.model->step_s, sync.sim.step_s(), 1e-8);
  EXPECT_DOUBLE_EQ(sync.model->samples_per_step, sync.sim.samples_per_step());
  EXPECT_DOUBLE_EQ(sync.sim.samples_per_step(), 4 * 64);
  for (const auto& w : p.windows) {
    SCOPED_TRACE(w.name);
    ASSERT_TRUE(w.model.has_value());
    EXPECT_TRUE(w.model->exact);
    ASSERT_TRUE(w.model->busy_step_s.has_value());
    EXPECT_LE(w.model->step_s, w.sim.step_s() + 1e-8);
    EXPECT_GE(*w.model->busy_step_s, w.sim.step_s() - 1e-8);
    EXPECT_GT(w.sim.samples_per_step(), 0);
  }
  // Fastest with slowdowns 1,1,2,4 and m = 4: the fast workers finish 4 at 4c;
  // the others 2 and 1 by then (ties count), every step, once the carry-over is
  // absorbed: (4 + 4 + 2 + 1) * 16 samples in the model.
  EXPECT_DOUBLE_EQ(window(p, "fastest").model->samples_per_step, 11 * 16);
  // The ceiling: standalone rates, simulated and in closed form, agree (up to the
  // timeline's 1 ns grid: a 24 us mini-batch is rounded by up to 0.5 ns).
  ASSERT_EQ(p.rates.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(p.rates[i], p.model_rates[i], 1e-4 * p.rates[i]);
  EXPECT_GT(p.rates[0], p.rates[3] * 3);
  EXPECT_NEAR(window(p, "sync").sim_efficiency, window(p, "sync").sim.samples_per_s() / p.ceiling, 1e-12);
}

// Random delays with a closed form (exponential, probability 1): the sync window
// has no carry-over, so the simulation's mean step over many steps estimates the
// closed form. 2000 steps: the standard error is about 0.4% of the mean; 3% is
// more than 7 standard errors.
TEST(Predict, ExponentialClosedFormMatchesSimulatedMean) {
  PredictConfig c = config("", {"sync", "fastest"}, 2000);
  c.profile = "paper-random";
  c.trials = 20000;
  const Prediction p = run_prediction(c);
  EXPECT_FALSE(p.deterministic);
  const auto& sync = window(p, "sync");
  ASSERT_TRUE(sync.model && sync.model->exact);
  EXPECT_NEAR(sync.sim.step_s(), sync.model->step_s, 0.03 * sync.model->step_s);
  EXPECT_DOUBLE_EQ(sync.sim.samples_per_step(), 4 * 64);
  // Fastest: E[samples] in closed form vs the simulation (which may start a step
  // late on the slow workers, so it can only finish fewer): within 10%.
  const auto& fastest = window(p, "fastest");
  ASSERT_TRUE(fastest.model && fastest.model->exact);
  EXPECT_NEAR(fastest.sim.samples_per_step(), fastest.model->samples_per_step, 0.1 * fastest.model->samples_per_step);
  // Quorum has no closed form here: Monte Carlo with a standard error.
  c.windows = {"quorum:12"};
  c.steps = 50;
  const Prediction q = run_prediction(c);
  ASSERT_TRUE(q.windows[0].model.has_value());
  EXPECT_FALSE(q.windows[0].model->exact);
  EXPECT_GT(q.windows[0].model->step_s_error, 0);
}

engine::RunSummary run_engine(const std::string& slowdown, const std::string& profile, const std::string& window,
                              int64_t steps) {
  engine::TrainConfig c;
  c.net = "lenet";
  c.host_workers = 4;
  c.clock = "virtual";
  c.batch = 64;
  c.split = 4;
  c.train_limit = 1024;  // a multiple of the mini-batch (16): never a short one
  c.slowdown = slowdown;
  c.profile = profile;
  c.window = window;
  c.steps = steps;
  c.quiet = true;
  engine::Engine e(c);
  return e.run([](const engine::StepRecord&) {});
}

// The simulation is the measured engine on the virtual clock: same steps, same
// samples, same clock, bit for bit.
TEST(Predict, MatchesMeasuredEngineExactly) {
  struct Case {
    std::string slowdown, profile, window;
  };
  const std::vector<Case> cases = {{"1,1,2,4", "", "fastest"},
                                   {"1,1,2,4", "", "quorum:10"},
                                   {"", "mixed-3gen", "deadline:0.3"},
                                   {"", "one-slow", "sync"},
                                   // random delays too: the simulation draws what the engine draws
                                   {"", "paper-random", "fastest"}};
  const int64_t steps = 12;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.slowdown + k.profile + " " + k.window);
    PredictConfig c = config(k.slowdown, {k.window}, steps);
    c.profile = k.profile;
    const Prediction p = run_prediction(c);
    const engine::RunSummary s = run_engine(k.slowdown, k.profile, k.window, steps);
    const SimResult& sim = p.windows[0].sim;
    EXPECT_EQ(sim.steps, s.steps);
    EXPECT_EQ(sim.samples, s.samples);
    EXPECT_EQ(sim.clock_s, s.clock_s);
    EXPECT_EQ(sim.wasted_minibatches, s.wasted_minibatches);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The same through the binaries: nbsgd train --out DIR against nbsgd predict --json.
TEST(Predict, CliMatchesTrainRun) {
  const std::string dir = test::make_temp_dir("predict");
  auto m = test::run_nbsgd("devices --measure --host-workers 4 --batch 64 --split 4 --slowdown 1,1,2,4 --steps 10 "
                           "--json " + dir + "/rates.json");
  ASSERT_EQ(m.exit_code, 0) << m.output;
  auto t = test::run_nbsgd("train --host-workers 4 --clock virtual --slowdown 1,1,2,4 --window fastest --batch 64 "
                           "--split 4 --steps 10 --train-limit 1024 --quiet --ceiling " + dir + "/rates.json --out " +
                           dir + "/run");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  auto p = test::run_nbsgd("predict --slowdown 1,1,2,4 --workers 4 --batch 64 --split 4 --steps 10 "
                           "--windows sync,fastest,quorum:8 --json");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  const auto pj = nlohmann::json::parse(p.output);
  const auto sj = nlohmann::json::parse(read_file(dir + "/run/summary.json"));
  ASSERT_TRUE(pj["windows"].contains("quorum:8"));
  const auto& f = pj["windows"]["fastest"];
  EXPECT_EQ(f["steps"].get<int64_t>(), sj["steps"].get<int64_t>());
  EXPECT_EQ(f["samples"].get<int64_t>(), sj["samples"].get<int64_t>());
  EXPECT_EQ(f["clock_s"].get<double>(), sj["clock_s"].get<double>());
  for (const char* key : {"step_s", "samples_per_step", "samples_per_s", "efficiency"})
    EXPECT_TRUE(f[key].is_number()) << key;
  EXPECT_EQ(f["model"]["method"], "closed-form");
  EXPECT_NEAR(f["samples_per_s"].get<double>(), sj["samples_per_s"].get<double>(),
              1e-9 * sj["samples_per_s"].get<double>());
  // --ceiling: the same ceiling (standalone rates over the same 10 steps), the same efficiency.
  ASSERT_TRUE(sj.contains("efficiency")) << sj.dump();
  EXPECT_NEAR(f["efficiency"].get<double>(), sj["efficiency"].get<double>(), 1e-12);
  auto bad = test::run_nbsgd("train --host-workers 3 --clock virtual --steps 1 --ceiling " + dir + "/rates.json");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("--ceiling"), std::string::npos) << bad.output;
}

// Planning beyond one box: 64 workers, random delays, a few windows.
TEST(Predict, SixtyFourWorkers) {
  PredictConfig c = config("", {"sync", "fastest", "quorum:128", "deadline:20"}, 200);
  c.workers = 64;
  c.profile = "paper-random";
  c.trials = 2000;
  const Prediction p = run_prediction(c);
  ASSERT_EQ(p.rates.size(), 64u);
  EXPECT_DOUBLE_EQ(window(p, "sync").sim.samples_per_step(), 64.0 * 64);
  for (const auto& w : p.windows) {
    SCOPED_TRACE(w.name);
    EXPECT_TRUE(std::isfinite(w.sim.step_s()) && w.sim.step_s() > 0);
    EXPECT_GT(w.sim_efficiency, 0);
    EXPECT_LE(w.sim_efficiency, 1.0 + 1e-9);
    ASSERT_TRUE(w.model.has_value());
  }
  // The engine as it is (timeline.h): with paper-random delays nearly every one of
  // 64 workers has a delayed mini-batch running at each close; its update waits for
  // it, and the next step's sum waits for every worker's update. So fastest's steps
  // wait for the slowest running mini-batch, and it falls below sync here (measured:
  // 0.28 against 0.40). A model that let the sum run ahead of cancelled work (the old
  // one) fails this.
  EXPECT_GT(window(p, "sync").sim_efficiency, window(p, "fastest").sim_efficiency);
}

TEST(Predict, ScheduleRanges) {
  PredictConfig c = config("", {"sync"}, 1000);
  c.profile = "thermal";
  const Prediction p = run_prediction(c);
  straggler::ResolvedProfile r = straggler::resolve(straggler::load_profile("thermal"), 4, {});
  const auto ranges = constant_ranges(r, 1000);
  ASSERT_EQ(ranges.size(), 3u);
  using R = std::pair<int64_t, int64_t>;
  EXPECT_EQ(ranges[0], R(0, 300));
  EXPECT_EQ(ranges[1], R(300, 600));
  EXPECT_EQ(ranges[2], R(600, 1000));
  EXPECT_EQ(constant_ranges(r, 100).size(), 1u);
  // Deterministic: the range-weighted closed form is the simulation.
  EXPECT_NEAR(p.windows[0].model->step_s, p.windows[0].sim.step_s(), 1e-8);
}

TEST(Predict, MeasuredComputeTimes) {
  PredictConfig c = config("", {"sync"}, 20);
  c.compute_s = {1e-3, 1e-3, 2e-3, 4e-3};
  c.after_close_s = 0.5e-3;
  const Prediction p = run_prediction(c);
  // sync: the slowest worker's 4 mini-batches, then the fixed cost.
  EXPECT_NEAR(p.windows[0].sim.step_s(), 4 * 4e-3 + 0.5e-3, 1e-8);
  EXPECT_NEAR(p.windows[0].model->step_s, 4 * 4e-3 + 0.5e-3, 1e-12);
  // Same as --slowdown 1,1,2,4 on a 1 ms mini-batch.
  c.compute_s = {1e-3};
  c.slowdown = "1,1,2,4";
  EXPECT_NEAR(run_prediction(c).windows[0].sim.step_s(), p.windows[0].sim.step_s(), 1e-8);
}

TEST(Predict, RatesFile) {
  const std::string dir = test::make_temp_dir("rates");
  MeasuredRates r;
  r.rates = {100, 200};
  r.sum = 300;
  r.net = "lenet";
  r.profile = "none";
  r.batch = 64;
  r.split = 4;
  r.clock = "real";
  r.devices = {"a", "b"};
  std::ofstream(dir + "/r.json") << to_json(r).dump();
  const MeasuredRates back = load_rates(dir + "/r.json", "--ceiling");
  EXPECT_EQ(back.rates, r.rates);
  EXPECT_EQ(back.sum, 300);
  EXPECT_EQ(back.net, "lenet");
  std::ofstream(dir + "/bad.json") << R"({"rates": [1, -2]})";
  EXPECT_THROW(load_rates(dir + "/bad.json", "--ceiling"), InputError);
  std::ofstream(dir + "/sum.json") << R"({"rates": [1, 2], "sum": 4})";
  EXPECT_THROW(load_rates(dir + "/sum.json", "--ceiling"), InputError);
  try {
    load_rates(dir + "/missing.json", "--ceiling");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--ceiling " + dir + "/missing.json"), std::string::npos) << e.what();
  }
}

// devices --measure on the virtual clock: the standalone rates predict's ceiling
// uses; a deterministic device's rate is a one-worker engine run's.
TEST(Predict, MeasureVirtualRates) {
  MeasureConfig m;
  m.train.host_workers = 4;
  m.train.batch = 64;
  m.train.split = 4;
  m.train.slowdown = "1,1,2,4";
  m.steps = 50;
  const MeasuredRates r = measure_rates(m);
  EXPECT_EQ(r.clock, "virtual");
  ASSERT_EQ(r.rates.size(), 4u);
  const Prediction p = run_prediction(config("1,1,2,4", {"sync"}, 50));
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(r.rates[i], p.rates[i]);
  EXPECT_NEAR(r.sum, p.ceiling, 1e-9 * p.ceiling);

  engine::TrainConfig c;
  c.host_workers = 1;
  c.clock = "virtual";
  c.batch = 64;
  c.split = 4;
  c.train_limit = 1024;
  c.test_limit = 64;
  c.slowdown = "4";
  c.steps = 10;
  c.quiet = true;
  engine::Engine e(c);
  const engine::RunSummary s = e.run([](const engine::StepRecord&) {});
  EXPECT_NEAR(s.samples_per_s, r.rates[3], 1e-9 * r.rates[3]);

  const std::string dir = test::make_temp_dir("measure");
  auto cli = test::run_nbsgd("devices --measure --host-workers 4 --batch 64 --split 4 --slowdown 1,1,2,4 --steps 50 "
                             "--json " + dir + "/rates.json");
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  const MeasuredRates back = load_rates(dir + "/rates.json", "--rates");
  EXPECT_EQ(back.rates, r.rates);
  EXPECT_EQ(back.net, "lenet");
  // Measure-only flags without --measure are refused.
  EXPECT_NE(test::run_nbsgd("devices --net lenet").exit_code, 0);
}

TEST(Predict, BadFlags) {
  struct Case {
    std::string args, expect;
  };
  const std::string base = "--workers 4 --batch 64 --split 4 --steps 5 ";
  const std::vector<Case> cases = {
      {base + "--windows sync,bogus", "--windows bogus"},
      {base + "--windows quorum:x", "--windows quorum:x"},
      {"--workers 4 --batch 64 --split 3", "--split 3"},
      {"--workers 0", "--workers 0"},
      {"--workers 4 --steps 0", "--steps 0"},
      {base + "--slowdown 1,2", "--slowdown 1,2"},
      {base + "--slowdown 1,1,1,0.5", "--slowdown"},
      {base + "--profile no-such-profile", "no-such-profile"},
      {base + "--profile one-slow --slowdown 1,1,1,1", "--profile and --slowdown"},
      {base + "--compute-ms 1,2", "--compute-ms"},
      {base + "--compute-ms -1", "--compute-ms"},
      {base + "--rates /nonexistent/rates.json", "--rates /nonexistent/rates.json"},
      {base + "--net nonet", "nonet"},
      {base + "--windows quorum:100 --cap 4", "--windows quorum:100"},
  };
  for (const Case& k : cases) {
    auto r = test::run_nbsgd("predict " + k.args);
    EXPECT_EQ(r.exit_code, 1) << k.args << "\n" << r.output;
    EXPECT_NE(r.output.find("nbsgd: error:"), std::string::npos) << k.args << "\n" << r.output;
    EXPECT_NE(r.output.find(k.expect), std::string::npos) << k.args << "\n" << r.output;
  }
}

}  // namespace
}  // namespace nbsgd::predict
