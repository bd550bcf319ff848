// The engine with the gossip exchanges (D-PSGD, MATCHA, AD-PSGD) and the Timeline on the virtual clock,
// faithful (barrier-free) baselines, AD-PSGD reproducibility, consensus, exchange;
// and the real-clock baselines against the virtual clock.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>

#include "runtime/device/check.h"
#include "support/test_support.h"
#include "runtime/apps/compare/compare.h"
#include "runtime/train/engine.h"
#include "runtime/train/exchange.h"
#include "runtime/train/timeline.h"
#include "runtime/train/gossip/mixing.h"
#include "runtime/train/gossip/topology.h"
#include "runtime/train/straggler/profile.h"
#include "support/timeline_runs.h"

namespace nbsgd::engine {
namespace {

TrainConfig small(const std::string& exchange, const std::string& window) {
  TrainConfig c;
  c.net = "mlp";
  c.data = "fashion-mnist";
  c.train_limit = 2048;
  c.test_limit = 256;
  c.host_workers = 4;
  c.exchange = exchange;
  c.window = window;
  c.batch = 32;
  c.split = 4;
  c.steps = 4;
  c.seed = 3;
  c.quiet = true;
  return c;
}

struct Outcome {
  std::vector<StepRecord> steps;
  RunSummary sum;
  std::vector<std::vector<float>> x;
};

Outcome run(const TrainConfig& c) {
  Engine e(c);
  Outcome r;
  r.sum = e.run([&](const StepRecord& s) { r.steps.push_back(s); });
  r.x = e.replicas();
  return r;
}

void expect_identical(const Outcome& a, const Outcome& b) {
  ASSERT_EQ(a.steps.size(), b.steps.size());
  for (size_t i = 0; i < a.steps.size(); ++i) {
    EXPECT_EQ(a.steps[i].loss, b.steps[i].loss) << "step " << i;  // bit-identical
    EXPECT_EQ(a.steps[i].finished, b.steps[i].finished) << "step " << i;
    EXPECT_EQ(a.steps[i].t, b.steps[i].t) << "step " << i;
  }
  ASSERT_EQ(a.x.size(), b.x.size());
  for (size_t i = 0; i < a.x.size(); ++i) EXPECT_TRUE(a.x[i] == b.x[i]) << "replica " << i;
}

// With no stragglers every worker finishes its m mini-batches at the same virtual
// times, so a non-blocking window counts exactly what the blocking one does.
TEST(GossipEngine, FastestEqualsSyncWithoutStragglers) {
  for (std::string ex : {"dpsgd", "matcha"}) {
    for (std::string scope : {"global", "neighbors"}) {
      SCOPED_TRACE(ex + " " + scope);
      TrainConfig s = small(ex, "sync"), f = small(ex, "fastest");
      s.window_scope = f.window_scope = scope;
      Outcome a = run(s), b = run(f);
      expect_identical(a, b);
      for (const auto& st : b.steps) EXPECT_EQ(st.samples, 4 * 32);
      // The replicas really differ (decentralised; MATCHA may make some pairs equal).
      bool differ = false;
      for (const auto& xi : a.x) differ |= !(xi == a.x[0]);
      EXPECT_TRUE(differ);
    }
  }
}

TEST(GossipEngine, AdpsgdIsReproducible) {
  setenv("NBSGD_PROFILES_DIR", NBSGD_SOURCE_DIR "/profiles", 1);
  TrainConfig c = small("adpsgd", "fastest");
  c.profile = "paper-random";
  c.steps = 3;
  Outcome a = run(c), b = run(c);
  expect_identical(a, b);
  ASSERT_EQ(a.steps.size(), 3u);
  for (const auto& s : a.steps) {
    EXPECT_EQ(s.samples, 4 * 32);  // a round is N iterations of B samples
    EXPECT_TRUE(std::isfinite(s.loss));
    EXPECT_GE(s.consensus, 0.0);
  }
  // The random delays make some worker run more iterations than another in a round.
  bool uneven = false;
  for (const auto& s : a.steps)
    for (int k : s.finished) uneven |= k != c.split;
  EXPECT_TRUE(uneven);
}

// lr ~ 0: only the mixing acts, and the squared consensus distance shrinks at least
// as fast as the spectral bound ||W - J||^(2t) for the fixed D-PSGD matrix.
TEST(GossipEngine, ReplicasConvergeWithZeroLearningRate) {
  TrainConfig c = small("dpsgd", "sync");
  c.lr = 1e-30;  // the schedule wants lr > 0; lr * g is far below half an ulp of x
  c.momentum = 0;
  c.weight_decay = 0;
  c.steps = 6;
  Engine e(c);
  auto x = e.replicas();
  for (size_t i = 0; i < x.size(); ++i) {
    for (size_t k = 0; k < x[i].size(); ++k) x[i][k] += 0.01f * static_cast<float>((i * 7 + k * 13) % 11) - 0.05f;
    e.set_replica(static_cast<int>(i), x[i]);
  }
  double d0 = 0;
  {
    std::vector<double> mean(x[0].size(), 0.0);
    for (auto& xi : x)
      for (size_t k = 0; k < xi.size(); ++k) mean[k] += xi[k] / double(x.size());
    for (auto& xi : x)
      for (size_t k = 0; k < xi.size(); ++k) d0 += (xi[k] - mean[k]) * (xi[k] - mean[k]);
    d0 /= double(x.size());
  }
  std::vector<double> d;
  e.run([&](const StepRecord& s) { d.push_back(s.consensus); });
  ASSERT_EQ(d.size(), 6u);
  const double rho = gossip::make_dpsgd_plan(gossip::ring(4)).rho;  // ||W - J||
  double prev = d0;
  for (size_t t = 0; t < d.size(); ++t) {
    EXPECT_LT(d[t], prev) << "step " << t;
    EXPECT_LE(d[t], d0 * std::pow(rho, 2.0 * double(t + 1)) * (1 + 1e-4) + 1e-12) << "step " << t;
    prev = d[t];
  }
}

// One step with lr ~ 0 is x_i <- sum_j W_ij x_j, bit for bit, in ascending j.
TEST(GossipEngine, ExchangeIsTheMatrixProduct) {
  for (std::string ex : {"dpsgd", "matcha"}) {
    SCOPED_TRACE(ex);
    TrainConfig c = small(ex, "fastest");
    c.lr = 1e-30;  // the schedule wants lr > 0; lr * g is far below half an ulp of x
    c.momentum = 0;
    c.weight_decay = 0;
    c.steps = 1;
    c.topology = "complete";
    c.lr_scaling = ex == "matcha" ? "none" : "linear";  // the fused and the unfused update
    Engine e(c);
    auto x = e.replicas();
    for (size_t i = 0; i < x.size(); ++i) {
      for (size_t k = 0; k < x[i].size(); ++k) x[i][k] = float((i + 1) * ((k % 5) + 1)) * 0.25f;
      e.set_replica(static_cast<int>(i), x[i]);
    }
    const auto W = e.step_weights(0);
    e.run([](const StepRecord&) {});
    auto y = e.replicas();
    for (size_t i = 0; i < x.size(); ++i) {
      std::vector<float> want(x[i].size());
      for (size_t k = 0; k < want.size(); ++k) {
        const auto& list = W[i];
        float s = static_cast<float>(list[0].second) * x[static_cast<size_t>(list[0].first)][k];
        for (size_t q = 1; q < list.size(); ++q)
          s += static_cast<float>(list[q].second) * x[static_cast<size_t>(list[q].first)][k];
        want[k] = s;
      }
      EXPECT_TRUE(want == y[i]) << "worker " << i;
    }
  }
}

// Blocking D-PSGD on a ring with one slow worker: no barrier, so workers far from
// the slow one run ahead, but never by more than their graph distance in steps.
TEST(GossipTimeline, BlockingDriftIsBoundedByGraphDistance) {
  const int N = 6;
  TimelineConfig tc;
  tc.controller.window = parse_window("sync");
  tc.mixes_models = true;
  tc.controller.workers = N;
  tc.controller.batch = 32;
  tc.controller.split = 4;
  tc.controller.cap = 4;
  tc.flops_per_sample = 1e9;  // 0.1 ms per sample at the default 10 TFLOP/s
  tc.params = 1000;
  tc.model.launch_overhead_s = 20e-6;
  auto prof = straggler::resolve(straggler::profile_from_slowdowns({5, 1, 1, 1, 1, 1}), N, {});
  const gossip::Graph g = gossip::ring(N);
  const auto nb = g.neighbours();
  const DurationModel dm = tc.model;
  tc.exchange_s = [&nb, dm](int64_t, int w) { return dm.gossip_s(4000, static_cast<int>(nb[w].size())); };
  tc.waits_for = [&nb](int64_t, int w) -> const std::vector<int>& { return nb[w]; };
  Timeline tl(tc, prof, test_runs::endless_take(), test_runs::ignore_give_back());
  std::vector<std::vector<double>> end(N);  // end[w][t] = E(w,t)
  for (int64_t t = 0; t < 12; ++t) {
    TimelineStep o = tl.finish_step(t);
    for (int w = 0; w < N; ++w) {
      end[w].push_back(o.workers[w].end);
      EXPECT_EQ(o.workers[w].finished, 4);
    }
  }
  auto dist = [&](int a, int b) { return std::min(std::abs(a - b), N - std::abs(a - b)); };
  bool drift = false;
  for (int w0 = 0; w0 < N; ++w0)
    for (double T : end[w0]) {
      std::vector<int> done(N, 0);
      for (int w = 0; w < N; ++w)
        for (double e : end[w]) done[w] += e <= T;
      for (int a = 0; a < N; ++a)
        for (int b = 0; b < N; ++b) {
          EXPECT_LE(std::abs(done[a] - done[b]), dist(a, b)) << "at t=" << T << " workers " << a << "," << b;
          drift |= done[a] != done[b];
        }
    }
  EXPECT_TRUE(drift);
}

// The real clock runs the blocking baselines (dpsgd/matcha --window sync) without a
// global barrier. Without stragglers it computes exactly the virtual clock's bits:
// the same mini-batches on the same workers in the same order, the same updates and
// mixing, whatever the threads' timing.
TEST(GossipEngine, RealClockSyncBaselinesComputeTheVirtualClocksBits) {
  for (const char* exchange : {"dpsgd", "matcha"})
    for (double momentum : {0.9, 0.0}) {  // momentum 0 + no lr scaling: the fused gossip SGD kernel
      TrainConfig c = small(exchange, "sync");
      c.momentum = momentum;
      c.lr_scaling = momentum == 0.0 ? "none" : "linear";
      c.steps = 5;
      c.clock = "virtual";
      const Outcome v = run(c);
      c.clock = "real";
      const Outcome r = run(c);
      ASSERT_EQ(v.steps.size(), r.steps.size());
      for (size_t i = 0; i < v.steps.size(); ++i) {
        EXPECT_EQ(v.steps[i].loss, r.steps[i].loss) << exchange << " momentum " << momentum << " step " << i;
        EXPECT_EQ(v.steps[i].samples, r.steps[i].samples);
        EXPECT_EQ(v.steps[i].finished, r.steps[i].finished);
      }
      for (size_t i = 0; i < v.x.size(); ++i)
        EXPECT_TRUE(v.x[i] == r.x[i]) << exchange << " momentum " << momentum << " replica " << i;
      EXPECT_EQ(v.sum.test_loss, r.sum.test_loss);
    }
}

// With real stragglers (sleeps on the host) the baseline still uses every sample
// of an epoch exactly once, reports the injected delays, and keeps finite replicas.
TEST(GossipEngine, RealClockWithStragglersUsesEverySampleOnce) {
  TrainConfig c = small("dpsgd", "sync");
  c.clock = "real";
  c.steps = 0;
  c.epochs = 1;
  c.train_limit = 1024;  // 8 steps of 4 workers x 32
  c.slowdown = "1,1,2,4";
  const Outcome r = run(c);
  ASSERT_EQ(r.sum.samples_per_epoch.size(), 1u);
  EXPECT_EQ(r.sum.samples_per_epoch[0], 1024);
  EXPECT_EQ(r.sum.steps, 8);
  for (const StepRecord& s : r.steps) {
    EXPECT_EQ(s.samples, 128);
    EXPECT_EQ(s.finished, (std::vector<int>{4, 4, 4, 4}));
    EXPECT_GE(s.t, 0.0);
  }
  for (size_t i = 1; i < r.steps.size(); ++i) EXPECT_GT(r.steps[i].t, r.steps[i - 1].t);
  for (const auto& x : r.x)
    for (float v : x) ASSERT_TRUE(std::isfinite(v));
}

// The non-blocking gossip windows on the real clock (global scope), with a worker
// 4x slower: cancelled work is handed out again and an epoch still uses every
// sample exactly once. (How much each worker finishes depends on real timing, so
// it is reported by the benches, not asserted here.)
TEST(GossipEngine, RealClockFastestWindowUsesEverySampleOnce) {
  for (const char* exchange : {"dpsgd", "matcha"}) {
    TrainConfig c = small(exchange, "fastest");
    c.clock = "real";
    c.steps = 0;
    c.epochs = 1;
    c.train_limit = 1024;
    c.slowdown = "1,1,1,4";
    const Outcome r = run(c);
    ASSERT_EQ(r.sum.samples_per_epoch.size(), 1u) << exchange;
    EXPECT_EQ(r.sum.samples_per_epoch[0], 1024) << exchange;
    int64_t samples = 0;
    for (const StepRecord& s : r.steps) {
      samples += s.samples;
      ASSERT_EQ(s.finished.size(), 4u);
      int64_t k = 0;
      for (int i = 0; i < 4; ++i) {
        k += s.finished[static_cast<size_t>(i)];
        EXPECT_LE(s.finished[static_cast<size_t>(i)], 4) << "the cap is m";
      }
      EXPECT_EQ(s.samples, k * 8) << "n = 8 samples per counted mini-batch";
      EXPECT_GT(s.window_s, 0.0);
    }
    EXPECT_EQ(samples, r.sum.samples) << exchange;
    EXPECT_GE(samples, 1024) << exchange;
    for (const auto& x : r.x)
      for (float v : x) ASSERT_TRUE(std::isfinite(v));
  }
}

TEST(GossipEngine, RealClockRefusesWhatOnlyTheVirtualClockModels) {
  struct Case {
    std::string exchange, window, needle;
  };
  for (const Case& k : {Case{"dpsgd", "fastest", "--window-scope neighbors"},
                        Case{"matcha", "adaptive", "--window-scope neighbors"}, Case{"adpsgd", "sync", "--exchange adpsgd"}}) {
    TrainConfig c = small(k.exchange, k.window);
    c.clock = "real";
    c.window_scope = "neighbors";
    try {
      Engine e(c);
      ADD_FAILURE() << "expected an InputError for " << k.exchange << "/" << k.window;
    } catch (const InputError& err) {
      EXPECT_NE(std::string(err.what()).find(k.needle), std::string::npos) << err.what();
    }
  }
}

// Exact resume: save at step k, resume and run to k+m; the steps k..k+m-1 and the
// final replicas are the uninterrupted run's, bit for bit, with stragglers (the
// workers are apart when the checkpoint is taken), momentum or the fused gossip SGD.
TEST(GossipEngine, ResumeIsTheUninterruptedRunBitForBit) {
  struct Case {
    std::string exchange, window, scope;
    double momentum;
  };
  const std::string path = test::make_temp_dir("gossip-resume") + "/ck.safetensors";
  for (const Case& k : {Case{"dpsgd", "sync", "global", 0.9}, Case{"dpsgd", "fastest", "neighbors", 0.0},
                        Case{"matcha", "quorum:12", "global", 0.9}, Case{"matcha", "adaptive", "neighbors", 0.9}}) {
    SCOPED_TRACE(k.exchange + "/" + k.window + "@" + k.scope);
    TrainConfig c = small(k.exchange, k.window);
    c.window_scope = k.scope;
    c.momentum = k.momentum;
    c.slowdown = "1,1,2,4";
    c.steps = 6;
    const Outcome straight = run(c);
    TrainConfig first = c;
    first.steps = 3;
    {
      Engine e(first);
      e.run([](const StepRecord&) {});
      e.save_checkpoint(path);
    }
    TrainConfig second = c;
    second.resume = path;
    const Outcome resumed = run(second);
    ASSERT_EQ(resumed.steps.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      const StepRecord &a = resumed.steps[i], &b = straight.steps[i + 3];
      EXPECT_EQ(a.step, b.step);
      EXPECT_EQ(a.loss, b.loss) << "step " << b.step;
      EXPECT_EQ(a.finished, b.finished) << "step " << b.step;
      EXPECT_EQ(a.t, b.t) << "step " << b.step;
      EXPECT_EQ(a.consensus, b.consensus) << "step " << b.step;
    }
    for (size_t i = 0; i < straight.x.size(); ++i) EXPECT_TRUE(resumed.x[i] == straight.x[i]) << "replica " << i;
    EXPECT_EQ(resumed.sum.final_train_loss, straight.sum.final_train_loss);
  }
}

TEST(GossipCompare, ParsesRunsAndComputesSpeedups) {
  auto runs = parse_runs("ring/sync,dpsgd/sync,dpsgd/fastest@neighbors,matcha/sync,adpsgd");
  ASSERT_EQ(runs.size(), 5u);
  EXPECT_EQ(runs[2].scope, "neighbors");
  EXPECT_EQ(runs[2].dir_name(), "dpsgd_fastest_neighbors");
  EXPECT_THROW(parse_runs("ring"), InputError);
  EXPECT_THROW(parse_runs("adpsgd/sync"), InputError);
  EXPECT_THROW(parse_runs("dpsgd/sometimes"), InputError);
  std::vector<CompareRow> rows;
  for (auto& r : runs) rows.push_back({r, {}, -1, {}, {}, {}, {}});
  rows[1].summary.time_to_target_s = 4.0;  // dpsgd/sync
  rows[2].summary.time_to_target_s = 1.0;
  rows[3].summary.time_to_target_s = 2.0;  // matcha/sync
  rows[2].summary.samples_per_s = 50;
  compute_speedups(rows, {25, 75});
  EXPECT_DOUBLE_EQ(*rows[2].vs_own, 4.0);
  EXPECT_DOUBLE_EQ(*rows[2].vs_dpsgd, 4.0);
  EXPECT_DOUBLE_EQ(*rows[2].vs_matcha, 2.0);
  EXPECT_DOUBLE_EQ(rows[2].efficiency, 0.5);
  EXPECT_FALSE(rows[4].vs_dpsgd.has_value());  // adpsgd did not reach the target
}

}  // namespace
}  // namespace nbsgd::engine
