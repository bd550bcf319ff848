// The Timeline with the ring's sum against schedules computed by hand, with the
// notice latency (DurationModel::notice_latency_s): the close is seen that long
// after it happens, so a stream that reaches a queued mini-batch of the closed step
// before then runs it (wasted) and its worker's update waits for it. Such a
// worker's update is scheduled after the sum was placed; the sum's begin is the
// one every worker's record holds (the close), not its end.
#include <gtest/gtest.h>

#include "runtime/train/straggler/profile.h"
#include "runtime/train/timeline.h"
#include "runtime/train/window.h"
#include "support/timeline_runs.h"

namespace nbsgd::engine {
namespace {

constexpr double kMs = 1e-3;
using Fate = TimelineMiniBatch::Fate;

// 2 workers, the ring's sum (2 ms), no update cost; a mini-batch of one sample
// costs 1 ms times its worker's slowdown; quorum:2, two in flight.
TimelineStep first_step(double notice_ms, const std::vector<double>& slowdowns, double host_ms = 0, int kernels = 1,
                        double exchange_ms = 2, const std::string& profile_toml = "") {
  const int N = 2;
  TimelineConfig tc;
  tc.mixes_models = false;
  tc.controller.window = parse_window("quorum:2");
  tc.controller.workers = N;
  tc.controller.batch = 2;
  tc.controller.split = 2;
  tc.controller.cap = parse_cap("", tc.controller.window, 2);
  tc.inflight = 2;
  tc.model.launch_overhead_s = 0;
  tc.model.gflops = 1.0;
  tc.model.notice_latency_s = notice_ms * kMs;
  tc.model.host_cpu_s = host_ms * kMs;
  tc.model.cancel_kernels = kernels;
  tc.flops_per_sample = 1e6;  // 1 ms at 1 GFLOP/s
  tc.params = 0;
  tc.exchange_s = [exchange_ms](int64_t, int) { return exchange_ms * kMs; };
  static const std::vector<int> none;
  tc.waits_for = [](int64_t, int) -> const std::vector<int>& { return none; };
  const auto prof = straggler::resolve(profile_toml.empty() ? straggler::profile_from_slowdowns(slowdowns)
                                                            : straggler::parse_profile(profile_toml, "test"),
                                       N, {});
  Timeline tl(tc, prof, test_runs::endless_take(), test_runs::ignore_give_back());
  return tl.finish_step(0);
}

std::vector<Fate> fates(const TimelineWorkerStep& r) {
  std::vector<Fate> f;
  for (const TimelineMiniBatch& mb : r.minibatches) f.push_back(mb.fate);
  return f;
}

// Equal workers: both first mini-batches end at 1 ms and close the window (the 2nd
// completion). Both streams are free then, with their second queued. Seen at once,
// it is skipped; seen 0.2 ms late, it runs 1 -> 2 ms and is wasted. Either way the
// sum runs 1 -> 3 ms and each update follows it: every worker ends at 3 ms.
TEST(RingTimelineByHand, TheClosersQueuedMiniBatchRunsWithinTheNoticeLatency) {
  const TimelineStep at0 = first_step(0, {1, 1});
  const TimelineStep lag = first_step(0.2, {1, 1});
  for (int w = 0; w < 2; ++w) {
    const TimelineWorkerStep &a = at0.workers[w], &r = lag.workers[w];
    EXPECT_EQ(a.finished, 1) << w;
    EXPECT_EQ(r.finished, 1) << w;
    EXPECT_EQ(fates(a), (std::vector<Fate>{Fate::Counted, Fate::Skipped})) << w;
    EXPECT_EQ(fates(r), (std::vector<Fate>{Fate::Counted, Fate::Wasted})) << w;
    EXPECT_NEAR(r.running_end, 2 * kMs, 1e-12) << w;
    for (const TimelineWorkerStep* x : {&a, &r}) {
      EXPECT_NEAR(x->close, 1 * kMs, 1e-12) << w;
      EXPECT_NEAR(x->exchange_begin, 1 * kMs, 1e-12) << w;
      EXPECT_NEAR(x->exchange_end, 3 * kMs, 1e-12) << w;
      EXPECT_NEAR(x->end, 3 * kMs, 1e-12) << w;
    }
  }
  EXPECT_EQ(at0.wasted(), 0);
  EXPECT_EQ(lag.wasted(), 2);
  EXPECT_EQ(lag.skipped(), 0);
}

// Worker 1 at 1.5x: worker 0 ends its first at 1 ms and has its second running
// (1 -> 2) and a third queued; worker 1's first ends at 1.5 ms and closes the
// window. Worker 1's stream is free then and reaches its queued second before the
// close is seen (1.7 ms): it runs 1.5 -> 3 ms, wasted, and worker 1's update is
// scheduled only then, after the sum (1.5 -> 3.5) was placed; it begins the sum's
// begin, so worker 1 ends at 3.5 ms, as worker 0 does. Worker 0's running second
// ends after the close is seen: its third is skipped.
TEST(RingTimelineByHand, AWorkerScheduledAfterTheSumTakesTheSumsBegin) {
  const TimelineStep o = first_step(0.2, {1, 1.5});
  const TimelineWorkerStep &w0 = o.workers[0], &w1 = o.workers[1];
  EXPECT_EQ(w0.finished, 1);
  EXPECT_EQ(w1.finished, 1);
  EXPECT_EQ(fates(w0), (std::vector<Fate>{Fate::Counted, Fate::Wasted, Fate::Skipped}));
  EXPECT_EQ(fates(w1), (std::vector<Fate>{Fate::Counted, Fate::Wasted}));
  EXPECT_NEAR(w0.running_end, 2 * kMs, 1e-12);
  EXPECT_NEAR(w1.running_end, 3 * kMs, 1e-12);
  for (const TimelineWorkerStep* r : {&w0, &w1}) {
    EXPECT_NEAR(r->close, 1.5 * kMs, 1e-12);
    EXPECT_NEAR(r->exchange_begin, 1.5 * kMs, 1e-12);
    EXPECT_NEAR(r->exchange_end, 3.5 * kMs, 1e-12);
    EXPECT_NEAR(r->end, 3.5 * kMs, 1e-12);
  }
}

// The engine's own host CPU per mini-batch (DurationModel::host_cpu_s, 0.25 ms):
// a mini-batch costs 1.25 ms, and the throttle scales that, as the real throttle
// scales the compute time it measured. Worker 1 at 3x: 3.75 ms. Worker 0's two
// end at 1.25 and 2.5 ms and close the window (quorum:2); its third, queued, is
// skipped. Worker 1's first is still running (wasted) and ends at 3.75. The sum
// runs 2.5 -> 4.5 ms; both updates follow it. Without the term: 2, 3 and 4 ms.
TEST(RingTimelineByHand, TheEnginesHostCpuIsPartOfWhatTheThrottleScales) {
  for (double host : {0.0, 0.25}) {
    const TimelineStep o = first_step(0, {1, 3}, host);
    const double u = 1 + host;  // a mini-batch at 1x, ms
    const TimelineWorkerStep &w0 = o.workers[0], &w1 = o.workers[1];
    EXPECT_EQ(w0.finished, 2) << host;
    EXPECT_EQ(w1.finished, 0) << host;
    EXPECT_EQ(fates(w0), (std::vector<Fate>{Fate::Counted, Fate::Counted, Fate::Skipped})) << host;
    EXPECT_EQ(fates(w1), (std::vector<Fate>{Fate::Wasted, Fate::Skipped})) << host;
    EXPECT_NEAR(w0.minibatches[0].end, u * kMs, 1e-12) << host;
    EXPECT_NEAR(w1.running_end, 3 * u * kMs, 1e-12) << host;
    for (const TimelineWorkerStep* r : {&w0, &w1}) {
      EXPECT_NEAR(r->close, 2 * u * kMs, 1e-12) << host;
      EXPECT_NEAR(r->exchange_end, (2 * u + 2) * kMs, 1e-12) << host;
      EXPECT_NEAR(r->end, (2 * u + 2) * kMs, 1e-12) << host;
    }
  }
}

// --cancel-at kernel, modelled (DurationModel::cancel_kernels = K): a mini-batch
// running when the close is seen stops at the first of K equal slices of its slowed
// compute that ends after that. quorum:2, the close seen 0.5 ms late, a 0.5 ms sum.
// Worker 0's two end at 1 and 2 ms and close the window (its next place in flight
// comes two notice latencies after its first, at the close: nothing more is handed
// out). Worker 1 at 4x runs its first 0 -> 4 ms. With K = 3 its slices end at 4/3,
// 8/3 and 4 ms: it stops at 8/3 ms (on the ns grid), and its second, reached after
// the close is seen, is skipped. Its update waits for it: it ends then, and worker
// 0 at the sum's end.
TEST(RingTimelineByHand, AKernelGranularCancelStopsTheRunningMiniBatchAtTheNextSliceEnd) {
  for (int k : {1, 3}) {
    const TimelineStep o = first_step(0.5, {1, 4}, 0, k, 0.5);
    const TimelineWorkerStep &w0 = o.workers[0], &w1 = o.workers[1];
    const double cut = 2666666e-9;  // 8e6 ns / 3, rounded down on the grid
    EXPECT_EQ(w0.finished, 2) << k;
    EXPECT_EQ(w1.finished, 0) << k;
    EXPECT_EQ(fates(w0), (std::vector<Fate>{Fate::Counted, Fate::Counted})) << k;
    ASSERT_EQ(fates(w1), (std::vector<Fate>{Fate::Wasted, Fate::Skipped})) << k;
    EXPECT_NEAR(w1.running_end, k == 1 ? 4 * kMs : cut, 1e-12) << k;
    EXPECT_NEAR(w1.minibatches[0].end, k == 1 ? 4 * kMs : cut, 1e-12) << k;
    EXPECT_EQ(w1.minibatches[0].cut, k > 1) << k;
    EXPECT_FALSE(w0.minibatches[1].cut) << k;
    EXPECT_EQ(o.cut(), k > 1 ? 1 : 0) << k;
    EXPECT_NEAR(w0.end, 2.5 * kMs, 1e-12) << k;
    EXPECT_NEAR(w1.end, k == 1 ? 4 * kMs : cut, 1e-12) << k;
    for (const TimelineWorkerStep* r : {&w0, &w1}) {
      EXPECT_NEAR(r->close, 2 * kMs, 1e-12) << k;
      EXPECT_NEAR(r->exchange_end, 2.5 * kMs, 1e-12) << k;
    }
  }
}

// Seen in an injected delay, nothing is cut: worker 1 computes 0 -> 1 ms, then its
// 3 ms delay; the close (2 ms) is seen at 2.5 ms, in the delay, and it ends at 4 ms
// with any K.
TEST(RingTimelineByHand, AKernelGranularCancelNeverCutsAnInjectedDelay) {
  const std::string toml = "[device.1]\ndelay = { probability = 1, distribution = \"constant\", value_ms = 3 }\n";
  for (int k : {1, 3}) {
    const TimelineStep o = first_step(0.5, {1, 1}, 0, k, 0.5, toml);
    const TimelineWorkerStep& w1 = o.workers[1];
    ASSERT_FALSE(w1.minibatches.empty()) << k;
    EXPECT_EQ(fates(w1).front(), Fate::Wasted) << k;
    EXPECT_FALSE(w1.minibatches[0].cut) << k;
    EXPECT_NEAR(w1.running_end, 4 * kMs, 1e-12) << k;
    EXPECT_NEAR(w1.end, 4 * kMs, 1e-12) << k;
  }
}

}  // namespace
}  // namespace nbsgd::engine
