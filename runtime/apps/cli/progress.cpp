#include "runtime/apps/cli/progress.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdio>

#include "runtime/device/backend.h"

namespace nbsgd::cli {

namespace {
std::string list(const std::vector<int>& k) {
  std::string s;
  for (size_t i = 0; i < k.size(); ++i) s += fmt::format("{}{}", i ? "," : "", k[i]);
  return s;
}
}  // namespace

std::string human_seconds(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return fmt::format("{:.1f} s", s);
  const auto t = static_cast<int64_t>(std::llround(s));
  if (t < 3600) return fmt::format("{} min {:02d} s", t / 60, int(t % 60));
  return fmt::format("{} h {:02d} min", t / 3600, int(t / 60 % 60));
}

Progress::Progress(const engine::TrainConfig& cfg, bool tty, std::string prefix)
    : cfg_(cfg), tty_(tty), prefix_(std::move(prefix)), wall0_(steady_now_s()) {}

void Progress::start(int64_t train_samples, int, bool virtual_clock) {
  train_samples_ = train_samples;
  clock_ = virtual_clock ? "virtual" : "real";
}

void Progress::phase(const std::string& what, bool done) {
  end();
  if (!done) {
    phase_t0_ = steady_now_s();
    std::fprintf(stderr, "%s%s ...\n", prefix_.c_str(), what.c_str());
  } else {
    std::fprintf(stderr, "%s%s: done in %s (wall clock)\n", prefix_.c_str(), what.c_str(),
                 human_seconds(steady_now_s() - phase_t0_).c_str());
  }
}

std::string Progress::line(const engine::StepRecord& r, double rate, double wall_s, double since_first_s) const {
  const int64_t done = r.step + 1;
  // The fraction of the run done, and the steps it will take.
  double frac = 0;
  std::string total;
  if (cfg_.steps > 0) {
    frac = double(done) / double(cfg_.steps);
    total = std::to_string(cfg_.steps);
  } else if (train_samples_ > 0 && steps_ > 0) {
    const double per_step = double(samples_) / double(steps_);
    const double all = double(cfg_.epochs) * double(train_samples_);
    // Steps before this process (a resumed run) at this process's samples per step.
    const double before = double(first_step_) * per_step;
    frac = std::min(1.0, (before + double(samples_)) / all);
    total = per_step > 0 ? fmt::format("~{:.0f}", std::ceil(all / per_step)) : "?";
  }
  const int64_t steps_here = done - std::max<int64_t>(first_step_, 0);
  const double frac_here0 = cfg_.steps > 0 ? double(std::max<int64_t>(first_step_, 0)) / double(cfg_.steps) : 0.0;
  std::string eta = "?";
  if (frac > frac_here0 && steps_here > 0) eta = human_seconds(since_first_s * (1.0 - frac) / (frac - frac_here0));
  std::string s = fmt::format("step {}/{} {:.1f}%", done, total.empty() ? "?" : total, 100 * frac);
  if (cfg_.steps <= 0) s += fmt::format(" | epoch {}/{}", r.epoch + 1, cfg_.epochs);
  s += std::isfinite(r.loss) ? fmt::format(" | loss {:.4f}", r.loss) : std::string(" | loss -");
  s += fmt::format(" | {:.0f} samples/s ({} clock) | {} clock {:.3f} s | wall {}, ETA {} (wall)", rate, clock_, clock_,
                   r.t, human_seconds(wall_s), eta);
  if (r.consensus >= 0) s += fmt::format(" | consensus {:.3g}", r.consensus);
  s += fmt::format(" | k_i [{}]", list(r.finished));
  return s;
}

void Progress::step(const engine::StepRecord& r) {
  if (first_step_ < 0) {
    first_step_ = r.step;
    first_wall_ = steady_now_s();
    t_since_ = r.t - (r.window_s > 0 ? r.window_s : 0);
  }
  samples_ += r.samples;
  ++steps_;
  samples_since_ += r.samples;
  if (r.skipped) {
    end();
    std::fprintf(stderr, "%sstep %lld skipped: no worker finished a mini-batch inside the window\n", prefix_.c_str(),
                 (long long)r.step);
  }
  const double now = steady_now_s();
  const bool last = cfg_.steps > 0 && r.step + 1 == cfg_.steps;
  const bool due = tty_ ? (now - last_print_ > 0.1 || last) : (cfg_.log_every > 0 && (r.step + 1) % cfg_.log_every == 0);
  if (!due) return;
  const double rate = r.t > t_since_ ? double(samples_since_) / (r.t - t_since_) : 0.0;
  const std::string text = prefix_ + line(r, rate, now - wall0_, now - first_wall_);
  if (tty_) {
    std::fprintf(stderr, "\r%-120s", text.c_str());
    open_line_ = true;
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
  }
  last_print_ = now;
  samples_since_ = 0;
  t_since_ = r.t;
}

void Progress::end() {
  if (open_line_) std::fprintf(stderr, "\n");
  open_line_ = false;
}

std::string summary_text(const engine::TrainConfig& cfg, const engine::RunSummary& s, std::optional<double> ceiling) {
  const std::string clk = s.clock + " clock";
  std::string out = fmt::format("summary ({}, exchange {}{}): every time is on the run's {}, unless it says wall clock\n",
                                cfg.net, cfg.exchange, cfg.exchange == "adpsgd" ? std::string() : fmt::format(", window {}", cfg.window), clk);
  auto row = [&](const std::string& k, const std::string& v) { out += fmt::format("  {:<22}{}\n", k, v); };
  row("steps", cfg.exchange == "adpsgd" ? fmt::format("{} (a step is a round of one iteration per worker)", s.steps) : std::to_string(s.steps));
  row("samples", fmt::format("{} ({} epoch(s) complete)", s.samples, s.epochs_completed));
  row("run time", fmt::format("{:.3f} s ({})", s.clock_s, clk));
  row("wall time", fmt::format("{:.1f} s (wall clock; training and final evaluation, set-up excluded)", s.wall_s));
  row("samples/s", fmt::format("{:.0f} ({})", s.samples_per_s, clk));
  if (ceiling)
    row("efficiency", fmt::format("{:.3f} of the ceiling {:.0f} samples/s (both on the {})", s.samples_per_s / *ceiling,
                                  *ceiling, clk));
  row("final train loss",
      std::isfinite(s.final_train_loss)
          ? fmt::format("{:.4f} (sample-weighted mean over the last {} non-empty steps, not the last step's loss)",
                        s.final_train_loss, engine::LossTracker::kWindow)
          : std::string("- (no step finished a sample)"));
  row("test loss / accuracy", fmt::format("{:.4f} / {:.2f}% ({})", s.test_loss, 100 * s.test_accuracy, s.evaluated));
  if (cfg.target_loss > 0)
    row("time to target",
        s.time_to_target_s ? fmt::format("{:.4f} s ({}) to a train loss of {:g}", *s.time_to_target_s, clk, cfg.target_loss)
                           : fmt::format("not reached (train loss {:g})", cfg.target_loss));
  if (s.skipped_steps) row("skipped steps", std::to_string(s.skipped_steps));
  if (s.wasted_minibatches || s.skipped_minibatches)
    row("cancelled", fmt::format("{} mini-batch(es) ran and were discarded{}, {} cancelled before they began",
                                 s.wasted_minibatches,
                                 s.cut_minibatches ? fmt::format(" ({} stopped at a kernel boundary)", s.cut_minibatches)
                                                   : std::string(),
                                 s.skipped_minibatches));
  if (s.abandoned_holds)
    row("stalled workers",
        fmt::format("{} injected stall(s)/delay(s) still running at the end were not waited for", s.abandoned_holds));
  if (!s.trace_path.empty())
    row("trace", fmt::format("{} ({} events, {:.1f} KiB, steps {}; open in ui.perfetto.dev or chrome://tracing)",
                             s.trace_path, s.trace_events, double(s.trace_bytes) / 1024.0, s.trace_steps));
  if (s.interrupted) out += "interrupted: checkpoint and summary written\n";
  if (s.abandoned_step >= 0)
    out += fmt::format("  step {} was computing when the signal came: abandoned (the checkpoint is at step {})\n",
                       s.abandoned_step, s.abandoned_step);
  return out;
}

}  // namespace nbsgd::cli
