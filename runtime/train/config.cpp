#include "runtime/train/config.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "runtime/device/check.h"
#include "runtime/device/comm/launch.h"
#include "runtime/train/limits.h"
#include "runtime/train/trace.h"
#include "runtime/train/window.h"

namespace nbsgd::engine {

std::string config_json(const TrainConfig& c) {
  nlohmann::json j{
      {"net", c.net},
      {"data", c.data},
      {"data_dir", c.data_dir},
      {"train_limit", c.train_limit},
      {"test_limit", c.test_limit},
      {"exchange", c.exchange},
      {"window", c.window},
      {"cap", c.cap.empty() ? "default" : c.cap},
      {"topology", c.topology},
      {"window_scope", c.window_scope},
      {"budget", c.budget},
      {"devices", c.devices},
      {"host_workers", c.host_workers},
      {"clock", c.clock},
      {"slowdown", c.slowdown},
      {"profile", c.profile},
      {"ceiling", c.ceiling},
      {"inflight", c.inflight},
      {"gather", c.gather},
      {"deterministic", c.deterministic},
      {"virtual_gflops", c.model.gflops},
      {"virtual_launch_overhead_s", c.model.launch_overhead_s},
      {"virtual_link_gbps", c.model.link_gbps},
      {"virtual_link_latency_s", c.model.link_latency_s},
      {"virtual_jitter", c.model.jitter_cv},
      {"virtual_notice_latency_s", c.model.notice_latency_s},
      {"virtual_host_cpu_s", c.model.host_cpu_s},
      {"virtual_issue_latency_s", c.model.issue_latency_s},
      {"virtual_cancel_kernels", c.model.cancel_kernels},
      {"cancel_at", c.cancel_at},
      {"batch", c.batch},
      {"split", c.split},
      {"lr", c.lr},
      {"momentum", c.momentum},
      {"weight_decay", c.weight_decay},
      {"nesterov", c.nesterov},
      {"lr_schedule", c.lr_schedule},
      {"lr_scaling", c.lr_scaling},
      {"epochs", c.epochs},
      {"steps", c.steps},
      {"target_loss", c.target_loss},
      {"seed", c.seed},
      {"shuffle", c.shuffle},
      {"checkpoint_every", c.checkpoint_every},
      {"eval_every", c.eval_every},
      {"adaptive_guard", c.adaptive_guard},
      {"trace", c.trace},
      {"trace_steps", c.trace_steps},
  };
  return j.dump(2);
}

}  // namespace nbsgd::engine

