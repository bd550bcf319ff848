#include "runtime/train/gossip_timeline.h"

#include <algorithm>
#include <cmath>

#include "runtime/device/check.h"
#include "runtime/train/sim_event.h"
#include "runtime/train/timeline.h"

namespace nbsgd::engine {

namespace {
// Tie order at equal times (see the header).
enum EventType { kComplete = 0, kDeadline = 1, kExchangeDone = 2, kFree = 3 };
}  // namespace

struct GossipTimeline::Group {
  std::unique_ptr<StepController> ctl;
  std::vector<int> members;  // ascending
  std::vector<int> owners;   // the workers whose own window this is
  int64_t step = 0;
  bool handled = false;
  int local(int w) const {
    auto it = std::lower_bound(members.begin(), members.end(), w);
    NBSGD_CHECK(it != members.end() && *it == w, "worker is not a member of this window");
    return static_cast<int>(it - members.begin());
  }
};

double GossipStepOutcome::end() const {
  double e = 0;
  for (const auto& w : workers) e = std::max(e, w.end);
  return e;
}

GossipTimeline::GossipTimeline(const GossipTimelineConfig& cfg, const straggler::ResolvedProfile& profile,
                               NeighboursFn neighbours, TakeFn take, GiveBackFn give_back)
    : cfg_(cfg),
      profile_(profile),
      neighbours_(std::move(neighbours)),
      take_(std::move(take)),
      give_back_(std::move(give_back)),
      n_(cfg.controller.workers),
      rates_(cfg.controller) {
  NBSGD_CHECK(static_cast<int>(profile.devices.size()) == n_, "profile resolved for another number of workers");
  ws_.resize(n_);
  for (int w = 0; w < n_; ++w) begin_step(w, 0, 0.0);
}

GossipTimeline::~GossipTimeline() = default;

void GossipTimeline::push(double t, int type, int w, int64_t step, int group, int64_t* token) {
  const int64_t s = seq_++;
  if (token) *token = s;
  q_.push({ns(t), type, w, s, step, group});
}

GossipWorkerStep& GossipTimeline::rec(int64_t step, int w) {
  NBSGD_CHECK(step >= first_live_, "gossip timeline: a forgotten step was touched");
  auto& v = steps_[step];
  if (v.empty()) v.resize(n_);
  return v[static_cast<size_t>(w)];
}

int GossipTimeline::own_key(int w) const {
  if (cfg_.controller.window.kind == WindowKind::Sync || cfg_.neighbors_scope) return w;
  return -1;
}

GossipTimeline::Group* GossipTimeline::find_group(int64_t step, int key) {
  auto it = groups_.find({step, key});
  return it == groups_.end() ? nullptr : it->second.get();
}

GossipTimeline::Group& GossipTimeline::group(int64_t step, int key, double t0) {
  if (Group* g = find_group(step, key)) return *g;
  auto g = std::make_unique<Group>();
  g->step = step;
  ControllerConfig cc = cfg_.controller;
  if (key < 0) {
    for (int w = 0; w < n_; ++w) g->members.push_back(w);
    g->owners = g->members;
  } else {
    g->members.push_back(key);
    if (cc.window.kind != WindowKind::Sync) {
      const auto& nb = neighbours_(step)[static_cast<size_t>(key)];
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
  if (auto d = g->ctl->deadline()) push(quantize(*d), kDeadline, key, step, key);
  Group& ref = *g;
  groups_[{step, key}] = std::move(g);
  if (auto it = early_.find({step, key}); it != early_.end()) {
    for (auto [w, t, s] : it->second) ref.ctl->on_complete(ref.local(w), t, s);
    early_.erase(it);
  }
  return ref;
}

void GossipTimeline::begin_step(int w, int64_t step, double t) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  s.step = step;
  GossipWorkerStep& r = rec(step, w);
  r.start = t;
  r.neighbours = neighbours_(step)[static_cast<size_t>(w)];
  straggler::Rng stall_rng = step_stream(profile_, w, step, straggler::RngPurpose::Stall);
  const double stall = quantize(profile_.devices[static_cast<size_t>(w)].draw_stall_s(stall_rng, step));
  r.delay_s += stall;
  s.delay_rng = step_stream(profile_, w, step, straggler::RngPurpose::Delay);
  Group& g = group(step, own_key(w), t);
  if (g.ctl->closed()) {
    // The window closed before this worker began (a neighbour ran ahead, or its
    // deadline passed): it contributes nothing to this step.
    if (!g.handled) {
      handle_close(g);
    } else {
      r.closed = true;
      r.close = std::max(g.ctl->close_time(), r.start);
      try_exchange(w, step);
      for (int j : neighbours_(step)[static_cast<size_t>(w)]) try_exchange(j, step);
    }
    return;
  }
  const double free = s.busy ? std::max(t, s.running.commit) : t;
  push(add_ns(free, stall), kFree, w, step, -1, &s.free_token);
}

void GossipTimeline::try_start(int w, double t) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  GossipWorkerStep& r = rec(s.step, w);
  if (r.closed) return;
  Group* g = find_group(s.step, own_key(w));
  NBSGD_CHECK(g != nullptr, "a worker's own window must exist once it began the step");
  const int local = g->local(w);
  const int want = g->ctl->next_size(local);
  if (want <= 0) return;
  int actual = 0;
  const int64_t handle = take_(w, want, actual);
  if (actual <= 0) return;
  g->ctl->on_start(local, actual);
  const auto& dev = profile_.devices[static_cast<size_t>(w)];
  // As VirtualTimeline: compute, throttle and random delay, each on the grid.
  const int64_t c = ns(cfg_.model.compute_s(cfg_.flops_per_sample, actual));
  const double injected =
      s_of(ns((dev.slowdown(s.step) - 1.0) * s_of(c)) + ns(dev.draw_delay_s(s.delay_rng, s.step)));
  r.delay_s += injected;
  GossipMiniBatch mb;
  mb.size = actual;
  mb.handle = handle;
  mb.start = t;
  mb.commit = s_of(ns(t) + c + ns(injected));  // the injected delay sits before the commit, as in VirtualTimeline
  r.minibatches.push_back(mb);
  s.running = mb;
  s.running_step = s.step;
  s.running_index = static_cast<int>(r.minibatches.size()) - 1;
  s.busy = true;
  push(mb.commit, kComplete, w, s.step);
  push(mb.commit, kFree, w, s.step, -1, &s.free_token);
}

void GossipTimeline::feed(Group& g, int w, double t, int size) {
  g.ctl->on_complete(g.local(w), t, size);
  if (g.ctl->closed() && !g.handled) handle_close(g);
}

void GossipTimeline::on_complete(int w, double t) {
  WorkerState& s = ws_[static_cast<size_t>(w)];
  const GossipMiniBatch mb = s.running;
  const int64_t step = s.running_step;
  rates_.observe(w, mb.start, mb.commit, mb.size);
  if (step < first_live_) {  // its step ended long ago: wasted
    give_back_(mb.handle);
    return;
  }
  Group* g = find_group(step, own_key(w));
  NBSGD_CHECK(g != nullptr, "completion for a window that does not exist");
  const bool counted = g->ctl->on_complete(g->local(w), t, mb.size);
  GossipWorkerStep& r = rec(step, w);
  r.minibatches[static_cast<size_t>(s.running_index)].counted = counted;
  if (!counted) {
    give_back_(mb.handle);
    return;
  }
  ++r.finished;
  r.samples += mb.size;
  if (g->ctl->closed() && !g->handled) handle_close(*g);
  if (own_key(w) >= 0 && cfg_.controller.window.kind != WindowKind::Sync) {
    // The neighbourhood windows w belongs to count its finished work too.
    for (int i : neighbours_(step)[static_cast<size_t>(w)]) {
      if (Group* gi = find_group(step, i)) {
        feed(*gi, w, t, mb.size);
      } else {
        early_[{step, i}].emplace_back(w, t, mb.size);
      }
    }
  }
}

void GossipTimeline::handle_close(Group& g) {
  g.handled = true;
  for (int o : g.owners) {
    GossipWorkerStep& r = rec(g.step, o);
    if (r.start < 0) continue;  // not begun: closes when it begins
    r.closed = true;
    r.close = std::max(g.ctl->close_time(), r.start);
  }
  for (int o : g.owners) {
    if (!rec(g.step, o).closed) continue;
    try_exchange(o, g.step);
    for (int j : neighbours_(g.step)[static_cast<size_t>(o)]) try_exchange(j, g.step);
  }
}

void GossipTimeline::try_exchange(int w, int64_t step) {
  GossipWorkerStep& r = rec(step, w);
  if (!r.closed || r.exchange_scheduled) return;
  const auto& nb = neighbours_(step)[static_cast<size_t>(w)];
  double x = r.close;
  for (int j : nb) {
    const GossipWorkerStep& rj = rec(step, j);
    if (!rj.closed) return;
    x = std::max(x, rj.close);
  }
  r.exchange_scheduled = true;
  r.end = add_ns(add_ns(x, cfg_.exchange_s(step, w)), cfg_.model.update_s(cfg_.params));
  push(r.end, kExchangeDone, w, step);
}

GossipStepOutcome GossipTimeline::finish_step(int64_t step) {
  NBSGD_CHECK(step == first_live_, "gossip timeline: steps must be finished in order");
  auto all_ended = [&] {
    auto& v = steps_[step];
    if (v.empty()) v.resize(n_);
    return std::all_of(v.begin(), v.end(), [](const GossipWorkerStep& r) { return r.ended; });
  };
  while (!all_ended()) {
    NBSGD_CHECK(!q_.empty(), "gossip timeline stalled: no event left before every worker ended the step");
    const SimEvent e = q_.top();
    q_.pop();
    switch (e.type) {
      case kComplete:
        on_complete(e.worker, s_of(e.t));
        break;
      case kDeadline:
        if (e.step >= first_live_) {
          Group* g = find_group(e.step, e.aux);
          if (g && !g->ctl->closed()) {
            g->ctl->close_at(s_of(e.t));
            handle_close(*g);
          }
        }
        break;
      case kExchangeDone:
        rec(e.step, e.worker).ended = true;
        begin_step(e.worker, e.step + 1, s_of(e.t));
        break;
      case kFree: {
        WorkerState& s = ws_[static_cast<size_t>(e.worker)];
        if (e.seq != s.free_token) break;  // superseded by a later step's start
        s.busy = false;
        s.free_at = s_of(e.t);
        try_start(e.worker, s_of(e.t));
        break;
      }
      default:
        NBSGD_FAIL("unknown gossip timeline event");
    }
  }
  GossipStepOutcome out;
  out.step = step;
  out.workers = std::move(steps_[step]);
  steps_.erase(step);
  groups_.erase(groups_.begin(), groups_.lower_bound({step + 1, -2}));
  early_.erase(early_.begin(), early_.lower_bound({step + 1, -2}));
  first_live_ = step + 1;
  return out;
}

}  // namespace nbsgd::engine
