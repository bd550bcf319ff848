#include "runtime/apps/predict/measure.h"

#include <fmt/format.h>

#include <cstdio>
#include <sstream>

#include "runtime/device/check.h"
#include "runtime/device/device.h"
#include "runtime/train/engine.h"
#include "runtime/apps/predict/model.h"
#include "runtime/apps/predict/net_cost.h"
#include "runtime/apps/predict/simulate.h"

namespace nbsgd::predict {

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

// The profile of the whole device list (index sections refer to it).
straggler::ResolvedProfile resolve_profile(const engine::TrainConfig& c, const DeviceList& devices) {
  const int n = static_cast<int>(devices.devices.size());
  if (!c.profile.empty() && !c.slowdown.empty()) throw InputError("--profile and --slowdown: give one of them");
  std::vector<std::string> names;
  for (const Device& d : devices.devices) names.push_back(d.name);
  straggler::Profile prof;
  if (!c.profile.empty()) {
    prof = straggler::load_profile(c.profile);
  } else if (!c.slowdown.empty()) {
    std::vector<double> v;
    for (const std::string& item : split_list(c.slowdown)) {
      char* end = nullptr;
      const double x = std::strtod(item.c_str(), &end);
      if (item.empty() || *end != '\0' || !std::isfinite(x) || x < 1.0)
        throw InputError("--slowdown " + c.slowdown + ": '" + item + "' must be a number >= 1");
      v.push_back(x);
    }
    if (static_cast<int>(v.size()) != n)
      throw InputError(fmt::format("--slowdown {}: {} value(s) for {} device(s)", c.slowdown, v.size(), n));
    prof = straggler::profile_from_slowdowns(v);
  } else {
    prof = straggler::profile_from_slowdowns(std::vector<double>(n, 1.0));
  }
  return straggler::resolve(prof, n, names);
}

}  // namespace

MeasuredRates measure_rates(const MeasureConfig& mc) {
  const engine::TrainConfig& c = mc.train;
  engine::check_numbers(c);
  if (c.batch <= 0 || c.split <= 0 || c.batch % c.split != 0)
    throw InputError(fmt::format("--split {}: M must divide --batch B = {}", c.split, c.batch));
  DiscoverOptions d;
  d.host_workers = c.host_workers;
  DeviceList devices = discover_devices(d);
  if (!c.devices.empty()) devices = select_devices(devices, c.devices);
  bool virtual_clock = devices.backend == Backend::Host;
  if (c.clock == "real") {
    virtual_clock = false;
  } else if (c.clock == "virtual") {
    if (devices.backend == Backend::Cuda)
      throw InputError("--clock virtual: the virtual clock runs on host workers only (use --host-workers N)");
    virtual_clock = true;
  } else if (c.clock != "auto") {
    throw InputError("--clock " + c.clock + ": expected auto, real or virtual");
  }
  const straggler::ResolvedProfile profile = resolve_profile(c, devices);
  const int n = static_cast<int>(devices.devices.size());
  const int b = c.batch / c.split;

  MeasuredRates out;
  out.net = c.net;
  out.profile = !c.profile.empty() ? c.profile : (c.slowdown.empty() ? "none" : "--slowdown " + c.slowdown);
  out.batch = c.batch;
  out.split = c.split;
  out.clock = virtual_clock ? "virtual" : "real";
  for (const Device& dv : devices.devices) out.devices.push_back(dv.name);

  if (virtual_clock) {
    const NetCost cost = net_cost(c.net);
    engine::TimelineConfig tc;
    tc.model = engine::duration_model_for_net(c.model, c.net);  // (lead) as train resolves it
    tc.flops_per_sample = cost.flops_per_sample;
    RingCost ring;
    ring.bytes = (cost.params + 2) * sizeof(float);
    tc.params = cost.params;
    tc.controller.workers = n;
    tc.controller.batch = c.batch;
    tc.controller.split = c.split;
    tc.controller.cap = c.split;
    const int64_t steps = mc.steps > 0 ? mc.steps : 200;
    for (int i = 0; i < n; ++i) out.rates.push_back(simulate_standalone(tc, ring, profile, i, steps).samples_per_s());
  } else {
    // One device at a time, alone, without injection.
    std::vector<std::string> specs;
    if (!c.devices.empty()) {
      specs = split_list(c.devices);
    } else {
      for (int i = 0; i < n; ++i) specs.push_back(std::to_string(i));
    }
    const int64_t steps = mc.steps > 0 ? mc.steps : 30;
    for (int i = 0; i < n; ++i) {
      engine::TrainConfig one = c;
      one.devices = specs[i];
      one.profile.clear();
      one.slowdown.clear();
      one.clock = "real";
      one.window = "fastest";
      one.cap.clear();
      one.steps = mc.warmup + steps;
      one.out_dir.clear();
      one.resume.clear();
      one.quiet = true;
      one.eval_every = one.checkpoint_every = one.check_replicas_every = 0;
      engine::Engine e(one);
      double t_start = 0, t_end = 0;
      int64_t samples = 0;
      e.run([&](const engine::StepRecord& r) {
        if (r.step + 1 == mc.warmup) t_start = r.t;
        if (r.step >= mc.warmup) {
          samples += r.samples;
          t_end = r.t;
        }
      });
      if (!(t_end > t_start && samples > 0))
        throw InputError(fmt::format("devices --measure: device {} finished no mini-batch after the {} warm-up "
                                     "step(s); raise --steps or --train-limit",
                                     i, mc.warmup));
      // The device's own time for one mini-batch, the update folded in.
      const double c_i = (t_end - t_start) / double(samples) * b;
      const double rate = model_standalone_rate(profile, i, c_i, c.split, b, 0.0, steps);
      if (mc.verbose)
        std::fprintf(stderr, "%s\n",
                     fmt::format("device {} ({}): {:.0f} samples/s alone, {:.0f} under the profile", i,
                                 devices.devices[i].name, double(samples) / (t_end - t_start), rate)
                         .c_str());
      out.rates.push_back(rate);
    }
  }
  for (double r : out.rates) out.sum += r;
  return out;
}

}  // namespace nbsgd::predict
