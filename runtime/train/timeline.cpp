#include "runtime/train/timeline.h"

#include <algorithm>
#include <cmath>

#include "runtime/device/check.h"
#include "runtime/train/timeline_group.h"

namespace nbsgd::engine {

straggler::Rng step_stream(const straggler::ResolvedProfile& p, int device, int64_t step, straggler::RngPurpose purpose) {
  uint64_t s = p.seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(step + 1));
  return straggler::device_stream(straggler::splitmix64(s), device, purpose);
}

namespace {
using Fate = TimelineMiniBatch::Fate;
}  // namespace

double TimelineStep::end() const {
  double e = 0;
  for (const auto& w : workers) e = std::max(e, w.end);
  return e;
}

int64_t TimelineStep::total_samples() const {
  int64_t n = 0;
  for (const auto& w : workers) n += w.samples;
  return n;
}

int64_t TimelineStep::wasted() const {
  int64_t n = 0;
  for (const auto& w : workers)
    for (const auto& mb : w.minibatches) n += mb.fate == Fate::Wasted;
  return n;
}

int64_t TimelineStep::cut() const {
  int64_t n = 0;
  for (const auto& w : workers)
    for (const auto& mb : w.minibatches) n += mb.cut;
  return n;
}

int64_t TimelineStep::skipped() const {
  int64_t n = 0;
  for (const auto& w : workers)
    for (const auto& mb : w.minibatches) n += mb.fate == Fate::Skipped;
  return n;
}

Timeline::Timeline(const TimelineConfig& cfg, const straggler::ResolvedProfile& profile, TakeFn take,
                   GiveBackFn give_back)
    : cfg_(cfg),
      profile_(profile),
      take_(std::move(take)),
      give_back_(std::move(give_back)),
      n_(cfg.controller.workers),
      sync_(cfg.controller.window.kind == WindowKind::Sync),
      rates_(cfg.controller) {
  NBSGD_CHECK(static_cast<int>(profile.devices.size()) == n_, "profile resolved for another number of workers");
  NBSGD_CHECK(cfg_.inflight >= 1, "timeline: in-flight depth must be >= 1");
  NBSGD_CHECK(cfg_.exchange_s && cfg_.waits_for, "timeline: the exchange's duration and neighbours are required");
  ws_.resize(static_cast<size_t>(n_));
  ends_.resize(static_cast<size_t>(n_));
  if (own_key(0) < 0) {
    push(0.0, kOpen, -1, 0, -1);
  } else {
    for (int w = 0; w < n_; ++w) push(0.0, kOpen, w, 0, w);
  }
}

Timeline::~Timeline() = default;

void Timeline::push(double t, int type, int w, int64_t step, int aux) { q_.push({ns(t), type, w, seq_++, step, aux}); }

TimelineWorkerStep& Timeline::rec(int64_t step, int w) {
  NBSGD_CHECK(live(step), "timeline: a forgotten step was touched");
  auto& v = steps_[step];
  if (v.empty()) v.resize(static_cast<size_t>(n_));
  return v[static_cast<size_t>(w)];
}

double Timeline::end_of(int64_t step, int w) {
  if (step < 0) return 0.0;
  const auto& e = ends_[static_cast<size_t>(w)];
  auto it = e.find(step);
  return it == e.end() ? -1.0 : it->second;
}

// Sync windows of a gossip exchange are each worker's own (a blocking worker waits
// for its neighbours' models, never for their windows); the neighbourhood scope
// gives every worker its own window; otherwise one window per step.
int Timeline::own_key(int w) const {
  if ((sync_ && cfg_.mixes_models) || cfg_.neighbors_scope) return w;
  return -1;
}

Timeline::Group* Timeline::find_group(int64_t step, int key) {
  auto it = groups_.find({step, key});
  return it == groups_.end() ? nullptr : it->second.get();
}

