// bench_fidelity's options and its engine runs: one case (pattern x window x
// exchange) as a TrainConfig, run and validated (its books must add up before its
// timing counts), and the statistics the tables print. Included by fidelity.cpp only.
#pragma once

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "nets/data/fashion_mnist.h"
#include "runtime/device/check.h"
#include "runtime/train/engine.h"

namespace nbsgd::bench_fidelity {

struct Options {
  int batch = 64, split = 8, steps = 150, warmup = 10, reps = 3, standalone_steps = 60;
  int64_t train_limit = 16384;
  std::string data_dir = data::kFashionMnistDefaultDir;
  std::vector<std::string> windows{"sync", "fastest", "adaptive", "quorum:10"};
  std::vector<std::string> patterns{"1,4", "1,2", "none", "paper-random"};
  bool extras = true;  // efficiency extras (dpsgd, matcha, inflight 1) and the 1,64 probe
  std::string json = "bench-fidelity.json";
  int b() const { return batch / split; }
};

struct Spread {
  double med = 0, lo = 0, hi = 0;
};
inline Spread spread(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

inline std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// ---------------------------------------------------------------- 2. engine runs
struct Case {
  std::string pattern, window, exchange = "ring";
  int inflight = 2;
  bool fidelity = true;  // also predicted on the virtual clock
  std::string cancel_at = "auto";  // --cancel-at (auto: kernel on the real clock, as modelled on the virtual)
  std::string key() const {
    return fmt::format("{}|{}|{}|{}{}", pattern, window, exchange, inflight, cancel_at == "auto" ? "" : "|" + cancel_at);
  }
  std::string label() const {
    std::string s = exchange == "ring" ? window : exchange + " " + window;
    if (inflight != 2) s += fmt::format(" (inflight {})", inflight);
    if (cancel_at != "auto") s += " (cancel at " + cancel_at + ")";
    return s;
  }
};

struct RunStats {
  double rate = 0;                    // samples/s over the steps after the warm-up
  std::vector<double> counted;        // mean counted mini-batches per worker per step
  double wasted = 0, skipped = 0;     // per step, whole run
  double window_ms = 0, after_ms = 0;  // medians over the measured steps
  double driver_cpu_per_mb = 0;       // real clock: issuers' and watchers' CPU per mini-batch issued
  double notice_lag_s = 0;            // real clock: the watchers' median wake-up lag
  double issue_lag_s = 0;             // real clock: median depth-bound hand-out to its begin
};

inline engine::TrainConfig train_config(const Options& o, const Case& c, const std::string& clock) {
  engine::TrainConfig t;
  t.net = "lenet";
  t.data_dir = o.data_dir;
  t.train_limit = o.train_limit;
  t.test_limit = 64;
  t.host_workers = 2;
  t.clock = clock;
  t.batch = o.batch;
  t.split = o.split;
  t.steps = o.warmup + o.steps;
  t.window = c.window;
  t.exchange = c.exchange;
  if (c.exchange != "ring") t.topology = "complete";
  t.inflight = c.inflight;
  t.cancel_at = c.cancel_at;
  t.quiet = true;
  if (c.pattern == "paper-random") {
    t.profile = c.pattern;
  } else if (c.pattern != "none") {
    t.slowdown = c.pattern;
  }
  return t;
}

// The run's books must add up, else its timing is void: steps, samples per step and
// in all, whole epochs, and (host backend) every forward/backward that ran is a
// counted or a wasted mini-batch (a skipped one did none).
inline void validate(const engine::TrainConfig& t, const std::vector<engine::StepRecord>& recs, const engine::RunSummary& s,
              int b, int64_t n_train) {
  const std::string what = fmt::format("{} {} {} {}", t.clock, t.window, t.exchange, t.slowdown + t.profile);
  NBSGD_CHECK(static_cast<int64_t>(recs.size()) == t.steps && s.steps == t.steps, what + ": step count");
  int64_t samples = 0, counted = 0;
  for (const auto& r : recs) {
    int64_t k = 0;
    for (int f : r.finished) k += f;
    NBSGD_CHECK(k * b == r.samples, fmt::format("{}: step {}: {} mini-batches but {} samples", what, r.step, k, r.samples));
    samples += r.samples;
    counted += k;
  }
  NBSGD_CHECK(samples == s.samples, fmt::format("{}: records sum to {} samples, summary says {}", what, samples, s.samples));
  int64_t in_epochs = s.partial_epoch_samples;
  for (int64_t e : s.samples_per_epoch) {
    NBSGD_CHECK(e == n_train, fmt::format("{}: a completed epoch holds {} samples of {}", what, e, n_train));
    in_epochs += e;
  }
  NBSGD_CHECK(in_epochs == s.samples, fmt::format("{}: epochs hold {} samples, the steps {}", what, in_epochs, s.samples));
  const int64_t expect = s.clock == "real" ? counted + s.wasted_minibatches : counted;
  NBSGD_CHECK(s.computed_minibatches == expect,
              fmt::format("{}: {} forward/backward passes ran, expected {} (counted {} + wasted {})", what,
                          s.computed_minibatches, expect, counted, s.wasted_minibatches));
}

inline RunStats run_case(const engine::TrainConfig& t, int warmup, int b) {
  engine::Engine e(t);
  std::vector<engine::StepRecord> recs;
  const engine::RunSummary s = e.run([&](const engine::StepRecord& r) { recs.push_back(r); });
  validate(t, recs, s, b, t.train_limit);
  RunStats st;
  const int N = e.workers();
  st.counted.assign(N, 0.0);
  int64_t samples = 0;
  std::vector<double> win, after;
  for (size_t i = warmup; i < recs.size(); ++i) {
    samples += recs[i].samples;
    for (int w = 0; w < N; ++w) st.counted[w] += recs[i].finished[w];
    win.push_back(recs[i].window_s * 1e3);
    after.push_back((recs[i].t - recs[i - 1].t - recs[i].window_s) * 1e3);
  }
  const double measured = static_cast<double>(recs.size() - warmup);
  for (double& c : st.counted) c /= measured;
  st.rate = samples / (recs.back().t - recs[warmup - 1].t);
  st.wasted = double(s.wasted_minibatches) / s.steps;
  st.skipped = double(s.skipped_minibatches) / s.steps;
  st.window_ms = spread(win).med;
  st.after_ms = spread(after).med;
  const double issued = double(s.samples) / b + double(s.wasted_minibatches + s.skipped_minibatches);
  st.driver_cpu_per_mb = issued > 0 ? s.driver_cpu_s / issued : 0.0;
  st.notice_lag_s = s.notice_lag_s;
  st.issue_lag_s = s.issue_lag_s;
  return st;
}

inline nlohmann::json stats_json(const RunStats& s) {
  return {{"samples_per_s", s.rate}, {"counted_per_worker_per_step", s.counted}, {"wasted_per_step", s.wasted},
          {"skipped_per_step", s.skipped}, {"window_ms", s.window_ms}, {"after_close_ms", s.after_ms},
          {"driver_cpu_per_minibatch_s", s.driver_cpu_per_mb}, {"notice_lag_s", s.notice_lag_s},
          {"issue_lag_s", s.issue_lag_s}};
}

inline std::string counted_str(const std::vector<double>& c) {
  std::string s;
  for (size_t i = 0; i < c.size(); ++i) s += fmt::format("{}{:.2f}", i ? " " : "", c[i]);
  return s;
}

}  // namespace nbsgd::bench_fidelity
