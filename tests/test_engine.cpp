// The non-blocking engine on host workers with the virtual clock: exact tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>

#include <cmath>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "nets/optim/sgd.h"
#include "runtime/device/check.h"
#include "runtime/device/comm/comm.h"
#include "runtime/train/engine.h"
#include "support/engine_runs.h"

namespace nbsgd::engine {
namespace {

using namespace test_runs;

TEST(Engine, EveryPolicyAdmittingTheWholeBatchEqualsSyncWithoutStragglers) {
  TrainConfig base = small_config();
  base.steps = 10;
  base.window = "sync";
  RunOut sync = run(base);
  ASSERT_EQ(sync.steps.size(), 10u);
  for (const auto& s : sync.steps) EXPECT_EQ(s.samples, 4 * 64);
  struct Case {
    const char* window;
    const char* cap;
    int inflight;
  };
  // quorum:16 without a cap keeps handing out while the window is open: with two in
  // flight every worker holds a fifth mini-batch at the close, skipped and given
  // back, which reorders the queue (the same samples count, on other workers). One
  // in flight hands out nothing beyond the quorum.
  for (Case k : {Case{"fastest", "", 2}, Case{"quorum:16", "", 1}, Case{"adaptive", "", 2},
                 Case{"deadline:1000", "m", 2}, Case{"quorum:16", "m", 2}}) {
    TrainConfig c = base;
    c.window = k.window;
    c.cap = k.cap;
    c.inflight = k.inflight;
    RunOut r = run(c);
    EXPECT_EQ(losses(r), losses(sync)) << k.window;  // bit for bit
    EXPECT_EQ(r.hashes, sync.hashes) << k.window;
    for (const auto& s : r.steps) EXPECT_EQ(s.finished, std::vector<int>(4, 4)) << k.window;
  }
  TrainConfig q = base;
  q.window = "quorum:16";
  q.inflight = 2;
  RunOut r = run(q);
  EXPECT_NE(r.hashes, sync.hashes) << "quorum:16, no cap, 2 in flight: the skipped fifth mini-batches reorder the data";
  for (const auto& s : r.steps) EXPECT_EQ(s.finished, std::vector<int>(4, 4));
  EXPECT_EQ(r.summary.skipped_minibatches, 4 * 10);
}

// An independent computation of the duration model for the fastest window with
// constant slowdowns: each worker's k_i from closed-form arithmetic on the 1 ns grid.
void check_fastest_against_model(const std::string& slowdown, const std::vector<int64_t>& s, bool expect_cancel,
                                 bool expect_late) {
  TrainConfig c = small_config();
  c.steps = 12;
  c.batch = 128;
  c.split = 8;
  c.train_limit = 4096;
  c.window = "fastest";
  c.slowdown = slowdown;
  Engine e(c);
  std::vector<StepRecord> got;
  e.run([&](const StepRecord& s) { got.push_back(s); });

  const DurationModel& dm = e.config().model;  // launch overhead resolved for the net
  auto ns = [](double s) { return std::llround(s * 1e9); };
  const int64_t cost = ns(dm.compute_s(e.flops_per_sample(), 16));
  const int64_t sum = ns(dm.allreduce_s((e.num_params() + 2) * sizeof(float), 4));
  const int64_t update = ns(dm.update_s(e.num_params()));
  const int m = 8;
  // The engine's rules (timeline.h): worker w's mini-batches of step t begin at
  // E(w,t-1), its previous update's end; the window's clock starts at the first
  // such end (worker 0's: s = 1, never busy past a close); a mini-batch still
  // running at the close is wasted and w's update waits for it; the sum (into the
  // step's own accumulator of two) starts once the window closed, the previous sum
  // ended and every worker that counted nothing ended its update of step t-2; w's
  // update follows the sum, its running mini-batch and its previous update.
  std::vector<int64_t> end(4, 0), end2(4, 0);  // E(w,t-1), E(w,t-2)
  int64_t sum_end = 0;                          // the end of step t-1's sum
  bool saw_cancel = false, saw_late = false;
  for (size_t step = 0; step < got.size(); ++step) {
    const int64_t start0 = *std::min_element(end.begin(), end.end());
    const int64_t close = start0 + m * cost;
    std::vector<int> k(4);
    std::vector<int64_t> running(4, 0);
    for (int w = 0; w < 4; ++w) {
      const int64_t d = s[w] * cost;
      int n = 0;
      while (n < m && end[w] + (n + 1) * d <= close) ++n;
      k[w] = n;
      const int64_t next_start = end[w] + n * d;
      const bool cancelled = n < m && next_start < close;  // began, still running at the close
      saw_cancel |= cancelled;
      if (cancelled) running[w] = next_start + d;
      saw_late |= end[w] > close;  // still busy with its previous step when this one closed
    }
    int64_t xs = std::max(close, sum_end);
    for (int w = 0; w < 4; ++w)
      if (k[w] == 0) xs = std::max(xs, end2[w]);
    sum_end = xs + sum;
    end2 = end;
    for (int w = 0; w < 4; ++w) end[w] = std::max({sum_end, running[w], end2[w]}) + update;
    EXPECT_EQ(got[step].finished, k) << "step " << step;
    EXPECT_EQ(got[step].samples, 16 * (k[0] + k[1] + k[2] + k[3]));
    EXPECT_NEAR(got[step].window_s, m * cost * 1e-9, 1e-15);
    EXPECT_NEAR(got[step].t, *std::max_element(end.begin(), end.end()) * 1e-9, 1e-12) << "step " << step;
  }
  // With slowdowns that divide m every worker ends exactly at the close; with
  // 3 and 5 the slow ones have a mini-batch running at the close, which is wasted.
  // With 20 (a mini-batch longer than two windows) the slow worker's wasted
  // mini-batch keeps it busy past the next close: that step's sum does not wait
  // for it.
  EXPECT_EQ(saw_cancel, expect_cancel) << slowdown;
  EXPECT_EQ(saw_late, expect_late) << slowdown;
}

TEST(Engine, FastestWindowFinishesWhatTheDurationModelPredicts) {
  check_fastest_against_model("1,1,2,4", {1, 1, 2, 4}, false, false);
  check_fastest_against_model("1,1,3,5", {1, 1, 3, 5}, true, false);
  check_fastest_against_model("1,1,1,20", {1, 1, 1, 20}, true, true);
}

TEST(Engine, ExchangedGradientIsTheSampleWeightedMean) {
  // Three host workers with different sample counts; integer-valued gradients so
  // every sum is exact. After the all-reduce and one plain SGD step (lr 1, no
  // momentum, no decay, no scaling), w = w0 - sum_i G_i / sum_i n_i, which is the
  // sample-weighted mean of the per-worker mean gradients G_i / n_i.
  const size_t P = 5;
  DeviceList l = host_devices(3, "test");
  std::vector<std::unique_ptr<DeviceContext>> ctx;
  std::vector<DeviceContext*> ptr;
  for (auto& d : l.devices) {
    ctx.push_back(std::make_unique<DeviceContext>(d, ClockKind::Real));
    ptr.push_back(ctx.back().get());
  }
  const std::vector<float> n = {16, 48, 0};
  std::vector<std::vector<float>> acc(3, std::vector<float>(P + 2));
  for (int i = 0; i < 3; ++i) {
    for (size_t p = 0; p < P; ++p) acc[i][p] = n[i] == 0 ? 0 : float((i + 1) * (p + 3)) * n[i];
    acc[i][P] = n[i];
    acc[i][P + 1] = 10.0f * n[i];
  }
  std::vector<float*> bufs;
  for (int i = 0; i < 3; ++i) bufs.push_back(acc[i].data());
  auto ar = comm::make_all_reduce(ptr);
  ar->all_reduce_sum(bufs, P + 2, {});
  for (auto* c : ptr) c->comm().synchronize();
  std::vector<double> weighted(P, 0.0);
  for (int i = 0; i < 3; ++i)
    for (size_t p = 0; p < P; ++p)
      if (n[i] > 0) weighted[p] += n[i] * (acc[i][p] == acc[i][p] ? double((i + 1) * (p + 3)) : 0.0);
  const double total = n[0] + n[1] + n[2];
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(acc[i][P], total);
    std::vector<float> w(P, 1.0f);
    optim::SgdConfig cfg;
    optim::fused_sgd_update(ptr[i]->comm(), w.data(), nullptr, acc[i].data(), P, 1.0f, cfg, 1.0f);
    ptr[i]->comm().synchronize();
    for (size_t p = 0; p < P; ++p) EXPECT_FLOAT_EQ(w[p], float(1.0 - weighted[p] / total)) << i << "," << p;
  }
}

TEST(Engine, SyncEpochsEndWithTheData) {
  for (const char* exchange : {"ring", "dpsgd"}) {
    TrainConfig c = small_config();
    c.exchange = exchange;
    c.epochs = 2;
    c.window = "sync";
    c.slowdown = "1,1,3,5";
    RunOut r = run(c);
    ASSERT_EQ(r.summary.samples_per_epoch.size(), 2u) << exchange;
    EXPECT_EQ(r.summary.samples_per_epoch[0], 1024) << exchange;
    EXPECT_EQ(r.summary.samples_per_epoch[1], 1024) << exchange;
    EXPECT_EQ(r.summary.steps, 2 * 1024 / (4 * 64)) << exchange;
  }
}

TEST(Engine, EpochsUseEverySampleOnceAndReplicasStayIdentical) {
  for (const char* window : {"fastest", "quorum:10", "deadline:0.2", "adaptive"}) {
    TrainConfig c = small_config();
    c.epochs = 2;
    c.window = window;
    c.slowdown = "1,1,3,5";
    c.check_replicas_every = 5;  // throws if replicas ever differ
    RunOut r = run(c);
    ASSERT_EQ(r.summary.samples_per_epoch.size(), 2u) << window;
    EXPECT_EQ(r.summary.samples_per_epoch[0], 1024) << window;
    EXPECT_EQ(r.summary.samples_per_epoch[1], 1024) << window;
    for (size_t i = 1; i < r.hashes.size(); ++i) EXPECT_EQ(r.hashes[i], r.hashes[0]) << window;
    int64_t total = 0;
    const bool adaptive = std::string(window) == "adaptive";
    for (const auto& s : r.steps) {
      int k = 0;
      for (int x : s.finished) k += x;
      if (adaptive) {
        // Speed-proportional shares of the whole global batch (the last step of an
        // epoch gets what is left).
        if (s.step + 1 < int64_t(r.steps.size()) && s.epoch == r.steps[s.step + 1].epoch) {
          EXPECT_EQ(s.samples, 4 * 64);
        }
      } else {
        // Only finished mini-batches are in n (each of 16 samples; 1024 = 64 x 16).
        EXPECT_EQ(s.samples, 16 * k) << window << " step " << s.step;
      }
      total += s.samples;
    }
    EXPECT_EQ(total, 2048) << window;
    if (!adaptive) {
      EXPECT_GT(r.summary.wasted_minibatches, 0) << window << ": slow workers should have had work cancelled";
    }
  }
}

// The virtual timeline issues what the real driver issues: with --window sync both
// hand out each step's mini-batches round-robin (mini-batch k of every worker,
// worker 0 first), whatever the stragglers, so the same samples reach the same
// workers in the same order and every bit agrees between the clocks. (A timeline
// that hands out in completion order, as the old one did, fails this.)
TEST(Engine, VirtualAndRealClockIssueTheSameSequenceForASyncSchedule) {
  for (const char* exchange : {"ring", "dpsgd"}) {
    TrainConfig c = small_config();
    c.exchange = exchange;
    c.window = "sync";
    c.slowdown = "1,1,2,4";
    c.steps = 6;
    c.clock = "virtual";
    RunOut v = run(c);
    c.clock = "real";
    RunOut r = run(c);
    ASSERT_EQ(v.steps.size(), r.steps.size()) << exchange;
    for (size_t i = 0; i < v.steps.size(); ++i) {
      EXPECT_EQ(v.steps[i].loss, r.steps[i].loss) << exchange << " step " << i;
      EXPECT_EQ(v.steps[i].finished, r.steps[i].finished) << exchange << " step " << i;
    }
    EXPECT_EQ(v.hashes, r.hashes) << exchange;
  }
}

TEST(Engine, RealClockKeepsTheSameInvariants) {
  TrainConfig c = small_config();
  c.clock = "real";
  c.host_workers = 3;
  c.train_limit = 512;
  c.epochs = 1;
  c.slowdown = "1,2,3";
  c.check_replicas_every = 4;
  RunOut r = run(c);
  ASSERT_EQ(r.summary.samples_per_epoch.size(), 1u);
  EXPECT_EQ(r.summary.samples_per_epoch[0], 512);
  for (size_t i = 1; i < r.hashes.size(); ++i) EXPECT_EQ(r.hashes[i], r.hashes[0]);
  for (const auto& s : r.steps) {
    int k = 0;
    for (int x : s.finished) k += x;
    EXPECT_EQ(s.samples, 16 * k);
  }
  // The issuers' and watchers' own CPU is tallied at their ends (bench_fidelity's
  // --virtual-host-us); it is no more than their 6 threads could use in the run.
  EXPECT_GT(r.summary.driver_cpu_s, 0.0);
  EXPECT_LT(r.summary.driver_cpu_s, 6 * r.summary.wall_s);
  // The watchers' wake-up lag (bench_fidelity's notice latency): every watcher
  // blocks on mini-batches still computing, and wakes after their end.
  EXPECT_GT(r.summary.notice_lag_s, 0.0);
  EXPECT_LT(r.summary.notice_lag_s, r.summary.wall_s);
  // The issue lag (bench_fidelity's --virtual-issue-us): with one in flight every
  // hand-out after a step's first waits for a completion, and its mini-batch then
  // begins after it on its stream.
  TrainConfig one = c;
  one.inflight = 1;
  const RunSummary s1 = run(one).summary;
  EXPECT_GT(s1.issue_lag_s, 0.0);
  EXPECT_LT(s1.issue_lag_s, s1.wall_s);
  c.clock = "virtual";
  const RunSummary v = run(c).summary;
  EXPECT_EQ(v.driver_cpu_s, 0.0);  // no such threads
  EXPECT_EQ(v.notice_lag_s, 0.0);
  one.clock = "virtual";
  EXPECT_EQ(run(one).summary.issue_lag_s, 0.0);
}

TEST(Engine, StepWhereNobodyFinishesIsSkippedAndLogged) {
  // Every worker stalls for 50 ms at step 2; the 5 ms deadline closes first.
  const char* toml =
      "[device.default]\n"
      "[[device.default.schedule]]\n"
      "steps = [2, 3]\n"
      "stall = { distribution = \"constant\", value_ms = 50 }\n";
  const TempProfile prof(toml);
  TrainConfig c = small_config();
  c.steps = 30;
  c.window = "deadline:5";
  c.cap = "m";
  c.profile = prof.path;
  RunOut r = run(c);
  ASSERT_EQ(r.steps.size(), 30u);
  EXPECT_FALSE(r.steps[0].skipped);
  EXPECT_FALSE(r.steps[1].skipped);
  // The stall is never cut short: the workers stay busy for 50 ms, so every step
  // until they are free again finishes nothing and is skipped.
  int skipped = 0;
  for (size_t i = 2; i < r.steps.size() && r.steps[i].skipped; ++i, ++skipped) {
    EXPECT_EQ(r.steps[i].samples, 0);
    EXPECT_TRUE(std::isnan(r.steps[i].loss));
  }
  EXPECT_GE(skipped, 1);
  EXPECT_LT(skipped, 28);
  EXPECT_EQ(r.summary.skipped_steps, skipped);
  EXPECT_FALSE(r.steps.back().skipped);
}

// The real clock: a mini-batch whose window closed before it began does no work.
// Worker 1 is 8x slower: when worker 0's window closes, worker 1's running
// mini-batch runs on (wasted) and the one queued behind it (--inflight 2) is
// skipped. Every mini-batch that computed either counted or was running.
TEST(Engine, RealClockQueuedWorkOfAClosedWindowDoesNoWork) {
  TrainConfig c = small_config();
  c.host_workers = 2;
  c.clock = "real";
  c.slowdown = "1,8";
  c.inflight = 2;
  c.steps = 12;
  RunOut r = run(c);
  int64_t counted = 0;
  for (const auto& s : r.steps) counted += s.finished[0] + s.finished[1];
  EXPECT_GT(r.summary.skipped_minibatches, 0);
  ASSERT_GE(r.summary.computed_minibatches, 0);
  EXPECT_EQ(r.summary.computed_minibatches, counted + r.summary.wasted_minibatches);
}

// A worker stalled for longer than the whole run does not hold its end: its queued
// work is cancelled and the stall still held is cut short, and the run says so.
TEST(Engine, AStalledWorkerDoesNotHoldTheRunsEnd) {
  const char* toml =
      "[device.default]\n"
      "[device.1]\n"
      "stall = { probability = 1.0, distribution = \"constant\", value_ms = 600000 }\n";
  const TempProfile prof(toml);
  TrainConfig c = small_config();
  c.host_workers = 2;
  c.clock = "real";
  c.steps = 5;
  c.window = "fastest";
  c.profile = prof.path;
  // Run on a thread of its own: were the run held, the test fails after the safety
  // net instead of waiting 10 minutes per step (the thread is left behind).
  auto done = std::make_shared<std::promise<RunOut>>();
  std::future<RunOut> f = done->get_future();
  std::thread([c, done] { done->set_value(run(c)); }).detach();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(120)), std::future_status::ready) << "the stalled worker held the run";
  RunOut r = f.get();
  ASSERT_EQ(r.steps.size(), 5u);
  for (const auto& s : r.steps) EXPECT_EQ(s.finished[1], 0);  // the stalled worker contributes nothing
  EXPECT_GE(r.summary.abandoned_holds, 1);
}

