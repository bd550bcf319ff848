#include "runtime/apps/predict/model.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "runtime/device/check.h"

namespace nbsgd::predict {

std::vector<std::pair<int64_t, int64_t>> constant_ranges(const straggler::ResolvedProfile& profile, int64_t steps) {
  std::set<int64_t> cuts{0, steps};
  auto add = [&](const auto& fn) {
    for (const auto& seg : fn.segments) {
      if (seg.from_step > 0 && seg.from_step < steps) cuts.insert(seg.from_step);
      if (seg.to_step > 0 && seg.to_step < steps) cuts.insert(seg.to_step);
    }
  };
  for (const auto& d : profile.devices) {
    add(d.slowdown_fn);
    add(d.delay_fn);
    add(d.stall_fn);
  }
  std::vector<std::pair<int64_t, int64_t>> out;
  for (auto it = cuts.begin(); std::next(it) != cuts.end(); ++it) out.emplace_back(*it, *std::next(it));
  return out;
}

ModelResult model_window(const straggler::ResolvedProfile& profile, const std::vector<double>& base_compute_s,
                         int64_t m, int64_t b, const straggler::WindowPolicy& policy, double after_close_s,
                         int64_t steps, int64_t trials) {
  NBSGD_CHECK(steps > 0, "model_window: no steps");
  ModelResult r;
  double t_sum = 0, samples_sum = 0, busy_sum = 0, t_var = 0, samples_var = 0;
  bool have_busy = true;
  for (const auto& [from, to] : constant_ranges(profile, steps)) {
    const double len = static_cast<double>(to - from);
    const straggler::StepModel sm = straggler::step_model(profile, base_compute_s, m, b, from);
    const straggler::StepPrediction p = straggler::predict(sm, policy, profile.seed, trials);
    t_sum += len * p.time_s.mean;
    samples_sum += len * p.samples.mean;
    t_var += len * len * p.time_s.std_error * p.time_s.std_error;
    samples_var += len * len * p.samples.std_error * p.samples.std_error;
    if (p.busy_s) {
      busy_sum += len * p.busy_s->mean;
    } else {
      have_busy = false;
    }
    r.exact = r.exact && p.exact;
    r.trials = std::max(r.trials, p.trials);
  }
  const double n = static_cast<double>(steps);
  r.window_s = t_sum / n;
  r.step_s = r.window_s + after_close_s;
  if (have_busy) r.busy_step_s = busy_sum / n + after_close_s;
  r.samples_per_step = samples_sum / n;
  r.step_s_error = std::sqrt(t_var) / n;
  r.samples_error = std::sqrt(samples_var) / n;
  return r;
}

double model_standalone_rate(const straggler::ResolvedProfile& profile, int device, double base_compute_s,
                             int64_t m, int64_t b, double after_close_s, int64_t steps) {
  NBSGD_CHECK(device >= 0 && device < static_cast<int>(profile.devices.size()), "standalone: no such device");
  const auto& d = profile.devices[device];
  double time = 0, samples = 0;
  for (const auto& [from, to] : constant_ranges(profile, steps)) {
    const double len = static_cast<double>(to - from);
    const double per_mb = base_compute_s * d.slowdown(from) + d.delay_at(from).mean_ms() * 1e-3;
    time += len * (d.stall_at(from).mean_ms() * 1e-3 + double(m) * per_mb + after_close_s);
    samples += len * double(m * b);
  }
  if (!std::isfinite(time) || time <= 0) return 0.0;
  return samples / time;
}

}  // namespace nbsgd::predict