Timeline::Group& Timeline::group(int64_t step, int key, double t0) {
  if (Group* g = find_group(step, key)) return *g;
  auto g = std::make_unique<Group>();
  g->step = step;
  ControllerConfig cc = cfg_.controller;
  if (key < 0) {
    for (int w = 0; w < n_; ++w) g->members.push_back(w);
    g->owners = g->members;
  } else {
    g->members.push_back(key);
    if (!sync_) {
      const auto& nb = cfg_.waits_for(step, key);
      g->members.insert(g->members.end(), nb.begin(), nb.end());
      std::sort(g->members.begin(), g->members.end());
    }
    g->owners = {key};
  }
  const int size = static_cast<int>(g->members.size());
  cc.workers = size;
  if (cc.window.kind == WindowKind::Quorum && size < n_)
    cc.window.quorum_k = std::max<int64_t>(1, (cc.window.quorum_k * size + n_ - 1) / n_);
  g->ctl = std::make_unique<StepController>(cc);
  std::vector<double> r;
  for (int m : g->members) r.push_back(rates_.rates()[static_cast<size_t>(m)]);
  g->ctl->set_rates(r);
  g->ctl->begin_step(t0);
  Group& ref = *g;
  groups_[{step, key}] = std::move(g);
  start_clock(ref, t0);
  if (auto it = early_.find({step, key}); it != early_.end()) {
    for (auto [w, t, s] : it->second) ref.ctl->on_complete(ref.local(w), t, s);
    early_.erase(it);
  }
  return ref;
}

// The window's clock starts when the first of its members' previous step has ended
// (the earliest moment one of its mini-batches can begin), once all are known.
void Timeline::start_clock(Group& g, double now) {
  if (g.start >= 0) return;
  double first = -1;
  for (int m : g.members) {
    const double e = end_of(g.step - 1, m);
    if (e < 0) return;
    first = first < 0 ? e : std::min(first, e);
  }
  g.start = std::max(first, g.ctl->step_start());
  g.ctl->restart_clock(g.start);
  if (auto d = g.ctl->deadline()) push(std::max(quantize(*d), now), kDeadline, g.owners.size() == 1 ? g.owners[0] : -1, g.step, group_key(g));
}

int Timeline::group_key(const Group& g) const {
  return g.owners.size() == 1 && own_key(g.owners[0]) >= 0 ? g.owners[0] : -1;
}

// --window sync: mini-batch k of every worker, worker 0 first, for k = 0..m-1 (the
// real driver's plan), made when the step first opens anywhere.
void Timeline::plan_sync(int64_t step) {
  if (plans_.count(step)) return;
  auto& plan = plans_[step];
  plan.resize(static_cast<size_t>(n_));
  const int b = cfg_.controller.mini_batch();
  for (int k = 0; k < cfg_.controller.split; ++k)
    for (int i = 0; i < n_; ++i) {
      int actual = 0;
      const int64_t h = take_(i, b, actual);
      if (actual > 0) {
        plan[static_cast<size_t>(i)].emplace_back(h, actual);
      } else {
        exhausted_ = true;  // nothing comes back under sync: the data has ended for good
      }
    }
}

void Timeline::open(int64_t step, int key, double t) {
  if (!live(step)) return;
  if (sync_) plan_sync(step);
  Group& g = group(step, key, t);
  for (int o : g.owners) open_worker(o, step, t, g);
  if (g.ctl->closed() && !g.handled) handle_close(g);
  if (sync_) {
    for (int o : g.owners) advance(o, t);
    if (!g.handled) maybe_idle_close(g, t);
    return;
  }
  // The issuers of every window opening at this instant hand out in turns, after
  // all of them opened (kRound).
  if (round_.empty()) push(t, kRound, -1, step);
  for (int o : g.owners) round_.push_back(o);
}

// Every worker's first, then every worker's second, ... (at equal speeds, the sync
// plan's order), for the windows that opened at this instant.
void Timeline::take_round(double t) {
  std::vector<int> ws;
  ws.swap(round_);
  std::sort(ws.begin(), ws.end());
  for (int k = 0; k < cfg_.inflight; ++k)
    for (int w : ws) take_one(w, t);
  for (int w : ws) {
    advance(w, t);
    const WorkerState& s = ws_[static_cast<size_t>(w)];
    if (Group* g = find_group(s.issue_step, own_key(w)); g && !g->handled) maybe_idle_close(*g, t);
  }
}

void Timeline::open_worker(int w, int64_t step, double t, Group& g) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  TimelineWorkerStep& r = rec(step, w);
  r.open = t;
  r.neighbours = cfg_.waits_for(step, w);
  s.issue_step = step;
  s.starved = false;
  s.delay_rng = step_stream(profile_, w, step, straggler::RngPurpose::Delay);
  s.jitter_rng = step_stream(profile_, w, step, straggler::RngPurpose::Jitter);
  straggler::Rng stall_rng = step_stream(profile_, w, step, straggler::RngPurpose::Stall);
  r.stall_s = quantize(profile_.devices[static_cast<size_t>(w)].draw_stall_s(stall_rng, step));
  if (r.stall_s > 0) s.fifo.push_back(Item{true, step, -1, -1});
  if (sync_) {
    for (auto [h, size] : plans_[step][static_cast<size_t>(w)]) {
      add_minibatch(w, step, h, size, t);
      g.ctl->on_start(g.local(w), size);
    }
    r.idle = true;
  }
}