TEST(Engine, BadCombinationsNameTheFlag) {
  auto message = [](TrainConfig c) -> std::string {
    try {
      Engine e(c);
    } catch (const InputError& err) {
      return err.what();
    }
    return "";
  };
  TrainConfig c = small_config();
  c.split = 5;
  EXPECT_NE(message(c).find("--split"), std::string::npos);
  c = small_config();
  c.devices = "0,9";
  EXPECT_NE(message(c).find("--devices"), std::string::npos);
  c = small_config();
  c.window = "fastests";
  EXPECT_NE(message(c).find("--window"), std::string::npos);
  c = small_config();
  c.slowdown = "1,2";
  EXPECT_NE(message(c).find("--slowdown"), std::string::npos);
  c = small_config();
  c.window = "sync";
  c.cap = "none";
  EXPECT_NE(message(c).find("--cap"), std::string::npos);
  c = small_config();
  c.net = "resnet20";
  EXPECT_NE(message(c).find("--net resnet20"), std::string::npos);
  c = small_config();
  c.lr_scaling = "quadratic";
  EXPECT_NE(message(c).find("--lr-scaling"), std::string::npos);
}

}  // namespace
}  // namespace nbsgd::engine

namespace nbsgd::engine {
namespace {

using namespace test_runs;

// The issue counters on the engine's own path (issue 13, item 4; bench/issue): on
// the real clock with --window sync, each of worker 0's mini-batches is staged on
// the copy stream, and the step's mini-batches are exactly m per worker; the counts
// per mini-batch are the same in every step. With the training set on the device
// (--gather device, the default) a mini-batch is one copy (its indices) and one
// gather kernel, and no host function: the GPU never waits for the host to stage
// it. With --gather host: a host function (the gather into pinned memory) and two
// copies (images, labels).
IssueCounts copy_counts(const std::string& gather, IssueCounts* compute = nullptr) {
  TrainConfig c = small_config();
  c.host_workers = 2;
  c.clock = "real";
  c.window = "sync";
  c.steps = 5;
  c.gather = gather;
  Engine e(c);
  e.run([](const StepRecord&) {});
  const std::array<IssueCounts, 4> end = e.issue_counts(0);
  if (compute) *compute = end[0];
  return end[1];
}

TEST(Engine, RealClockIssueCountsPerMiniBatch) {
  const int mbs = 5 * small_config().split;
  IssueCounts comp;
  const IssueCounts dev = copy_counts("device", &comp);
  EXPECT_EQ(dev.host_function, 0);
  EXPECT_EQ(dev.copy, mbs);    // the indices
  EXPECT_EQ(dev.launch, mbs);  // the gather
  const IssueCounts host = copy_counts("host");
  EXPECT_EQ(host.host_function, mbs);  // one gather per mini-batch
  EXPECT_EQ(host.copy, 2 * mbs);       // images and labels
  EXPECT_EQ(host.launch, 0);
  // The compute stream's forward/backward: library calls and launches, the same
  // number for every mini-batch (LeNet: its 2 convolutions and 3 linear layers,
  // forward and backward, are library calls).
  EXPECT_GT(comp.library, 0);
  EXPECT_GT(comp.launch, 0);
  EXPECT_EQ(comp.library % mbs, 0) << comp.library;
}

// On a non-blocking window the completion is noticed off the compute stream: with
// stragglers, cancellations and the default in-flight depth, neither the compute
// nor the copy stream holds a host function, and every counted mini-batch's commit
// is a launch on the comm stream (issue 13, item 4's target).
TEST(Engine, RealClockFastestHasNoHostFunctionInTheComputeStream) {
  TrainConfig c = small_config();
  c.host_workers = 2;
  c.clock = "real";
  c.window = "fastest";
  c.slowdown = "1,3";
  c.steps = 5;
  Engine e(c);
  int64_t counted = 0;
  e.run([&](const StepRecord& r) {
    for (int f : r.finished) counted += f;
  });
  for (int w = 0; w < 2; ++w) {
    const std::array<IssueCounts, 4> n = e.issue_counts(w);
    EXPECT_EQ(n[0].host_function, 0) << "worker " << w;
    EXPECT_EQ(n[1].host_function, 0) << "worker " << w;
  }
  int64_t comm_launches = e.issue_counts(0)[2].launch + e.issue_counts(1)[2].launch;
  EXPECT_GE(comm_launches, counted);  // a commit per counted mini-batch, besides the exchange's own
  EXPECT_GT(counted, 0);
}

// A mini-batch gathered on the device from the uploaded training set is the host
// loader's, bit for bit: the same run with --gather device and --gather host gives
// the same losses and the same replicas, on both clocks' deterministic paths.
TEST(Engine, DeviceGatherTrainsExactlyLikeTheHostGather) {
  for (const char* window : {"sync", "fastest"}) {
    TrainConfig c = small_config();
    c.steps = 6;
    c.window = window;
    c.slowdown = "1,1,2,4";
    c.gather = "host";
    const RunOut host = run(c);
    c.gather = "device";
    const RunOut dev = run(c);
    EXPECT_EQ(losses(dev), losses(host)) << window;
    EXPECT_EQ(dev.hashes, host.hashes) << window;
  }
}

}  // namespace
}  // namespace nbsgd::engine
