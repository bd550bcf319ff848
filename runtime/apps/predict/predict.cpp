#include "runtime/apps/predict/predict.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

#include "runtime/device/check.h"
#include "runtime/device/device.h"
#include "runtime/train/limits.h"
#include "runtime/train/window.h"

namespace nbsgd::predict {

namespace {

constexpr int64_t kMaxSteps = 10'000'000;
constexpr int64_t kMaxTrials = 10'000'000;

void validate(const PredictConfig& c) {
  engine::check_workers(c.workers, "--workers");
  if (c.batch <= 0 || c.batch > engine::kMaxBatch)
    throw InputError(fmt::format("--batch {}: expected 1..{}", c.batch, engine::kMaxBatch));
  if (c.split <= 0 || c.split > c.batch)
    throw InputError(fmt::format("--split {}: expected 1..--batch ({})", c.split, c.batch));
  if (c.batch % c.split != 0)
    throw InputError(fmt::format("--split {}: M must divide --batch B = {}", c.split, c.batch));
  // The simulation runs every step and the model every trial: bounded so a typo cannot
  // keep the machine busy for days.
  if (c.steps < 1 || c.steps > kMaxSteps)
    throw InputError(fmt::format("--steps {}: expected 1..{} steps to simulate", c.steps, kMaxSteps));
  if (c.trials < 2 || c.trials > kMaxTrials)
    throw InputError(fmt::format("--trials {}: expected 2..{} Monte Carlo trials", c.trials, kMaxTrials));
  if (!(c.adaptive_guard >= 1 && c.adaptive_guard <= 1e3))
    throw InputError(fmt::format("--adaptive-guard {}: expected a number in [1, 1000]", c.adaptive_guard));
  if (!c.profile.empty() && !c.slowdown.empty()) throw InputError("--profile and --slowdown: give one of them");
  if (!c.compute_s.empty() && c.compute_s.size() != 1 && static_cast<int>(c.compute_s.size()) != c.workers)
    throw InputError(fmt::format("--compute-ms: {} value(s); give one, or one per worker ({})", c.compute_s.size(),
                                 c.workers));
  for (double v : c.compute_s)
    if (!(v > 0) || !(v <= engine::kMaxDurationS))
      throw InputError(fmt::format("--compute-ms: every value must be a positive number of at most {:g} ms",
                                   engine::kMaxDurationMs));
  if (c.after_close_s && (!(*c.after_close_s >= 0) || !(*c.after_close_s <= engine::kMaxDurationS)))
    throw InputError(fmt::format("--overhead-ms: must be a number in [0, {:g}]", engine::kMaxDurationMs));
  if (c.nodes < 1 || c.nodes > c.workers || c.workers % c.nodes != 0)
    throw InputError(fmt::format("--nodes {}: expected a divisor of --workers {} (workers spread evenly)", c.nodes,
                                 c.workers));
  if (!(c.node_link_gbps >= 1e-6 && c.node_link_gbps <= 1e9))
    throw InputError(fmt::format("--node-link-gbps {}: expected a number in [1e-6, 1e9]", c.node_link_gbps));
  if (!(c.node_link_latency_s >= 0 && c.node_link_latency_s <= 1.0))
    throw InputError(fmt::format("--node-link-latency-us {}: expected a number in [0, 1e6]", c.node_link_latency_s * 1e6));
  if (!(c.decision_s >= 0 && c.decision_s <= 1.0))
    throw InputError(fmt::format("--decision-us {}: expected a number in [0, 1e6]", c.decision_s * 1e6));
  const engine::DurationModel& m = c.model;
  if (!(m.gflops >= 1e-3 && m.gflops <= 1e9))
    throw InputError(fmt::format("--virtual-gflops {}: expected a number in [0.001, 1e9]", m.gflops));
  if (!(m.link_gbps >= 1e-6 && m.link_gbps <= 1e9))
    throw InputError(fmt::format("--virtual-link-gbps {}: expected a number in [1e-6, 1e9]", m.link_gbps));
  if (!(m.mem_gbps > 0) || !((m.launch_overhead_s >= 0 && m.launch_overhead_s <= 1.0) || m.launch_overhead_s == -1.0))
    throw InputError(fmt::format("--virtual-overhead-us {}: expected a number in [0, 1e6]", m.launch_overhead_s * 1e6));
}

// parse_window's messages name --window (nbsgd train); here the flag is --windows.
engine::WindowSpec parse_window_flag(const std::string& text) {
  if (text.empty()) throw InputError("--windows: empty window name in the list");
  try {
    return engine::parse_window(text);
  } catch (const InputError& e) {
    std::string msg = e.what();
    if (msg.rfind("--window ", 0) == 0) msg = "--windows " + msg.substr(9);
    throw InputError(msg);
  }
}

std::optional<straggler::WindowPolicy> policy_of(const engine::WindowSpec& w, int cap) {
  const std::optional<int64_t> model_cap = cap < 0 ? std::optional<int64_t>(0) : std::optional<int64_t>(cap);
  switch (w.kind) {
    case engine::WindowKind::Sync:
      return straggler::WindowPolicy::sync();
    case engine::WindowKind::Fastest:
      return straggler::WindowPolicy::fastest();
    case engine::WindowKind::Quorum:
      return straggler::WindowPolicy::quorum(w.quorum_k, model_cap);
    case engine::WindowKind::Deadline:
      return straggler::WindowPolicy::deadline(w.deadline_s, model_cap);
    case engine::WindowKind::Adaptive:
      return std::nullopt;  // the run-time model has no adaptive plan
  }
  return std::nullopt;
}

// Multiplies every slowdown of device i by factor[i]: a device that is slower in
// hardware is, to the timeline, a device with a larger slowdown.
straggler::ResolvedProfile scale_slowdowns(straggler::ResolvedProfile p, const std::vector<double>& factor) {
  for (size_t i = 0; i < p.devices.size(); ++i) {
    auto& fn = p.devices[i].slowdown_fn;
    fn.base *= factor[i];
    for (auto& seg : fn.segments) seg.value *= factor[i];
  }
  return p;
}

double ratio(double a, double b) { return b > 0 && std::isfinite(b) ? a / b : std::nan(""); }

}  // namespace

Prediction run_prediction(const PredictConfig& in) {
  const auto t0 = std::chrono::steady_clock::now();
  validate(in);
  Prediction out;
  out.cfg = in;
  PredictConfig& c = out.cfg;
  const int n = c.workers;
  const int b = c.batch / c.split;
  if (c.windows.empty()) c.windows = {"sync", "fastest", fmt::format("quorum:{}", int64_t(n) * c.split)};

  // The profile, resolved for devices named as `--host-workers N` names them.
  std::vector<std::string> names;
  for (const Device& d : host_devices(n, "predict").devices) names.push_back(d.name);
  const straggler::Profile prof =
      !c.profile.empty() ? straggler::load_profile(c.profile)
                         : straggler::profile_from_slowdowns(c.slowdown.empty() ? std::vector<double>(n, 1.0)
                                                                                : straggler::parse_slowdowns(c.slowdown, n));
  const straggler::ResolvedProfile profile = straggler::resolve(prof, n, names);
  out.profile_name = !c.profile.empty() ? (prof.name.empty() ? c.profile : prof.name)
                                        : (c.slowdown.empty() ? "none" : "--slowdown " + c.slowdown);
  out.deterministic = profile.deterministic();
  out.cost = net_cost(c.net);

  // The timeline's costs: the duration model as nbsgd train uses it, unless speeds
  // were measured.
  engine::TimelineConfig tc;
  tc.model = engine::duration_model_for_net(c.model, c.net);  // (lead) launch overhead from the net, as train does
  tc.flops_per_sample = out.cost.flops_per_sample;
  RingCost ring;
  ring.bytes = (out.cost.params + 2) * sizeof(float);
  ring.workers_per_node = c.nodes > 1 ? n / c.nodes : 0;
  ring.node_link_gbps = c.node_link_gbps;
  ring.node_link_latency_s = c.node_link_latency_s;
  ring.decision_s = c.decision_s;
  tc.params = out.cost.params;
  straggler::ResolvedProfile sim_profile = profile;
  if (!c.compute_s.empty()) {
    out.compute_s = c.compute_s.size() == 1 ? std::vector<double>(n, c.compute_s[0]) : c.compute_s;
    // compute_s(1 "flop" per sample, s) = s * c_ref / b: mini-batches of other sizes
    // (adaptive) scale with their size.
    const double c_ref = *std::min_element(out.compute_s.begin(), out.compute_s.end());
    tc.model.launch_overhead_s = 0;
    tc.model.gflops = b / (c_ref * 1e9);
    tc.flops_per_sample = 1.0;
    std::vector<double> factor;
    for (double ci : out.compute_s) factor.push_back(ci / c_ref);
    sim_profile = scale_slowdowns(profile, factor);
  } else {
    out.compute_s.assign(n, tc.model.compute_s(out.cost.flops_per_sample, b));
  }
  const double update_s = tc.model.update_s(tc.params);
  if (c.after_close_s) ring.override_s = std::max(0.0, *c.after_close_s - update_s);
  auto after_close = [&](int workers) { return ring.seconds(tc.model, workers) + update_s; };
  out.after_close_s = after_close(n);
  // A mini-batch is never faster than the fastest device at full speed.
  const double fastest_minibatch_s = *std::min_element(out.compute_s.begin(), out.compute_s.end());
  for (double ci : out.compute_s)
    if (!(ci <= engine::kMaxDurationS))
      throw InputError(fmt::format("--virtual-gflops {}: a mini-batch of {} would take {:g} s, beyond the virtual "
                                   "clock's longest duration ({:g} s)",
                                   c.model.gflops, c.net, ci, engine::kMaxDurationS));

  engine::ControllerConfig base;
  base.workers = n;
  base.batch = c.batch;
  base.split = c.split;
  base.adaptive_guard = c.adaptive_guard;
  base.window = engine::parse_window("fastest");
  base.cap = c.split;
  tc.controller = base;

  // The ceiling: every device alone.
  for (int i = 0; i < n; ++i) {
    out.rates.push_back(simulate_standalone(tc, ring, sim_profile, i, c.steps).samples_per_s());
    out.ceiling += out.rates.back();
    out.model_rates.push_back(
        model_standalone_rate(profile, i, out.compute_s[i], c.split, b, after_close(1), c.steps));
    out.model_ceiling += out.model_rates.back();
  }

  for (const std::string& name : c.windows) {
    WindowResult w;
    w.name = name;
    tc.controller = base;
    tc.controller.window = parse_window_flag(name);
    tc.controller.cap = engine::parse_cap(c.cap, tc.controller.window, c.split);
    // Before simulating: an impossible quorum, or a window that would hold more
    // mini-batches than memory allows (a long deadline without --cap).
    engine::validate_window(tc.controller.window, n, c.split, "--windows");
    engine::check_window_size(tc.controller.window, tc.controller.cap, n, c.split, fastest_minibatch_s, "--windows");
    w.sim = simulate(tc, ring, sim_profile, c.steps);
    w.sim_efficiency = ratio(w.sim.samples_per_s(), out.ceiling);
    if (auto policy = policy_of(tc.controller.window, tc.controller.cap)) {
      try {
        w.model = model_window(profile, out.compute_s, c.split, b, *policy, out.after_close_s, c.steps, c.trials);
      } catch (const InputError& e) {
        throw InputError("--windows " + name + ": " + e.what());
      }
      w.model_efficiency = ratio(w.model->samples_per_s(), out.model_ceiling);
    }
    out.windows.push_back(std::move(w));
  }
  out.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

namespace {
nlohmann::json number(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(); }
}  // namespace

nlohmann::json to_json(const Prediction& p) {
  nlohmann::json windows = nlohmann::json::object();
  for (const WindowResult& w : p.windows) {
    nlohmann::json j{{"step_s", number(w.sim.step_s())},
                     {"samples_per_step", number(w.sim.samples_per_step())},
                     {"samples_per_s", number(w.sim.samples_per_s())},
                     {"efficiency", number(w.sim_efficiency)},
                     {"steps", w.sim.steps},
                     {"samples", w.sim.samples},
                     {"clock_s", number(w.sim.clock_s)},
                     {"wasted_minibatches", w.sim.wasted_minibatches},
                     {"skipped_steps", w.sim.skipped_steps}};
    if (w.model) {
      const ModelResult& m = *w.model;
      j["model"] = {{"method", m.exact ? "closed-form" : "monte-carlo"},
                    {"step_s", number(m.step_s)},
                    {"window_s", number(m.window_s)},
                    {"busy_step_s", m.busy_step_s ? number(*m.busy_step_s) : nlohmann::json()},
                    {"samples_per_step", number(m.samples_per_step)},
                    {"samples_per_s", number(m.samples_per_s())},
                    {"efficiency", number(w.model_efficiency)},
                    {"step_s_std_error", number(m.step_s_error)},
                    {"samples_std_error", number(m.samples_error)},
                    {"trials", m.trials}};
    } else {
      j["model"] = nullptr;
    }
    windows[w.name] = j;
  }
  nlohmann::json model_rates = nlohmann::json::array();
  for (double r : p.model_rates) model_rates.push_back(number(r));
  return {{"net", p.cost.net},
          {"params", p.cost.params},
          {"flops_per_sample", p.cost.flops_per_sample},
          {"profile", p.profile_name},
          {"deterministic", p.deterministic},
          {"workers", p.cfg.workers},
          {"batch", p.cfg.batch},
          {"split", p.cfg.split},
          {"cap", p.cfg.cap.empty() ? "default" : p.cfg.cap},
          {"steps", p.cfg.steps},
          {"compute_s", p.compute_s},
          {"after_close_s", p.after_close_s},
          {"nodes", p.cfg.nodes},
          {"node_link_gbps", p.cfg.node_link_gbps},
          {"node_link_latency_s", p.cfg.node_link_latency_s},
          {"decision_s", p.cfg.decision_s},
          {"rates", p.rates},
          {"ceiling", number(p.ceiling)},
          {"model_rates", model_rates},
          {"model_ceiling", number(p.model_ceiling)},
          {"windows", windows}};
}

std::string report(const Prediction& p) {
  const PredictConfig& c = p.cfg;
  double cmin = *std::min_element(p.compute_s.begin(), p.compute_s.end());
  double cmax = *std::max_element(p.compute_s.begin(), p.compute_s.end());
  std::string s = fmt::format(
      "nbsgd predict: net {} ({} parameters, {:.3g} MFLOP/sample), profile {}{}, {} workers,\n"
      "  batch {} per worker in {} mini-batches of {}, cap {}, {} steps\n"
      "  one mini-batch {} ms{} before slowdowns, exchange + update {:.4g} ms per step\n"
      "  ceiling (sum of standalone rates): {:.0f} samples/s simulated, {:.0f} closed form\n",
      p.cost.net, p.cost.params, p.cost.flops_per_sample * 1e-6, p.profile_name,
      p.deterministic ? " (deterministic)" : " (random)", c.workers, c.batch, c.split, c.batch / c.split,
      c.cap.empty() ? "default" : c.cap, c.steps,
      cmin == cmax ? fmt::format("{:.4g}", cmin * 1e3) : fmt::format("{:.4g}..{:.4g}", cmin * 1e3, cmax * 1e3),
      c.compute_s.empty() ? " (virtual clock model)" : " (given)", p.after_close_s * 1e3, p.ceiling,
      p.model_ceiling);
  if (c.nodes > 1 || c.decision_s > 0)
    s += fmt::format("  across processes: {} node(s) of {} workers, node link {:g} GB/s + {:g} us, coordinator decision "
                     "{:g} us per step (in the exchange above)\n",
                     c.nodes, c.workers / c.nodes, c.node_link_gbps, c.node_link_latency_s * 1e6, c.decision_s * 1e6);
  s += fmt::format("{:<16}|{:>37} |{:>49}\n", "", "engine simulation", "run-time model");
  s += fmt::format("{:<16}|{:>10} {:>10} {:>10} {:>5} |{:>10} {:>10} {:>10} {:>5} {:>11}\n", "window", "step ms",
                   "samples", "samples/s", "eff", "step ms", "samples", "samples/s", "eff", "method");
  for (const WindowResult& w : p.windows) {
    s += fmt::format("{:<16}|{:>10.4g} {:>10.1f} {:>10.0f} {:>5.3f} |", w.name, w.sim.step_s() * 1e3,
                     w.sim.samples_per_step(), w.sim.samples_per_s(), w.sim_efficiency);
    if (w.model) {
      s += fmt::format("{:>10.4g} {:>10.1f} {:>10.0f} {:>5.3f} {:>11}\n", w.model->step_s * 1e3,
                       w.model->samples_per_step, w.model->samples_per_s(), w.model_efficiency,
                       w.model->exact ? "closed-form" : "monte-carlo");
    } else {
      s += fmt::format("{:>49}\n", "no model for this window");
    }
  }
  return s;
}

}  // namespace nbsgd::predict