void Timeline::add_minibatch(int w, int64_t step, int64_t handle, int size, double t) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  TimelineWorkerStep& r = rec(step, w);
  const auto& dev = profile_.devices[static_cast<size_t>(w)];
  TimelineMiniBatch mb;
  mb.size = size;
  mb.handle = handle;
  mb.take = t;
  // Compute (c, times the model's jitter J, plus the engine's host CPU for it), then
  // the throttle's (s-1)c and the random delay, each on the grid.
  const int64_t c = ns(cfg_.model.compute_s(cfg_.flops_per_sample, size) * cfg_.model.jitter(s.jitter_rng) +
                       cfg_.model.host_cpu_s);
  mb.compute_s = s_of(c);
  const int64_t throttle = ns((dev.slowdown(step) - 1.0) * s_of(c));
  mb.injected_s = s_of(throttle + ns(dev.draw_delay_s(s.delay_rng, step)));
  mb.slowed_s = s_of(c + throttle);
  r.minibatches.push_back(mb);
  ++r.pending;
  ++s.inflight;
  ++in_flight_;
  s.fifo.push_back(Item{false, step, static_cast<int>(r.minibatches.size()) - 1, handle,
                       add_ns(t, cfg_.model.issue_latency_s)});
}

// The issuer of worker w hands out one mini-batch if its open window and the
// in-flight depth allow; false (and idle, when the window gives nothing) otherwise.
bool Timeline::take_one(int w, double t) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  const int64_t step = s.issue_step;
  if (step < 0 || !live(step) || sync_ || s.inflight >= cfg_.inflight) return false;
  TimelineWorkerStep& r = rec(step, w);
  if (r.idle) return false;
  Group* g = find_group(step, own_key(w));
  NBSGD_CHECK(g != nullptr, "timeline: a worker's open window must exist");
  const int local = g->local(w);
  const int want = g->ctl->closed() ? 0 : g->ctl->next_size(local);
  int actual = 0;
  const int64_t handle = want > 0 ? take_(w, want, actual) : -1;
  if (actual <= 0) {
    // The queue is dry (the run's last epoch): while anything is in flight its
    // samples may come back, so the issuer waits for that; otherwise it is done.
    if (want > 0 && in_flight_ > 0) {
      s.starved = true;
    } else {
      r.idle = true;
      if (want > 0) exhausted_ = true;  // the data has ended for good
    }
    return false;
  }
  g->ctl->on_start(local, actual);
  add_minibatch(w, step, handle, actual, t);
  return true;
}

void Timeline::take(int w, double t) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  if (s.issue_step < 0 || !live(s.issue_step) || sync_) return;
  while (take_one(w, t)) {
  }
  advance(w, t);
  Group* g = find_group(s.issue_step, own_key(w));
  if (g && !g->handled) maybe_idle_close(*g, t);
}

// The stream of worker w moves on to its next item, if it is free.
void Timeline::advance(int w, double t) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  if (s.busy || s.check_queued || s.fifo.empty()) return;
  const Item& head = s.fifo.front();
  if (!head.stall) {  // it looks at the window first, after this instant's closes
    s.check_queued = true;  // (not before it has been issued: issue_latency_s)
    push(std::max(t, head.ready), kCheck, w, head.step);
    return;
  }
  // An injected stall holds the stream after the previous step's update.
  s.current = head;
  s.fifo.pop_front();
  s.busy = true;
  s.reached = t;
  start_current(w);
}

