// The run-time model against measured runs: for each shipped profile
// (profiles/*.toml), on host workers, predicted against measured throughput with
// the virtual clock and with the real clock.
//
//   virtual clock: `nbsgd predict`'s engine simulation must equal the measured run
//       exactly (it is the same timeline; the data set is a multiple of the
//       mini-batch, so no short mini-batch ever differs). This is the validation:
//       a mismatch fails the bench.
//   real clock: the host's real per-mini-batch compute time c and the per-step
//       cost after the window closes are measured first (a run with profile none,
//       window sync), then fed to the model (PredictConfig::compute_s and
//       after_close_s). By default the calibration runs all workers together:
//       host workers share the cores, and a worker computing alone is faster than
//       one of four computing at once (--calibrate alone measures one worker
//       alone instead, the GPU-box view). Target: within 10%.
//
// Run lengths are short (a few minutes on 2 cores in all). `thermal` changes only
// from step 300, beyond these runs: it measures as `none` here. Real-clock rows on
// a loaded machine are only as good as the machine is quiet.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/train/engine.h"
#include "runtime/apps/predict/predict.h"
#include "runtime/train/straggler/profile.h"

using namespace nbsgd;

namespace {

struct Options {
  int workers = 4;
  int batch = 64, split = 4;
  std::string net = "lenet";
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t train_limit = 2048;
  std::vector<std::string> windows{"sync", "fastest"};
  std::vector<std::string> profiles;  // empty: every shipped profile
  int64_t virtual_steps = 12;
  int64_t real_steps = 20;
  int64_t warmup = 3;
  std::string calibrate = "together";
  std::string json;
};

engine::TrainConfig train_config(const Options& o, const std::string& clock, int workers) {
  engine::TrainConfig c;
  c.net = o.net;
  c.data_dir = o.data_dir;
  c.train_limit = o.train_limit;
  c.test_limit = 256;
  c.host_workers = workers;
  c.clock = clock;
  c.batch = o.batch;
  c.split = o.split;
  c.quiet = true;
  return c;
}

struct Measured {
  std::vector<engine::StepRecord> steps;
  engine::RunSummary summary;
  // Samples per second over the steps after `warmup` (the first ones allocate).
  double rate(int64_t warmup) const {
    if (static_cast<int64_t>(steps.size()) <= warmup) return summary.samples_per_s;
    const double t0 = warmup > 0 ? steps[warmup - 1].t : 0.0;
    int64_t n = 0;
    for (size_t i = warmup; i < steps.size(); ++i) n += steps[i].samples;
    return n / (steps.back().t - t0);
  }
};

Measured run(const engine::TrainConfig& c) {
  engine::Engine e(c);
  Measured m;
  m.summary = e.run([&](const engine::StepRecord& r) { m.steps.push_back(r); });
  return m;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

struct Row {
  std::string profile, window, clock;
  double measured = 0, sim = 0, model = 0;
  bool exact = false;          // virtual: simulation == measurement, bit for bit
  bool deterministic = false;
  std::string model_method;
  double sim_error() const { return (sim - measured) / measured; }
  double model_error() const { return (model - measured) / measured; }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_model: predicted against measured throughput for each shipped profile (host workers)"};
  Options o;
  app.add_option("--json", o.json, "Write the rows as JSON to this file");
  app.add_option("--workers", o.workers, "Host workers")->capture_default_str();
  app.add_option("--net", o.net, "Net")->capture_default_str();
  app.add_option("--batch", o.batch, "Batch B per worker")->capture_default_str();
  app.add_option("--split", o.split, "Mini-batches M")->capture_default_str();
  app.add_option("--data-dir", o.data_dir, "Fashion-MNIST directory")->capture_default_str();
  app.add_option("--train-limit", o.train_limit, "Training samples (a multiple of B/M)")->capture_default_str();
  app.add_option("--windows", o.windows, "Step windows")->delimiter(',')->capture_default_str();
  app.add_option("--profiles", o.profiles, "Profiles (default: every shipped one)")->delimiter(',');
  app.add_option("--virtual-steps", o.virtual_steps, "Steps of each virtual-clock run")->capture_default_str();
  app.add_option("--real-steps", o.real_steps, "Measured steps of each real-clock run")->capture_default_str();
  app.add_option("--warmup", o.warmup, "Real clock: steps before the measurement")->capture_default_str();
  app.add_option("--calibrate", o.calibrate, "Real-clock calibration: together (all workers) or alone (one)")
      ->check(CLI::IsMember({"together", "alone"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (o.profiles.empty()) o.profiles = straggler::list_profiles();
  const int b = o.batch / o.split;
  if (o.train_limit % b != 0) {
    std::fprintf(stderr, "--train-limit %lld must be a multiple of the mini-batch %d\n", (long long)o.train_limit, b);
    return 2;
  }

  try {
    // Real-clock calibration: profile none, sync, so every worker computes all m.
    engine::TrainConfig cal = train_config(o, "real", o.calibrate == "alone" ? 1 : o.workers);
    cal.window = "sync";
    cal.steps = o.warmup + o.real_steps;
    const Measured m = run(cal);
    std::vector<double> window, after;
    for (size_t i = o.warmup; i < m.steps.size(); ++i) {
      window.push_back(m.steps[i].window_s);
      after.push_back(m.steps[i].t - m.steps[i - 1].t - m.steps[i].window_s);
    }
    const double c = median(window) / o.split;
    const double after_close = std::max(0.0, median(after));
    std::printf("real-clock calibration (%s, %d worker(s), sync): one mini-batch of %d takes %.3f ms, "
                "%.3f ms from close to the next step\n",
                o.calibrate.c_str(), cal.host_workers, b, c * 1e3, after_close * 1e3);

    std::vector<Row> rows;
    bool valid = true;
    for (const std::string& prof : o.profiles) {
      for (const std::string& clock : {std::string("virtual"), std::string("real")}) {
        predict::PredictConfig pc;
        pc.net = o.net;
        pc.profile = prof;
        pc.workers = o.workers;
        pc.batch = o.batch;
        pc.split = o.split;
        pc.windows = o.windows;
        pc.steps = clock == "virtual" ? o.virtual_steps : o.warmup + o.real_steps;
        if (clock == "real") {
          pc.compute_s = {c};
          pc.after_close_s = after_close;
        }
        const predict::Prediction p = predict::run_prediction(pc);
        for (const predict::WindowResult& w : p.windows) {
          engine::TrainConfig tc = train_config(o, clock, o.workers);
          tc.profile = prof;
          tc.window = w.name;
          tc.steps = pc.steps;
          const Measured meas = run(tc);
          Row r;
          r.profile = prof;
          r.window = w.name;
          r.clock = clock;
          r.deterministic = p.deterministic;
          r.sim = w.sim.samples_per_s();
          r.model = w.model ? w.model->samples_per_s() : std::nan("");
          r.model_method = w.model ? (w.model->exact ? "closed-form" : "monte-carlo") : "-";
          if (clock == "virtual") {
            r.measured = meas.summary.samples_per_s;
            r.exact = meas.summary.samples == w.sim.samples && meas.summary.clock_s == w.sim.clock_s &&
                      meas.summary.steps == w.sim.steps;
            if (!r.exact) valid = false;
          } else {
            r.measured = meas.rate(o.warmup);
          }
          rows.push_back(r);
          std::fprintf(stderr, "%s %s %s: measured %.0f, simulated %.0f samples/s\n", prof.c_str(), w.name.c_str(),
                       clock.c_str(), r.measured, r.sim);
        }
      }
    }

    std::printf("%s\n", fmt::format("{:<13} {:<8} {:<8} {:>12} {:>12} {:>8} {:>12} {:>8} {:>12}  {}", "profile",
                                    "window", "clock", "measured/s", "simulated/s", "err %", "model/s", "err %",
                                    "model", "target")
                            .c_str());
    int within = 0, real_rows = 0;
    for (const Row& r : rows) {
      std::string target;
      if (r.clock == "virtual") {
        target = r.exact ? "exact" : "MISMATCH";
      } else {
        ++real_rows;
        const bool ok = std::abs(r.sim_error()) <= 0.10;
        within += ok;
        target = ok ? "within 10%" : "off";
      }
      std::printf("%s\n", fmt::format("{:<13} {:<8} {:<8} {:>12.0f} {:>12.0f} {:>8.2f} {:>12.0f} {:>8.2f} {:>12}  {}",
                                      r.profile, r.window, r.clock, r.measured, r.sim, 100 * r.sim_error(), r.model,
                                      100 * r.model_error(), r.model_method, target)
                              .c_str());
    }
    std::printf("real clock: %d of %d rows within 10%%; virtual clock: %s\n", within, real_rows,
                valid ? "every row exact" : "MISMATCH");
    if (!o.json.empty()) {
      nlohmann::json j = nlohmann::json::array();
      for (const Row& r : rows)
        j.push_back({{"profile", r.profile}, {"window", r.window}, {"clock", r.clock},
                     {"measured_samples_per_s", r.measured}, {"simulated_samples_per_s", r.sim},
                     {"model_samples_per_s", std::isfinite(r.model) ? nlohmann::json(r.model) : nlohmann::json()},
                     {"model_method", r.model_method}, {"simulated_error", r.sim_error()},
                     {"deterministic", r.deterministic}, {"exact", r.exact}});
      std::ofstream(o.json) << nlohmann::json{{"bench", "model"},
                                              {"workers", o.workers},
                                              {"net", o.net},
                                              {"batch", o.batch},
                                              {"split", o.split},
                                              {"calibration", {{"mode", o.calibrate},
                                                               {"compute_s", c},
                                                               {"after_close_s", after_close}}},
                                              {"rows", j}}
                                   .dump(2)
                            << "\n";
    }
    return valid ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model: %s\n", e.what());
    return 1;
  }
}
