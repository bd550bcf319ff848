// Timeline: the event loop that runs the simulation until a step has ended, and
// the step's record handed back (the events' rules are in timeline.h; what each
// event does is in timeline.cpp, the exchanges in timeline_exchange.cpp).
#include <algorithm>

#include "runtime/device/check.h"
#include "runtime/train/timeline.h"
#include "runtime/train/timeline_group.h"

namespace nbsgd::engine {

namespace {
using Fate = TimelineMiniBatch::Fate;
}  // namespace

TimelineStep Timeline::finish_step(int64_t step) {
  NBSGD_CHECK(step == first_live_, "timeline: steps must be finished in order");
  auto all_ended = [&] {
    auto& v = steps_[step];
    if (v.empty()) v.resize(static_cast<size_t>(n_));
    return std::all_of(v.begin(), v.end(), [](const TimelineWorkerStep& r) { return r.ended; });
  };
  while (!all_ended()) {
    if (q_.empty() && exhausted_) {
      // The data ended: this step has nothing to do and ends where the run is.
      auto& v = steps_[step];
      for (TimelineWorkerStep& r : v) {
        if (r.open < 0) r.open = r.close = r.end = r.exchange_begin = r.exchange_end = r.update_begin =
            r.update_end = now_;
        r.ended = true;
      }
      break;
    }
    NBSGD_CHECK(!q_.empty(), "timeline stalled: no event left before every worker ended the step");
    const SimEvent e = q_.top();
    q_.pop();
    const double t = s_of(e.t);
    now_sim_ = t;
    switch (e.type) {
      case kComplete:
        if (e.aux >= 0 && e.aux != ws_[static_cast<size_t>(e.worker)].gen) break;  // a cut one's first end
        on_complete(e.worker, t);
        break;
      case kDeadline:
        if (live(e.step)) {
          Group* g = find_group(e.step, e.aux);
          if (g && !g->ctl->closed()) {
            g->ctl->close_at(t);
            handle_close(*g);
          }
        }
        break;
      case kStepEnd:
        if (live(e.step)) rec(e.step, e.worker).ended = true;
        break;
      case kCheck:
        check(e.worker, t);
        break;
      case kTake:
        take(e.worker, t);
        break;
      case kOpen:
        open(e.step, e.aux, t);
        break;
      case kRound:
        take_round(t);
        break;
      default:
        NBSGD_FAIL("unknown timeline event");
    }
  }
  TimelineStep out;
  out.step = step;
  out.workers = std::move(steps_[step]);
  for (int w = 0; w < n_; ++w) {
    TimelineWorkerStep& r = out.workers[static_cast<size_t>(w)];
    if (r.start < 0) {  // it closed before its clock was known: S from the members' ends
      std::vector<int> members{w};
      if (own_key(w) < 0) {
        members.clear();
        for (int j = 0; j < n_; ++j) members.push_back(j);
      } else if (!sync_) {
        members.insert(members.end(), r.neighbours.begin(), r.neighbours.end());
      }
      double first = -1;
      for (int j : members) {
        const double e = end_of(step - 1, j);
        if (e >= 0) first = first < 0 ? e : std::min(first, e);
      }
      r.start = std::max(first, r.open);
    }
    r.delay_s = r.stall_s;
    for (TimelineMiniBatch& mb : r.minibatches) {
      // Still queued behind a long stall: its window has closed, so it will be skipped.
      if (mb.fate == Fate::Pending) mb.fate = Fate::Skipped;
      if (mb.begin >= 0) r.delay_s += mb.cut ? std::max(0.0, mb.end - mb.begin - mb.compute_s) : mb.injected_s;
    }
    // A stall that has not ended yet is still needed by the stream.
    const WorkerState& s = ws_[static_cast<size_t>(w)];
    bool stall_pending = s.busy && s.current.stall && s.current.step == step;
    for (const Item& it : s.fifo) stall_pending = stall_pending || (it.stall && it.step == step);
    if (stall_pending) stall_of_[{step, w}] = r.stall_s;
  }
  steps_.erase(step);
  groups_.erase(groups_.begin(), groups_.lower_bound({step + 1, -2}));
  early_.erase(early_.begin(), early_.lower_bound({step + 1, -2}));
  plans_.erase(plans_.begin(), plans_.lower_bound(step + 1));
  first_live_ = step + 1;
  // E(w,t) is needed only by the items still on worker w's stream.
  for (int w = 0; w < n_; ++w) {
    const WorkerState& s = ws_[static_cast<size_t>(w)];
    int64_t oldest = first_live_;
    if (s.busy) oldest = std::min(oldest, s.current.step);
    for (const Item& it : s.fifo) oldest = std::min(oldest, it.step);
    auto& e = ends_[static_cast<size_t>(w)];
    e.erase(e.begin(), e.lower_bound(oldest - 2));  // the ring's sum reads E(j,t-2)
  }
  sum_end_.erase(sum_end_.begin(), sum_end_.lower_bound(first_live_ - 1));
  now_ = std::max(now_, out.end());
  return out;
}

}  // namespace nbsgd::engine