namespace nbsgd::engine {

namespace {
void require(bool ok, const char* flag, double v, const char* what) {
  if (!ok) throw InputError(fmt::format("{} {}: must be {}", flag, v, what));
}
void require(bool ok, const char* flag, double v, const std::string& what) { require(ok, flag, v, what.c_str()); }
}  // namespace

void check_numbers(const TrainConfig& c) {
  const auto finite = [](double v) { return std::isfinite(v); };
  require(finite(c.lr) && c.lr > 0, "--lr", c.lr, "a positive number");
  require(finite(c.momentum) && c.momentum >= 0 && c.momentum < 1, "--momentum", c.momentum, "in [0, 1)");
  require(finite(c.weight_decay) && c.weight_decay >= 0, "--weight-decay", c.weight_decay, "a number >= 0");
  require(finite(c.target_loss) && c.target_loss >= 0, "--target-loss", c.target_loss, "a number >= 0 (0: none)");
  require(finite(c.budget) && c.budget > 0 && c.budget <= 1, "--budget", c.budget, "in (0, 1]");
  require(finite(c.adaptive_guard) && c.adaptive_guard >= 1, "--adaptive-guard", c.adaptive_guard, "a number >= 1");
  require(finite(c.model.gflops) && c.model.gflops > 0, "--virtual-gflops", c.model.gflops, "a positive number");
  require(finite(c.model.link_gbps) && c.model.link_gbps > 0, "--virtual-link-gbps", c.model.link_gbps,
          "a positive number");
  require(finite(c.model.launch_overhead_s), "--virtual-overhead-us", c.model.launch_overhead_s * 1e6,
          "a number >= 0");
  require(c.train_limit >= 0, "--train-limit", double(c.train_limit), "a count >= 0 (0: all)");
  require(c.test_limit >= 0, "--test-limit", double(c.test_limit), "a count >= 0 (0: all)");
  require(c.steps >= 0, "--steps", double(c.steps), "a count >= 0 (0: use --epochs)");
  require(c.epochs >= 1, "--epochs", double(c.epochs), "at least 1");
  require(c.checkpoint_every >= 0, "--checkpoint-every", double(c.checkpoint_every), "a count >= 0");
  require(c.eval_every >= 0, "--eval-every", double(c.eval_every), "a count >= 0");
  require(c.check_replicas_every >= 0, "--check-replicas-every", double(c.check_replicas_every), "a count >= 0");
  require(c.log_every >= 1, "--log-every", double(c.log_every), "at least 1");

  // Flags that size memory, bounded before anything is allocated (limits.h says why).
  require(c.batch >= 1 && c.batch <= kMaxBatch, "--batch", c.batch,
          fmt::format("in 1..{} (samples per worker per step)", kMaxBatch).c_str());
  require(c.split >= 1 && c.split <= c.batch, "--split", c.split, "in 1..--batch (mini-batches per batch)");
  require(c.batch % c.split == 0, "--split", c.split, fmt::format("a divisor of --batch {}", c.batch));
  require(c.inflight >= 1 && c.inflight <= kMaxInflight, "--inflight", c.inflight,
          fmt::format("in 1..{} (mini-batches in flight per worker stream)", kMaxInflight).c_str());
  if (c.host_workers != 0) check_workers(c.host_workers, "--host-workers");
  // Rates that turn into durations on the virtual clock: the derived durations are
  // checked by the timeline (duration_ns); these are the plausible ranges.
  require(c.model.gflops >= 1e-3 && c.model.gflops <= 1e9, "--virtual-gflops", c.model.gflops, "in [0.001, 1e9]");
  require(c.model.link_gbps >= 1e-6 && c.model.link_gbps <= 1e9, "--virtual-link-gbps", c.model.link_gbps,
          "in [1e-6, 1e9]");
  require(finite(c.model.jitter_cv) && c.model.jitter_cv >= 0 && c.model.jitter_cv <= 1, "--virtual-jitter",
          c.model.jitter_cv, "in [0, 1] (a coefficient of variation)");
  require(finite(c.model.notice_latency_s) && c.model.notice_latency_s >= 0 && c.model.notice_latency_s <= 1.0,
          "--virtual-notice-us", c.model.notice_latency_s * 1e6, "in [0, 1e6]");
  require(finite(c.model.host_cpu_s) && c.model.host_cpu_s >= 0 && c.model.host_cpu_s <= 1.0, "--virtual-host-us",
          c.model.host_cpu_s * 1e6, "in [0, 1e6]");
  require(finite(c.model.issue_latency_s) && c.model.issue_latency_s >= 0 && c.model.issue_latency_s <= 1.0,
          "--virtual-issue-us", c.model.issue_latency_s * 1e6, "in [0, 1e6]");
  require(c.model.cancel_kernels >= 1 && c.model.cancel_kernels <= 100000, "--virtual-cancel-kernels",
          c.model.cancel_kernels, "in [1, 100000]");
  require(c.model.launch_overhead_s <= 1.0 && (c.model.launch_overhead_s >= 0 || c.model.launch_overhead_s == -1.0),
          "--virtual-overhead-us", c.model.launch_overhead_s * 1e6, "in [0, 1e6]");
  require(c.adaptive_guard <= 1e3, "--adaptive-guard", c.adaptive_guard, "at most 1000");
  require(c.steps <= int64_t{1} << 40, "--steps", double(c.steps), "at most 2^40");
  require(c.epochs <= 1'000'000, "--epochs", double(c.epochs), "at most 1000000");
  // The window alone (parse_window names --window); with host workers the count is
  // known here, otherwise the engine calls validate_window once the devices are known.
  const WindowSpec w = parse_window(c.window);
  // (Under mpirun or srun, --host-workers is per rank: comm/launch.h.)
  if (c.host_workers > 0) validate_window(w, c.host_workers * comm::launch().size, c.split);
  parse_trace_steps(c.trace_steps);
  if (!c.trace.empty()) {
    // Refused now rather than after the run: the folder the trace goes to.
    const std::filesystem::path dir = std::filesystem::path(c.trace).parent_path();
    const bool in_out = !c.out_dir.empty() && dir.lexically_normal() == std::filesystem::path(c.out_dir).lexically_normal();
    if (!dir.empty() && !in_out && !std::filesystem::is_directory(dir))
      throw InputError("--trace " + c.trace + ": the folder " + dir.string() + " does not exist");
    if (std::filesystem::is_directory(c.trace)) throw InputError("--trace " + c.trace + ": is a folder; give a file name");
  }
}

}  // namespace nbsgd::engine
