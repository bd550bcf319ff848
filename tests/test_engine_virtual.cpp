// The virtual clock's measured noise (issue 11): a mini-batch's jitter, the notice
// latency with which the real engine sees a window's close, and the issue latency
// from a hand-out to its stream. All default to 0, where every other exact test
// runs; these check what each one changes.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "runtime/train/duration_model.h"
#include "runtime/train/straggler/distribution.h"
#include "support/engine_runs.h"

namespace nbsgd::engine {
namespace {

using namespace test_runs;

// The duration model's jitter: J has mean 1 and the asked coefficient of variation,
// and 0 draws nothing (J = 1 exactly, the stream untouched).
TEST(DurationModel, JitterHasMeanOneAndTheAskedSpread) {
  for (double cv : {0.05, 0.2}) {
    DurationModel m;
    m.jitter_cv = cv;
    straggler::Rng rng = straggler::device_stream(11, 0, straggler::RngPurpose::Jitter);
    double s = 0, s2 = 0;
    const int n = 40000;
    for (int i = 0; i < n; ++i) {
      const double j = m.jitter(rng);
      ASSERT_GT(j, 0.0);
      s += j;
      s2 += j * j;
    }
    const double mean = s / n, sd = std::sqrt(s2 / n - mean * mean);
    EXPECT_NEAR(mean, 1.0, 0.005) << cv;
    EXPECT_NEAR(sd / mean, cv, 0.05 * cv) << cv;
  }
  DurationModel none;
  straggler::Rng a = straggler::device_stream(11, 0, straggler::RngPurpose::Jitter), b = a;
  EXPECT_EQ(none.jitter(a), 1.0);
  EXPECT_EQ(a.uniform(), b.uniform());
}

// Without jitter, equal workers tie exactly at every close and the tie counts;
// with it (--virtual-jitter), the first to finish closes the window and the
// other's running mini-batch is wasted, as on a real machine. The run is still a
// function of the profile's seed, bit for bit.
TEST(Engine, VirtualJitterBreaksExactTiesAndKeepsTheSeed) {
  TrainConfig c = small_config();
  c.host_workers = 2;
  c.window = "fastest";
  c.steps = 24;
  const RunOut exact = run(c);
  for (const auto& s : exact.steps) EXPECT_EQ(s.finished, (std::vector<int>{4, 4})) << s.step;
  EXPECT_EQ(exact.summary.wasted_minibatches, 0);
  c.model.jitter_cv = 0.1;
  const RunOut a = run(c), b = run(c);
  ASSERT_EQ(a.steps.size(), b.steps.size());
  int short_steps = 0;
  for (size_t i = 0; i < a.steps.size(); ++i) {
    EXPECT_EQ(a.steps[i].finished, b.steps[i].finished);
    EXPECT_EQ(a.steps[i].t, b.steps[i].t);
    EXPECT_EQ(a.steps[i].loss, b.steps[i].loss);
    short_steps += a.steps[i].finished[0] + a.steps[i].finished[1] < 8;
  }
  EXPECT_EQ(a.hashes, b.hashes);
  EXPECT_GE(short_steps, 20);  // almost every step: one worker's 4th is still running
  EXPECT_GE(a.summary.wasted_minibatches, 20);
  // The draws follow the profile's seed, as its delays do (not --seed).
  const TempProfile prof("seed = 8\n[device.default]\n");
  c.profile = prof.path;
  const RunOut other = run(c);
  EXPECT_NE(other.steps.back().t, a.steps.back().t);
}

// The notice latency (DurationModel::notice_latency_s): the real engine decides a
// completion on the host while the stream runs on, so the worker whose mini-batch
// closes a quorum window starts its queued next one before the close is seen. One
// worker, quorum:2 of its 4: its second mini-batch closes every window with the
// third queued (--inflight 2). At 0 that one is skipped; with a lag shorter than a
// mini-batch it runs, is wasted, and the update waits for it, every step alike.
TEST(Engine, NoticeLatencyRunsTheClosersQueuedMiniBatch) {
  TrainConfig c = small_config();
  c.host_workers = 1;
  c.window = "quorum:2";
  c.inflight = 2;
  c.steps = 12;
  const RunOut at0 = run(c);
  c.model.notice_latency_s = 20e-6;  // a LeNet mini-batch here: about 150 us
  const RunOut lag = run(c), again = run(c);
  ASSERT_EQ(at0.steps.size(), lag.steps.size());
  EXPECT_EQ(at0.summary.wasted_minibatches, 0);
  EXPECT_EQ(lag.summary.wasted_minibatches, c.steps);
  EXPECT_EQ(lag.summary.skipped_minibatches, at0.summary.skipped_minibatches - c.steps);
  const double dt0 = at0.steps[1].t - at0.steps[0].t, dt = lag.steps[1].t - lag.steps[0].t;
  EXPECT_GT(dt, dt0);
  for (size_t i = 0; i < lag.steps.size(); ++i) {
    EXPECT_EQ(at0.steps[i].finished, std::vector<int>{2}) << i;
    EXPECT_EQ(lag.steps[i].finished, std::vector<int>{2}) << i;
    EXPECT_EQ(lag.steps[i].t, again.steps[i].t) << i;
    EXPECT_EQ(lag.steps[i].loss, at0.steps[i].loss) << i;  // the same mini-batches count
    if (i > 0) {
      EXPECT_NEAR(at0.steps[i].t - at0.steps[i - 1].t, dt0, 1e-8) << i;
      EXPECT_NEAR(lag.steps[i].t - lag.steps[i - 1].t, dt, 1e-8) << i;
    }
  }
}
// One worker, fastest, 4 mini-batches a step, 6 steps, `depth` in flight, with the
// duration model's `term` at 0 and at `value`: the same mini-batches count (4 a
// step, the same losses), and step i's window is extra(i) longer.
void expect_longer_windows(int depth, double DurationModel::*term, double value, const std::function<double(size_t)>& extra) {
  TrainConfig c = small_config();
  c.host_workers = 1;
  c.window = "fastest";
  c.steps = 6;
  c.inflight = depth;
  c.model.*term = 0;
  const RunOut at0 = run(c);
  c.model.*term = value;
  const RunOut lag = run(c);
  ASSERT_EQ(at0.steps.size(), lag.steps.size());
  for (size_t i = 0; i < lag.steps.size(); ++i) {
    EXPECT_EQ(lag.steps[i].finished, std::vector<int>{4}) << depth << " " << i;
    EXPECT_EQ(lag.steps[i].loss, at0.steps[i].loss) << depth << " " << i;
    EXPECT_NEAR(lag.steps[i].window_s - at0.steps[i].window_s, extra(i), 1e-9) << depth << " " << i;
  }
}

// What a completion releases is handed out two wake-ups later (the watcher's, then
// the issuer's: 2 x notice_latency_s after its end). With one in flight its stream
// waits for each hand-out, so every window is 3 x 2 x 20 us longer than at 0; with
// two in flight the next one is already queued when its stream gets to it, and the
// windows are the same. (A LeNet mini-batch here: about 150 us.)
TEST(Engine, NoticeLatencyDelaysTheHandOutOnlyWhenTheDepthBinds) {
  expect_longer_windows(1, &DurationModel::notice_latency_s, 20e-6, [](size_t) { return 6 * 20e-6; });
  expect_longer_windows(2, &DurationModel::notice_latency_s, 20e-6, [](size_t) { return 0.0; });
}

// A handed-out mini-batch reaches its stream issue_latency_s after its hand-out at
// the earliest (the issuer's enqueue, the staging, the stream's wake-up). With one
// in flight the 2nd to 4th of a window each wait for it after the previous one's
// end: every window is 3 x 30 us longer than at 0. With two in flight the next one
// is queued while the previous runs, so only a window's first could wait, and only
// if the update before it were shorter than the latency: it is not, and the windows
// are the same. The first step's first mini-batch has no update before it: it
// waits, at both depths.
TEST(Engine, IssueLatencyDelaysTheBeginOnlyWhenTheDepthBinds) {
  expect_longer_windows(1, &DurationModel::issue_latency_s, 30e-6, [](size_t i) { return (i == 0 ? 4 : 3) * 30e-6; });
  expect_longer_windows(2, &DurationModel::issue_latency_s, 30e-6, [](size_t i) { return i == 0 ? 30e-6 : 0.0; });
}

}  // namespace
}  // namespace nbsgd::engine
