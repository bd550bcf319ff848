#include "runtime/train/timeline.h"

#include <algorithm>
#include <cmath>
#include <queue>

#include "runtime/device/check.h"
#include "runtime/train/sim_event.h"

namespace nbsgd::engine {

straggler::Rng step_stream(const straggler::ResolvedProfile& p, int device, int64_t step, straggler::RngPurpose purpose) {
  uint64_t s = p.seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(step + 1));
  return straggler::device_stream(straggler::splitmix64(s), device, purpose);
}

VirtualTimeline::VirtualTimeline(const TimelineConfig& cfg, const straggler::ResolvedProfile& profile)
    : cfg_(cfg), profile_(profile), ctl_(cfg.controller) {
  NBSGD_CHECK(static_cast<int>(profile.devices.size()) == cfg.controller.workers,
              "profile resolved for another number of workers");
  free_at_.assign(cfg.controller.workers, 0.0);
}

void VirtualTimeline::restore(double now, const std::vector<double>& free_at, const std::vector<double>& rates) {
  NBSGD_CHECK(free_at.size() == free_at_.size() && rates.size() == free_at_.size(), "timeline state size");
  now_ = now;
  free_at_ = free_at;
  ctl_.set_rates(rates);
}

namespace {
enum EventType { kComplete = 0, kDeadline = 1, kFree = 2 };
}  // namespace

StepOutcome VirtualTimeline::step(int64_t step_index, const TakeFn& take) {
  const int n = cfg_.controller.workers;
  StepOutcome out;
  out.step = step_index;
  out.t0 = now_;
  out.delay_s.assign(n, 0.0);
  ctl_.begin_step(now_);

  std::vector<straggler::Rng> delay_rng, stall_rng;
  for (int w = 0; w < n; ++w) {
    delay_rng.push_back(step_stream(profile_, w, step_index, straggler::RngPurpose::Delay));
    stall_rng.push_back(step_stream(profile_, w, step_index, straggler::RngPurpose::Stall));
  }

  SimQueue q;
  now_ = quantize(now_);
  int64_t seq = 0;
  for (int w = 0; w < n; ++w) {
    const double stall = profile_.devices[w].draw_stall_s(stall_rng[w], step_index);
    out.delay_s[w] += quantize(stall);
    q.push({ns(std::max(now_, free_at_[w])) + ns(stall), kFree, w, seq++});
  }
  if (auto d = ctl_.deadline()) q.push({ns(*d), kDeadline, -1, seq++});

  std::vector<int> current(n, -1);  // index into out.minibatches of the worker's running one
  while (!q.empty()) {
    const SimEvent e = q.top();
    q.pop();
    if (e.type == kDeadline) {
      ctl_.close_at(s_of(e.t));
      continue;
    }
    if (e.type == kComplete) {
      SimMiniBatch& mb = out.minibatches[current[e.worker]];
      mb.counted = ctl_.on_complete(e.worker, s_of(e.t), mb.size);
      continue;
    }
    // kFree: the worker can start its next mini-batch, if the window allows.
    const int w = e.worker;
    if (current[w] >= 0) {
      const SimMiniBatch& prev = out.minibatches[current[w]];
      ctl_.observe(w, prev.start, prev.free, prev.size);
    }
    free_at_[w] = s_of(e.t);
    const int want = ctl_.next_size(w);
    if (want <= 0) continue;
    int actual = 0;
    const int64_t handle = take(w, want, actual);
    if (actual <= 0) continue;
    ctl_.on_start(w, actual);
    const int64_t c = ns(cfg_.model.compute_s(cfg_.flops_per_sample, actual));
    const int64_t injected = ns((profile_.devices[w].slowdown(step_index) - 1.0) * s_of(c)) +
                             ns(profile_.devices[w].draw_delay_s(delay_rng[w], step_index));
    out.delay_s[w] += s_of(injected);
    SimMiniBatch mb;
    mb.worker = w;
    mb.size = actual;
    mb.handle = handle;
    // The injected delay sits inside the mini-batch, before its commit (as METHOD.md's
    // run-time model counts it: a mini-batch is done after c_i + D).
    const int64_t done = e.t + c + injected;
    mb.start = s_of(e.t);
    mb.commit = mb.free = s_of(done);
    current[w] = static_cast<int>(out.minibatches.size());
    out.minibatches.push_back(mb);
    q.push({done, kComplete, w, seq++});
    q.push({done, kFree, w, seq++});
  }
  // Every worker ran out of work without the policy closing (e.g. the data ended).
  if (!ctl_.closed()) {
    double last = now_;
    for (const auto& mb : out.minibatches)
      if (mb.counted) last = std::max(last, mb.commit);
    ctl_.close_at(last);
  }

  out.close = ctl_.close_time();
  out.finished = ctl_.finished();
  out.samples = ctl_.finished_samples();
  for (int s : out.samples) out.total_samples += s;
  const double exchange = cfg_.exchange_s >= 0 ? cfg_.exchange_s : cfg_.model.allreduce_s(cfg_.exchange_bytes, n);
  out.end = s_of(ns(out.close) + ns(exchange) + ns(cfg_.model.update_s(cfg_.params)));
  now_ = out.end;
  return out;
}

}  // namespace nbsgd::engine
