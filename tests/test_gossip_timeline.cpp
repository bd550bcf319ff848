// The Timeline with a gossip exchange against schedules computed by hand:
// stragglers on a 4-ring, the global and the neighbourhood scope, and a quorum
// window. Each case checks every worker's counted mini-batches, its window's close
// C(w,0) and its exchange's end E(w,0) = max(L(w,0), L(j,0) over its neighbours) +
// exchange, where the local step L = max(C, R) + update waits for a mini-batch still
// running at the close (R): the waiting on neighbours.
#include <gtest/gtest.h>

#include "runtime/train/gossip/topology.h"
#include "runtime/train/timeline.h"
#include "runtime/train/straggler/profile.h"
#include "runtime/train/window.h"
#include "support/timeline_runs.h"

namespace nbsgd::engine {
namespace {

constexpr double kMs = 1e-3;

struct Expect {
  std::vector<int> finished;
  std::vector<double> close_ms, end_ms;
};

// 4 workers on the ring 0-1-2-3-0; a mini-batch of one sample costs 1 ms times the
// worker's slowdown; every exchange takes 0.5 ms and the update nothing.
TimelineStep first_step(const std::string& window, bool neighbors, const std::vector<double>& slowdowns) {
  const int N = 4;
  TimelineConfig tc;
  tc.mixes_models = true;
  tc.controller.window = parse_window(window);
  tc.controller.workers = N;
  tc.controller.batch = 2;
  tc.controller.split = 2;
  tc.controller.cap = parse_cap("", tc.controller.window, 2);
  tc.neighbors_scope = neighbors;
  tc.model.launch_overhead_s = 0;
  tc.model.gflops = 1.0;
  tc.flops_per_sample = 1e6;  // 1 ms at 1 GFLOP/s
  tc.params = 0;
  tc.exchange_s = [](int64_t, int) { return 0.5 * kMs; };
  const auto prof = straggler::resolve(straggler::profile_from_slowdowns(slowdowns), N, {});
  static const auto nb = gossip::ring(N).neighbours();
  tc.waits_for = [](int64_t, int w) -> const std::vector<int>& { return nb[w]; };
  Timeline tl(tc, prof, test_runs::endless_take(), test_runs::ignore_give_back());
  return tl.finish_step(0);
}

void check(const TimelineStep& o, const Expect& e) {
  for (int w = 0; w < 4; ++w) {
    const TimelineWorkerStep& r = o.workers[static_cast<size_t>(w)];
    EXPECT_EQ(r.finished, e.finished[w]) << "worker " << w;
    EXPECT_EQ(r.samples, e.finished[w]) << "worker " << w;
    EXPECT_NEAR(r.close, e.close_ms[w] * kMs, 1e-12) << "worker " << w;
    EXPECT_NEAR(r.end, e.end_ms[w] * kMs, 1e-12) << "worker " << w;
  }
}

// Global scope, fastest, worker 2 at 1.5x: worker 0 finishes its 2 at 2 ms and
// closes the one window; workers 1 and 3 finish at the same instant (a tie counts);
// worker 2's second mini-batch (1.5 -> 3 ms) is still running at the close: wasted,
// and worker 2's local step waits for it (L = 3). Worker 0 mixes with 1 and 3
// (L = 2): it ends at 2.5 ms; the others mix with worker 2: 3.5 ms.
TEST(GossipTimelineByHand, GlobalFastestWithAStraggler) {
  check(first_step("fastest", false, {1, 1, 1.5, 1}), {{2, 2, 1, 2}, {2, 2, 2, 2}, {2.5, 3.5, 3.5, 3.5}});
}

// Neighbourhood scope, fastest, workers 1-3 at 2x: worker 0's completion at 2 ms
// closes the windows of 0, 1 and 3 (their neighbourhoods hold worker 0); worker 2's
// neighbourhood {1, 2, 3} is all slow and closes when worker 2 finishes its second
// at 4 ms. Workers 1 and 3 wait for neighbour 2: they end at 4.5 ms, worker 0 at 2.5.
TEST(GossipTimelineByHand, NeighbourhoodFastestWaitsOnlyForNeighbours) {
  check(first_step("fastest", true, {1, 2, 2, 2}), {{2, 1, 2, 1}, {2, 2, 4, 2}, {2.5, 4.5, 4.5, 4.5}});
}

// quorum:6 with no cap, workers 1-3 at 2x. Global: 1 completion by 1 ms, 5 by 2 ms,
// the 6th (worker 0's third) at 3 ms closes; the slow ones' second mini-batches
// (2 -> 4 ms) are still running: wasted, their local steps wait until 4 ms; worker
// 0's fourth, queued behind its third, is skipped at the close. Every worker has a
// slow neighbour: all end at 4 + 0.5 ms.
TEST(GossipTimelineByHand, GlobalQuorum) {
  check(first_step("quorum:6", false, {1, 2, 2, 2}), {{3, 1, 1, 1}, {3, 3, 3, 3}, {4.5, 4.5, 4.5, 4.5}});
}

// The same in neighbourhoods of 3: the quorum becomes ceil(6 * 3 / 4) = 5. Windows
// 0, 1 and 3 hold worker 0 and reach 5 at 3 ms. Window 2 ({1, 2, 3}) has 3 by 2 ms;
// workers 1 and 3 count no more (their own windows closed at 3 ms, while their
// second mini-batches run until 4 ms: wasted, and their local steps wait for them),
// so it needs worker 2's completions at 4 and 6 ms. Worker 0 mixes with 1 and 3
// (L = 4): 4.5 ms; the others mix with worker 2 (L = 6): 6.5 ms.
TEST(GossipTimelineByHand, NeighbourhoodQuorumIsScaledToTheNeighbourhood) {
  check(first_step("quorum:6", true, {1, 2, 2, 2}), {{3, 1, 3, 1}, {3, 3, 6, 3}, {4.5, 6.5, 6.5, 6.5}});
}

}  // namespace
}  // namespace nbsgd::engine
