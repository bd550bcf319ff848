// The run-time model: Monte Carlo for every policy, the exact deterministic case
// (one noiseless trial of the same simulation), and dispatch to the Erlang closed
// forms in erlang_closed_form.cpp.
#include "runtime/apps/predict/runtime_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <queue>
#include <utility>

#include "runtime/device/check.h"
#include "runtime/apps/predict/erlang_closed_form.h"

namespace nbsgd::straggler {

WindowPolicy WindowPolicy::sync() { return WindowPolicy{Sync, 0, 0, std::nullopt}; }
WindowPolicy WindowPolicy::fastest() { return WindowPolicy{Fastest, 0, 0, std::nullopt}; }
WindowPolicy WindowPolicy::deadline(double seconds, std::optional<int64_t> cap) {
  return WindowPolicy{Deadline, seconds, 0, cap};
}
WindowPolicy WindowPolicy::quorum(int64_t k, std::optional<int64_t> cap) {
  return WindowPolicy{Quorum, 0, k, cap};
}

int64_t WindowPolicy::effective_cap(int64_t m) const {
  if (kind == Sync || kind == Fastest) return m;
  return cap.value_or(0);
}

std::string WindowPolicy::describe() const {
  char buf[64];
  switch (kind) {
    case Sync:
      return "sync";
    case Fastest:
      return "fastest";
    case Deadline:
      std::snprintf(buf, sizeof buf, "deadline:%gms", deadline_s * 1e3);
      return buf;
    case Quorum:
      return "quorum:" + std::to_string(quorum_k);
  }
  return "?";
}

namespace {

void validate(const StepModel& model, const WindowPolicy& policy) {
  if (model.workers.empty()) throw InputError("run-time model: no workers");
  if (model.m < 1) throw InputError("run-time model: m (mini-batches per worker) must be >= 1");
  if (model.b < 1) throw InputError("run-time model: b (samples per mini-batch) must be >= 1");
  for (size_t i = 0; i < model.workers.size(); ++i) {
    const double c = model.workers[i].compute_s;
    if (!(c > 0) || !std::isfinite(c))
      throw InputError("run-time model: worker " + std::to_string(i) +
                       ": mini-batch compute time must be a finite number > 0 seconds");
  }
  if (policy.cap && *policy.cap < 0) throw InputError("run-time model: cap must be >= 0 (0 = none)");
  if (policy.kind == WindowPolicy::Deadline && (!(policy.deadline_s > 0) || !std::isfinite(policy.deadline_s)))
    throw InputError("run-time model: deadline:T needs a finite T > 0");
  if (policy.kind == WindowPolicy::Quorum) {
    const int64_t cap = policy.effective_cap(model.m);
    const int64_t most = cap > 0 ? cap * static_cast<int64_t>(model.workers.size()) : INT64_MAX;
    if (policy.quorum_k < 1 || policy.quorum_k > most)
      throw InputError("run-time model: quorum:K needs 1 <= K <= N * cap (got K = " +
                       std::to_string(policy.quorum_k) + ")");
  }
}

// Finished by T, with a relative tolerance so that deterministic ties (two
// workers reaching the same time through differently rounded sums) count.
bool finished_by(double s, double t) { return s <= t + 1e-12 * std::abs(t); }

// Welford's running mean and variance.
struct Accumulator {
  int64_t n = 0;
  double mean = 0, m2 = 0;
  void add(double x) {
    ++n;
    const double d = x - mean;
    mean += d / static_cast<double>(n);
    m2 += d * (x - mean);
  }
  Estimate estimate() const {
    const double var = n > 1 ? m2 / static_cast<double>(n - 1) : 0.0;
    return {mean, std::sqrt(var / static_cast<double>(std::max<int64_t>(n, 1)))};
  }
};

// One worker's finish times within a step, generated lazily: s[0] is the end of
// the stall, s[k] the end of mini-batch k.
struct Path {
  const WorkerModel* w;
  Rng* delay_rng;
  std::vector<double> s;

