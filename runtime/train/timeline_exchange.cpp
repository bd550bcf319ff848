// Timeline: each worker's exchange and update of a step, scheduled once its inputs
// are known (the rules are in timeline.h), and what that releases.
#include <algorithm>

#include "runtime/train/timeline.h"

namespace nbsgd::engine {

// Schedules every exchange of `step` whose inputs are known.
void Timeline::try_exchange(int64_t step) {
  if (!live(step)) return;
  auto& v = steps_[step];
  if (v.empty()) v.resize(static_cast<size_t>(n_));
  const double u = cfg_.model.update_s(cfg_.params);
  auto ready = [&](int j) { return v[j].closed && v[j].running_known && end_of(step - 1, j) >= 0; };
  if (!cfg_.mixes_models) {
    // A sum over all workers, into the step's accumulator (one of two): it starts
    // when every window closed, the previous sum ended (the comm streams) and, for a
    // worker that counted nothing, its update two steps back (the last reader of
    // that accumulator). Then each worker's update, on its update stream, after the
    // sum, its running mini-batch and its previous update.
    double xs = -1;
    if (sum_end_.count(step)) {
      // Scheduled already (a worker whose running mini-batch was not known yet comes
      // later): the sum began at the begin every worker's record holds.
      xs = v[0].exchange_begin;
    } else {
      const double prev = step == 0 ? 0.0 : (sum_end_.count(step - 1) ? sum_end_[step - 1] : -1.0);
      if (prev < 0) return;
      double b = prev;
      for (int j = 0; j < n_; ++j) {
        if (!v[j].closed) return;
        b = std::max(b, v[j].close);
        if (v[j].finished == 0) {
          const double e2 = end_of(step - 2, j);
          if (e2 < 0) return;
          b = std::max(b, e2);
        }
      }
      for (int j = 0; j < n_; ++j) v[j].exchange_begin = b;
      xs = b;
      sum_end_[step] = add_ns(b, cfg_.exchange_s(step, 0));
    }
    for (int w = 0; w < n_; ++w) {
      TimelineWorkerStep& r = v[w];
      const double prev_update = end_of(step - 1, w);
      if (r.scheduled || !r.running_known || prev_update < 0) continue;
      r.exchange_begin = xs;
      r.exchange_end = add_ns(xs, cfg_.exchange_s(step, w));
      r.update_begin = std::max(r.exchange_end, prev_update);
      if (r.running) r.update_begin = std::max(r.update_begin, r.running_end);
      r.update_end = add_ns(r.update_begin, u);
      schedule_end(w, step, r.update_end);
    }
    try_exchange(step + 1);  // its sum may now be known
    return;
  }
  // Gossip: each worker's local step, after its running mini-batch and its previous
  // mix; then the mix waits for the local steps of the neighbours it reads.
  auto local_end = [&](int j) {
    const TimelineWorkerStep& r = v[j];
    double b = std::max(r.close, end_of(step - 1, j));
    if (r.running) b = std::max(b, r.running_end);
    return std::pair<double, double>{b, add_ns(b, u)};
  };
  for (int w = 0; w < n_; ++w) {
    TimelineWorkerStep& r = v[w];
    if (r.scheduled || !ready(w)) continue;
    bool all = true;
    for (int j : r.neighbours) all = all && ready(j);
    if (!all) continue;
    std::tie(r.update_begin, r.update_end) = local_end(w);
    double x = r.update_end;
    for (int j : r.neighbours) x = std::max(x, local_end(j).second);
    r.exchange_begin = x;
    r.exchange_end = add_ns(x, cfg_.exchange_s(step, w));
    schedule_end(w, step, r.exchange_end);
  }
}

// E(w,step) is known: what waited for it may go on.
void Timeline::schedule_end(int w, int64_t step, double t) {
  TimelineWorkerStep& r = rec(step, w);
  r.scheduled = true;
  r.end = t;
  ends_[static_cast<size_t>(w)][step] = t;
  push(t, kStepEnd, w, step);
  WorkerState& s = ws_[static_cast<size_t>(w)];
  if (s.busy && s.waiting_gate && s.current.step == step + 1) start_current(w);
  for (auto it = groups_.lower_bound({step + 1, -2}); it != groups_.end() && it->first.first == step + 1; ++it)
    start_clock(*it->second, now_sim_);
  try_exchange(step + 1);
  if (!cfg_.mixes_models) try_exchange(step + 2);  // a sum may wait for this update
}

}  // namespace nbsgd::engine