// The stream reaches a queued mini-batch: skipped if its window has closed, else it
// runs (and counts as running for its window's close from now on).
void Timeline::check(int w, double t) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  s.check_queued = false;
  NBSGD_CHECK(!s.fifo.empty() && !s.fifo.front().stall, "timeline: stream check without a mini-batch");
  const Item item = s.fifo.front();
  s.fifo.pop_front();
  bool closed = !live(item.step);
  if (!closed) {
    Group* g = find_group(item.step, own_key(w));
    closed = g == nullptr || g->ctl->closed();
  }
  if (live(item.step)) {
    TimelineWorkerStep& r = rec(item.step, w);
    if (closed && r.check_due) {
      // The close is not seen yet (notice_latency_s): the mini-batch runs, wasted,
      // and its worker's update waits for it (start_current fills in its end).
      r.check_due = false;
      Group* g = find_group(item.step, own_key(w));
      if (g && t < add_ns(g->ctl->close_time(), cfg_.model.notice_latency_s)) {
        closed = false;
        r.running = true;
      } else {
        r.running_known = true;
        try_exchange(item.step);
      }
    }
  }
  if (closed) {
    if (live(item.step)) rec(item.step, w).minibatches[static_cast<size_t>(item.index)].fate = Fate::Skipped;
    give_back_(item.handle);
    notice(w, item.step, t, true);
    advance(w, t);
    return;
  }
  s.current = item;
  s.busy = true;
  s.reached = t;
  start_current(w);
}

// The current item begins once worker w's previous step has ended (E(w,t-1)).
void Timeline::start_current(int w) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  const double gate = end_of(s.current.step - 1, w);
  s.waiting_gate = gate < 0;
  if (s.waiting_gate) return;  // schedule_end() resumes it
  const double begin = std::max(s.reached, gate);
  if (s.current.stall) {
    double stall = 0;
    if (live(s.current.step)) {
      TimelineWorkerStep& r = rec(s.current.step, w);
      r.stall_begin = begin;
      stall = r.stall_s;
    } else {
      stall = stall_of_.at({s.current.step, w});
    }
    push(add_ns(begin, stall), kComplete, w, s.current.step);
    return;
  }
  TimelineWorkerStep& r = rec(s.current.step, w);
  TimelineMiniBatch& mb = r.minibatches[static_cast<size_t>(s.current.index)];
  mb.begin = begin;
  mb.end = s_of(ns(begin) + ns(mb.compute_s) + ns(mb.injected_s));
  push(mb.end, kComplete, w, s.current.step, s.gen);
  if (r.closed && r.running && !r.running_known) {
    // It began after the close, before the close was seen (check()): with
    // --cancel-at kernel it stops at the first boundary after the close is seen.
    cut_running(w, mb, add_ns(r.close, cfg_.model.notice_latency_s));
    r.running_end = mb.end;
    r.running_known = true;
    try_exchange(s.current.step);
  }
}

// The real engine's --cancel-at kernel (HostStreamImpl::run_throttle): every task of
// a running mini-batch looks at the close before it runs, and the throttle ends
// with the slowed device's kernel. Here its slowed compute is K equal kernels
// (K = --virtual-cancel-kernels); the one running when the close is seen runs to
// its end, nothing after it, and its delay is dropped. Seen in the delay: no cut
// (an injected delay is never cut short).
void Timeline::cut_running(int w, TimelineMiniBatch& mb, double seen) {
  const int64_t K = cfg_.model.cancel_kernels;
  if (K <= 1 || mb.begin < 0 || sync_) return;
  const int64_t b = ns(mb.begin), S = ns(mb.slowed_s), at = ns(seen);
  if (S <= 0 || at >= b + S || at >= ns(mb.end)) return;
  const int64_t into = std::max<int64_t>(at - b, 0);
  int64_t i = (into * K + S - 1) / S;  // the first boundary b + S i / K at or after `seen`
  while (S * i / K < into) ++i;
  const int64_t end = b + std::min(S, S * i / K);
  if (end >= ns(mb.end)) return;
  mb.end = s_of(end);
  mb.cut = true;
  WorkerState& s = ws_[static_cast<size_t>(w)];
  push(mb.end, kComplete, w, s.current.step, ++s.gen);  // the first completion event is now stale
}

void Timeline::on_complete(int w, double t) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  s.busy = false;
  const Item item = s.current;
  if (item.stall) {
    stall_of_.erase({item.step, w});
    advance(w, t);
    return;
  }
  bool counted = false;
  Group* g = nullptr;
  if (live(item.step)) {
    TimelineWorkerStep& r = rec(item.step, w);
    TimelineMiniBatch& mb = r.minibatches[static_cast<size_t>(item.index)];
    if (!mb.cut) rates_.observe(w, mb.begin, t, mb.size);  // a cut one's time is no service time
    g = find_group(item.step, own_key(w));
    counted = g != nullptr && g->ctl->on_complete(g->local(w), t, mb.size);
    mb.fate = counted ? Fate::Counted : Fate::Wasted;
    if (counted) {
      ++r.finished;
      r.samples += mb.size;
      if (own_key(w) >= 0 && !sync_) {
        // The neighbourhood windows w belongs to count its finished work too.
        for (int i : cfg_.waits_for(item.step, w)) {
          if (Group* gi = find_group(item.step, i)) {
            feed(*gi, w, t, mb.size);
          } else {
            early_[{item.step, i}].emplace_back(w, t, mb.size);
          }
        }
      }
    }
  }
  if (!counted) give_back_(item.handle);
  if (g && g->ctl->closed() && !g->handled) handle_close(*g);
  notice(w, item.step, t, !counted);
  advance(w, t);
}