  void start(Rng& stall_rng) {
    s.clear();
    s.push_back(w->stall.draw_ms(stall_rng) * 1e-3);
  }
  int64_t done() const { return static_cast<int64_t>(s.size()) - 1; }
  double extend() {
    s.push_back(s.back() + w->compute_s + w->delay.draw_ms(*delay_rng) * 1e-3);
    return s.back();
  }
  // Generates until the last finish is past t or the cap is reached.
  void cover(double t, int64_t cap) {
    while ((cap == 0 || done() < cap) && finished_by(s.back(), t)) extend();
  }
  int64_t count(double t, int64_t cap) const {
    int64_t k = 0;
    while (k < done() && (cap == 0 || k < cap) && finished_by(s[k + 1], t)) ++k;
    return k;
  }
  // When this worker is free again if the window closes at t: a stall or a
  // mini-batch already started runs to completion (honest timing). Requires cover(t, cap).
  double free_at(double t, int64_t cap) const {
    const int64_t k = count(t, cap);
    if (cap > 0 && k >= cap) return t;
    const double prev = s[static_cast<size_t>(k)];
    if (k == 0 && !finished_by(prev, t)) return prev;  // still stalled
    if (finished_by(prev, t) && prev >= t) return t;   // free exactly at the close
    return s[static_cast<size_t>(k) + 1];
  }
};

StepPrediction simulate(const StepModel& model, const WindowPolicy& policy, uint64_t seed, int64_t trials) {
  const size_t n = model.workers.size();
  const int64_t m = model.m;
  const int64_t cap = policy.effective_cap(m);
  std::vector<Rng> delay_rng, stall_rng;
  for (size_t i = 0; i < n; ++i) {
    delay_rng.push_back(device_stream(seed, static_cast<int>(i), RngPurpose::Delay));
    stall_rng.push_back(device_stream(seed, static_cast<int>(i), RngPurpose::Stall));
  }
  std::vector<Path> paths(n);
  for (size_t i = 0; i < n; ++i) paths[i] = Path{&model.workers[i], &delay_rng[i], {}};

  Accumulator acc_t, acc_samples, acc_busy;
  using Entry = std::pair<double, size_t>;
  for (int64_t trial = 0; trial < trials; ++trial) {
    for (size_t i = 0; i < n; ++i) paths[i].start(stall_rng[i]);
    double t = 0;
    switch (policy.kind) {
      case WindowPolicy::Sync:
      case WindowPolicy::Fastest: {
        t = policy.kind == WindowPolicy::Sync ? 0.0 : INFINITY;
        for (auto& p : paths) {
          while (p.done() < m) p.extend();
          t = policy.kind == WindowPolicy::Sync ? std::max(t, p.s.back()) : std::min(t, p.s.back());
        }
        break;
      }
      case WindowPolicy::Deadline:
        t = policy.deadline_s;
        break;
      case WindowPolicy::Quorum: {
        // Merge the workers' finish sequences; the K-th finish closes the window.
        std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
        for (size_t i = 0; i < n; ++i) heap.push({paths[i].extend(), i});
        for (int64_t popped = 0; popped < policy.quorum_k; ++popped) {
          const auto [time, i] = heap.top();
          heap.pop();
          t = time;
          if (cap == 0 || paths[i].done() < cap) heap.push({paths[i].extend(), i});
        }
        break;
      }
    }
    int64_t finished = 0;
    double busy = t;
    for (auto& p : paths) {
      p.cover(t, cap);
      finished += p.count(t, cap);
      busy = std::max(busy, p.free_at(t, cap));
    }
    acc_t.add(t);
    acc_samples.add(static_cast<double>(finished * model.b));
    acc_busy.add(busy);
  }
  StepPrediction r;
  r.time_s = acc_t.estimate();
  r.samples = acc_samples.estimate();
  r.busy_s = acc_busy.estimate();
  r.trials = trials;
  return r;
}

}  // namespace

StepPrediction monte_carlo(const StepModel& model, const WindowPolicy& policy, uint64_t seed, int64_t trials) {
  validate(model, policy);
  if (trials < 2) throw InputError("run-time model: Monte Carlo needs at least 2 trials");
  return simulate(model, policy, seed, trials);
}

std::optional<StepPrediction> closed_form(const StepModel& model, const WindowPolicy& policy) {
  validate(model, policy);
  const bool all_deterministic = std::all_of(model.workers.begin(), model.workers.end(), [](const WorkerModel& w) {
    return w.delay.deterministic() && w.stall.deterministic();
  });
  if (all_deterministic) {
    // Without randomness one trial of the simulation is the exact answer.
    StepPrediction r = simulate(model, policy, 0, 1);
    r.exact = true;
    r.trials = 0;
    return r;
  }
  std::vector<detail::ErlangWorker> ew;
  for (const auto& w : model.workers) {
    if (!w.stall.deterministic()) return std::nullopt;
    detail::ErlangWorker e;
    e.offset_s = w.stall.active() ? w.stall.dist.value_ms * 1e-3 : 0.0;
    e.step_s = w.compute_s;
    if (w.delay.deterministic()) {
      if (w.delay.active()) e.step_s += w.delay.dist.value_ms * 1e-3;
    } else if (w.delay.probability >= 1 && (w.delay.dist.kind == Distribution::Exponential ||
                                            w.delay.dist.kind == Distribution::ShiftedExponential)) {
      if (w.delay.dist.kind == Distribution::ShiftedExponential) e.step_s += w.delay.dist.shift_ms * 1e-3;
      e.theta_s = w.delay.dist.exp_mean_ms * 1e-3;
    } else {
      return std::nullopt;
    }
    ew.push_back(e);
  }
  return detail::erlang_closed_form(ew, model.m, model.b, policy);
}

StepPrediction predict(const StepModel& model, const WindowPolicy& policy, uint64_t seed, int64_t trials) {
  if (auto r = closed_form(model, policy)) return *r;
  return monte_carlo(model, policy, seed, trials);
}

StepModel step_model(const ResolvedProfile& profile, const std::vector<double>& base_compute_s, int64_t m,
                     int64_t b, int64_t step) {
  NBSGD_CHECK(base_compute_s.size() == profile.devices.size(),
              "step_model: one base compute time per device of the resolved profile");
  StepModel model;
  model.m = m;
  model.b = b;
  for (size_t i = 0; i < base_compute_s.size(); ++i) {
    const auto& d = profile.devices[i];
    model.workers.push_back({base_compute_s[i] * d.slowdown(step), d.delay_at(step), d.stall_at(step)});
  }
  return model;
}

}  // namespace nbsgd::straggler
