// nbsgd train: one training run, any exchange, either clock. Also the runner of
// every run `nbsgd compare` makes.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <csignal>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

#include "runtime/device/check.h"
#include "runtime/device/comm/launch.h"
#include "runtime/device/file_io.h"
#include "runtime/apps/cli/commands.h"
#include "runtime/apps/cli/metrics_log.h"
#include "runtime/apps/cli/out_lock.h"
#include "runtime/apps/cli/progress.h"
#include "runtime/apps/cli/signals.h"
#include "runtime/apps/cli/train_flags.h"
#include "runtime/train/engine.h"
#include "runtime/apps/predict/rates.h"

namespace nbsgd::cli {

namespace {


// A fresh run must not mix into a folder that holds one; a folder left by a run
// with no checkpoint (stopped at start-up by an error) cannot be continued.
// `probe_lock`: first, refuse a folder another run holds (not under our own lock).
void check_out_is_free(const engine::TrainConfig& cfg, bool probe_lock) {
  namespace fs = std::filesystem;
  if (cfg.out_dir.empty()) return;
  if (probe_lock) OutDirLock::refuse_if_held(cfg.out_dir);
  if (!cfg.resume.empty() || !fs::exists(fs::path(cfg.out_dir) / "metrics.jsonl")) return;
  const std::string ck = cfg.out_dir + "/checkpoint.safetensors";
  if (fs::exists(ck))
    throw InputError("--out " + cfg.out_dir + " already holds a run (metrics.jsonl); choose another directory, "
                     "or continue it with --resume " + ck);
  throw InputError("--out " + cfg.out_dir + " already holds a run (metrics.jsonl) that left no checkpoint to "
                   "continue; choose another directory, or remove that one");
}

}  // namespace

// Durable and atomic: a temporary file, fsync, rename, fsync of the folder.
void write_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, text, std::filesystem::path(path).filename().string());
}

nlohmann::json summary_json(const engine::RunSummary& s) {
  return {{"steps", s.steps},
          {"epochs", s.epochs_completed},
          {"samples", s.samples},
          {"wall_s", s.wall_s},
          {"clock_s", s.clock_s},
          {"samples_per_s", s.samples_per_s},
          {"final_train_loss", std::isfinite(s.final_train_loss) ? nlohmann::json(s.final_train_loss) : nlohmann::json()},
          {"test_loss", s.test_loss},
          {"test_accuracy", s.test_accuracy},
          {"time_to_target_s", s.time_to_target_s ? nlohmann::json(*s.time_to_target_s) : nlohmann::json()},
          {"samples_per_epoch", s.samples_per_epoch},
          {"partial_epoch_samples", s.partial_epoch_samples},
          {"skipped_steps", s.skipped_steps},
          {"wasted_minibatches", s.wasted_minibatches},
          {"skipped_minibatches", s.skipped_minibatches},
          {"cut_minibatches", s.cut_minibatches},
          {"computed_minibatches", s.computed_minibatches >= 0 ? nlohmann::json(s.computed_minibatches) : nlohmann::json()},
          {"abandoned_holds", s.abandoned_holds},
          {"driver_cpu_s", s.driver_cpu_s},
          {"notice_lag_s", s.notice_lag_s},
          {"issue_lag_s", s.issue_lag_s},
          {"interrupted", s.interrupted},
          {"abandoned_step", s.abandoned_step >= 0 ? nlohmann::json(s.abandoned_step) : nlohmann::json()},
          {"clock", s.clock},
          {"evaluated", s.evaluated},
          {"final_train_loss_over_steps", engine::LossTracker::kWindow}};
}

nlohmann::json step_json(const engine::StepRecord& r) {
  nlohmann::json j{{"step", r.step},
                   {"epoch", r.epoch},
                   {"t", r.t},
                   {"loss", std::isfinite(r.loss) ? nlohmann::json(r.loss) : nlohmann::json()},
                   {"lr", r.lr},
                   {"samples", r.samples},
                   {"finished", r.finished},
                   {"window_s", r.window_s},
                   {"delay_s", r.delay_s}};
  if (r.skipped) j["skipped"] = true;
  if (r.consensus >= 0) j["consensus"] = r.consensus;
  return j;
}

namespace {

}  // namespace

RunResult run_training(const engine::TrainConfig& cfg, bool print) {
  RunOutput o;
  o.header = o.progress = o.summary = print;
  return run_training(cfg, o);
}