// A mini-batch of worker w's was decided (counted, wasted or skipped): one fewer in
// flight, so its issuer may hand out another.
void Timeline::notice(int w, int64_t step, double t, bool returned) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  --s.inflight;
  --in_flight_;
  // The decision takes the completion's own time; what it releases is acted on two
  // host wake-ups later (notice_latency_s each): the watcher's on the mini-batch's
  // event, then the issuer's on the driver's condition variable. Sync decides nothing.
  const double seen = sync_ ? t : add_ns(t, 2 * cfg_.model.notice_latency_s);
  push(seen, kTake, w, s.issue_step);
  // Issuers waiting on a dry queue look again: samples came back, or nothing more
  // can come back.
  if (returned || in_flight_ == 0)
    for (int j = 0; j < n_; ++j)
      if (ws_[static_cast<size_t>(j)].starved) {
        ws_[static_cast<size_t>(j)].starved = false;
        push(seen, kTake, j, ws_[static_cast<size_t>(j)].issue_step);
      }
  if (!live(step)) return;
  --rec(step, w).pending;
  if (Group* g = find_group(step, own_key(w)); g && !g->handled) maybe_idle_close(*g, t);
}

void Timeline::feed(Group& g, int w, double t, int size) {
  g.ctl->on_complete(g.local(w), t, size);
  if (g.ctl->closed() && !g.handled) handle_close(g);
}

// A window that nothing can change any more closes now: every owner's issuer is
// idle and nothing it handed out is still undecided.
void Timeline::maybe_idle_close(Group& g, double t) {
  if (g.handled) return;
  for (int o : g.owners) {
    const TimelineWorkerStep& r = rec(g.step, o);
    if (r.open < 0 || !r.idle || r.pending > 0) return;
  }
  g.ctl->close_at(t);
  handle_close(g);
}

void Timeline::handle_close(Group& g) {
  g.handled = true;
  const double c = g.ctl->close_time();
  for (int o : g.owners) {
    TimelineWorkerStep& r = rec(g.step, o);
    r.closed = true;
    r.idle = true;
    r.close = std::max(c, r.open);
    const WorkerState& s = ws_[static_cast<size_t>(o)];
    if (s.busy && !s.current.stall && s.current.step == g.step) {
      TimelineMiniBatch& mb = r.minibatches[static_cast<size_t>(s.current.index)];
      cut_running(o, mb, add_ns(c, cfg_.model.notice_latency_s));
      r.running = true;
      r.running_known = mb.begin >= 0;
      r.running_end = mb.begin >= 0 ? mb.end : -1;
    }
    // The close is seen notice_latency_s late: a stream that reaches a queued
    // mini-batch of this step before then runs it (check()). Its first look after
    // the close is at once when it is free, else when its running one ends.
    const double seen = add_ns(c, cfg_.model.notice_latency_s);
    const bool next_here = !s.fifo.empty() && !s.fifo.front().stall && s.fifo.front().step == g.step;
    double reach = !s.busy ? c : (r.running && r.running_known) ? r.running_end : -1.0;
    if (next_here && reach >= 0) reach = std::max(reach, s.fifo.front().ready);  // not before it is issued
    if (!sync_ && cfg_.model.notice_latency_s > 0 && next_here && reach >= 0 && reach < seen) {
      r.check_due = true;
      r.running_known = false;
    }
  }
  // The next window opens now (the real engine's trainer opens it once this one's
  // exchange is enqueued).
  const int key = group_key(g);
  for (int o : g.owners) rec(g.step, o).start = g.start;
  if (!exhausted_) push(std::max(c, rec(g.step, g.owners[0]).open), kOpen, key, g.step + 1, key);
  try_exchange(g.step);
}

}  // namespace nbsgd::engine