RunResult run_training(const engine::TrainConfig& cfg, const RunOutput& o) {
  namespace fs = std::filesystem;
  const bool print = o.header;
  RunResult out;
  // From here on SIGINT, SIGTERM and SIGHUP stop the run (signals.h); one during
  // start-up is seen by the run loop, which then stops before its first step.
  SignalScope signals;
  check_out_is_free(cfg, true);
  const bool tty = (o.progress || o.header) && isatty(STDERR_FILENO);
  Progress progress(cfg, tty, o.prefix);
  engine::PhaseHook phases;
  if (o.progress) phases = [&progress](const std::string& what, bool done) { progress.phase(what, done); };
  engine::Engine eng(cfg, phases);  // validates every flag: nothing is created before
  progress.start(eng.train_samples(), eng.workers(), eng.virtual_clock());
  // --ceiling: the devices' standalone rates; efficiency = samples/s over their sum.
  std::optional<predict::MeasuredRates> ceiling;
  if (!cfg.ceiling.empty()) {
    ceiling = predict::load_rates(cfg.ceiling, "--ceiling");
    if (static_cast<int>(ceiling->rates.size()) != eng.workers())
      throw InputError(fmt::format("--ceiling {}: {} rate(s) for {} worker(s)", cfg.ceiling, ceiling->rates.size(),
                                   eng.workers()));
    if (!ceiling->net.empty() && ceiling->net != cfg.net)
      throw InputError(fmt::format("--ceiling {}: measured with --net {}, this run trains {}", cfg.ceiling,
                                   ceiling->net, cfg.net));
  }
  // One run at a time in a folder, for the run's lifetime (out_lock.h).
  std::optional<OutDirLock> lock;
  if (!cfg.out_dir.empty()) {
    lock.emplace(cfg.out_dir);
    check_out_is_free(cfg, false);  // again, under the lock: a run may have begun meanwhile
  }
  if (print) {
    if (eng.devices().backend == Backend::Host && cfg.host_workers == 0)
      std::fprintf(stderr, "%s\n", fallback_line(eng.devices()).c_str());
    std::fprintf(stderr, "%s", eng.describe().c_str());
    const comm::Launch& l = comm::launch();
    if (l.spans())
      std::fprintf(stderr, "  launch: %d ranks (%s), %d host worker(s) per rank, %d workers in total; rank 0 writes "
                   "the output\n", l.size, l.launcher.c_str(), eng.workers() / l.size, eng.workers());
  }
  std::optional<MetricsLog> metrics;
  if (!cfg.out_dir.empty()) {
    // As the run resolved it (--cancel-at auto, for one), as its checkpoints record it.
    write_atomically(cfg.out_dir + "/config.json", engine::config_json(eng.config()) + "\n");
    metrics.emplace(cfg.out_dir + "/metrics.jsonl", cfg.resume.empty() ? -1 : eng.steps_done());
  }
  auto on_step = [&](const engine::StepRecord& r) {
    if (metrics) metrics->append(step_json(r).dump());
    out.losses.push_back(r.loss);
    if (o.progress) progress.step(r);
  };
  engine::RunSummary s = eng.run(on_step, &SignalScope::stop_flag());
  // Across ranks each rank ran its own workers' mini-batches (runtime/train/ranks.h),
  // and every rank must end with the same replicas, bit for bit (a hash exchange).
  if (comm::launch().spans()) {
    if (s.computed_minibatches >= 0) s.computed_minibatches = comm::ranks_sum(s.computed_minibatches);
    const std::vector<uint64_t> h = eng.replica_hashes();
    std::vector<uint64_t> all(h.size() * static_cast<size_t>(comm::launch().size));
    comm::ranks_allgather(h.data(), h.size() * sizeof(uint64_t), all.data());
    for (size_t k = h.size(); k < all.size(); ++k)
      NBSGD_CHECK(all[k] == all[k % h.size()], fmt::format("rank {}'s replica {} differs from rank 0's at the end of "
                                                           "the run", k / h.size(), k % h.size()));
  }
  progress.end();
  if (!cfg.out_dir.empty()) {
    eng.save_checkpoint(cfg.out_dir + "/checkpoint.safetensors");
    // A signal during the checkpoint's write: the summary says so too.
    if (SignalScope::signal_number()) s.interrupted = true;
    nlohmann::json sj = summary_json(s);
    if (ceiling) {
      sj["efficiency"] = s.samples_per_s / ceiling->sum;
      sj["ceiling_samples_per_s"] = ceiling->sum;
    }
    write_atomically(cfg.out_dir + "/summary.json", sj.dump(2) + "\n");
  }
  if (o.summary)
    std::fprintf(stderr, "%s", summary_text(cfg, s, ceiling ? std::optional<double>(ceiling->sum) : std::nullopt).c_str());
  // No rank ends before rank 0 has written its output: mpirun ends the job, and so
  // rank 0, as soon as one rank exits non-zero (as an interrupted run does).
  if (comm::launch().spans()) comm::ranks_sum(0);
  out.summary = s;
  out.virtual_clock = eng.virtual_clock();
  if (s.interrupted) out.signal = SignalScope::signal_number() ? SignalScope::signal_number() : SIGINT;
  return out;
}

void add_train_command(CLI::App& root, Runner& out) {
  auto cfg = std::make_shared<engine::TrainConfig>();
  CLI::App* sub = root.add_subcommand("train", "Train a net with Non-blocking SGD");
  add_train_flags(*sub, *cfg);
  // Here, not in add_train_flags: nbsgd compare has a --ceiling of its own.
  sub->add_option("--ceiling", cfg->ceiling,
                  "Rates file of nbsgd devices --measure: summary.json gains efficiency = samples/s / their sum");
  sub->callback([cfg, &out] {
    out = [cfg] {
      // Under mpirun or srun rank 0 alone writes --out, the trace and the output.
      engine::TrainConfig c = *cfg;
      if (comm::launch().rank != 0) {
        c.out_dir.clear();
        c.trace.clear();
        c.quiet = true;
      }
      RunResult r = run_training(c, !c.quiet);
      return r.signal ? 128 + r.signal : 0;
    };
  });
}

}  // namespace nbsgd::cli
