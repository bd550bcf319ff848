#include "runtime/apps/cli/train_flags.h"

#include <CLI/CLI.hpp>

#include <cmath>

namespace nbsgd::cli {

namespace {
// A duration flag given in microseconds, a number >= 0, stored in seconds.
void add_microseconds(CLI::App& app, const char* flag, double& seconds, const std::string& help,
                      const std::string& default_text) {
  app.add_option_function<double>(
         flag,
         [flag, &seconds](double us) {
           if (!(us >= 0) || !std::isfinite(us)) throw CLI::ValidationError(flag, "must be a number >= 0");
           seconds = us * 1e-6;
         },
         help)
      ->default_str(default_text);
}
}  // namespace

void add_train_flags(CLI::App& app, engine::TrainConfig& c) {
  app.add_option("--net", c.net, "Net: a built-in name (mlp, lenet, resnet20, vgg11-cifar, resnet18-cifar; see nbsgd describe-net) or a .toml description")->capture_default_str();
  app.add_option("--data", c.data, "Data: fashion-mnist, synthetic-cifar, or npy:DIR (x_train.npy, y_train.npy, x_test.npy, y_test.npy)")->capture_default_str();
  app.add_flag("--deterministic", c.deterministic,
               "cuDNN: deterministic convolution algorithms only (repeatable GPU runs; may be slower)");
  app.add_option("--data-dir", c.data_dir, "Fashion-MNIST IDX files (plain or .gz)")->capture_default_str();
  app.add_option("--train-limit", c.train_limit, "Use only the first N training samples (0: all)")->capture_default_str();
  app.add_option("--test-limit", c.test_limit, "Evaluate on the first N test samples only (0: all)")
      ->capture_default_str();
  app.add_option("--exchange", c.exchange, "Exchange: ring, dpsgd, matcha, adpsgd (adpsgd: virtual clock only)")
      ->capture_default_str();
  app.add_option("--window", c.window, "Step window: sync, fastest, quorum:K, deadline:MS, adaptive")
      ->capture_default_str();
  app.add_option("--cap", c.cap, "Per-worker cap per step: m, none, or N (default: m for sync/fastest, else none)");
  app.add_option("--topology", c.topology, "Gossip topology: ring, torus[:RxC], complete, er:P[:SEED], file:PATH")
      ->capture_default_str();
  app.add_option("--window-scope", c.window_scope, "Gossip window scope: global, neighbors (real clock: global)")
      ->capture_default_str();
  app.add_option("--budget", c.budget, "MATCHA communication budget C_b")->capture_default_str();
  app.add_option("--devices", c.devices, "Devices to use, e.g. 0,1 or 0:0.5,0:0.5 (default: all)");
  app.add_option("--host-workers", c.host_workers, "Use N host workers instead of GPUs")
      ->check(CLI::Range(1, 256));
  app.add_option("--clock", c.clock, "Clock: auto (virtual on host workers, real on GPUs), real, virtual")
      ->capture_default_str();
  app.add_option("--slowdown", c.slowdown, "Constant slowdown per worker, e.g. 1,1,2,4 (a profile shorthand)");
  app.add_option("--profile", c.profile, "Straggler profile: a name in profiles/ or a TOML path");
  app.add_option("--inflight", c.inflight, "Mini-batches in flight per worker stream")->capture_default_str();
  app.add_option("--cancel-at", c.cancel_at,
                 "Where a mini-batch running at its window's close stops: minibatch (at its end, as on a GPU), kernel "
                 "(at the next kernel boundary, its throttle at the slowed device's; host workers), auto (kernel on "
                 "host workers on the real clock, else minibatch; the virtual clock models kernel with "
                 "--virtual-cancel-kernels)")
      ->capture_default_str();
  app.add_option("--gather", c.gather,
                 "Where mini-batches are formed: device (training set uploaded once, a gather kernel) or host (a host "
                 "function into pinned memory)")
      ->capture_default_str();
  app.add_option("--virtual-gflops", c.model.gflops, "Virtual clock: nominal device GFLOP/s")->capture_default_str();
  add_microseconds(app, "--virtual-overhead-us", c.model.launch_overhead_s,
         "Virtual clock: launch overhead per mini-batch, microseconds (default: 4 us x the net's kernels)", "auto");
  app.add_option("--virtual-link-gbps", c.model.link_gbps, "Virtual clock: link bandwidth GB/s")->capture_default_str();
  add_microseconds(app, "--virtual-notice-us", c.model.notice_latency_s,
         "Virtual clock: a window's close is seen this many microseconds after it happens, as the real engine's "
         "completion watcher sees it; a stream that reaches a queued mini-batch of the closed step before then runs "
         "it, wasted; and a completion's place in flight is handed out two such wake-ups after it (default 0; "
         "bench_fidelity measures it)", "0");
  add_microseconds(app, "--virtual-host-us", c.model.host_cpu_s,
         "Virtual clock: host CPU microseconds the engine's own threads spend per mini-batch (issuing, deciding) "
         "and take from the compute's cores, as on the host backend with a worker per core (default 0, as on a "
         "GPU; bench_fidelity measures it)", "0");
  add_microseconds(app, "--virtual-issue-us", c.model.issue_latency_s,
         "Virtual clock: a handed-out mini-batch reaches its stream this many microseconds after its hand-out at "
         "the earliest (the issuer's enqueue, the staging, the stream's wake-up), as on the host backend; it binds "
         "with --inflight 1 (default 0; bench_fidelity measures it, summary.json issue_lag_s)", "0");
  app.add_option("--virtual-cancel-kernels", c.model.cancel_kernels,
                 "Virtual clock: --cancel-at kernel cuts a running mini-batch at the first of this many equal slices "
                 "of its slowed compute that ends after the close is seen (1: it runs to its end)")
      ->capture_default_str();
  app.add_option("--virtual-jitter", c.model.jitter_cv,
                 "Virtual clock: a mini-batch's compute varies by this coefficient of variation (lognormal, mean "
                 "kept; 0: every one takes exactly its modelled time)")
      ->capture_default_str();
  app.add_option("--batch", c.batch, "Batch B per worker")->capture_default_str();
  app.add_option("--split", c.split, "Mini-batches M per batch (M divides B)")->capture_default_str();
  app.add_option("--lr", c.lr, "Learning rate")->capture_default_str();
  app.add_option("--momentum", c.momentum, "Momentum")->capture_default_str();
  app.add_option("--weight-decay", c.weight_decay, "Weight decay")->capture_default_str();
  app.add_flag("--nesterov", c.nesterov, "Nesterov momentum");
  app.add_option("--lr-schedule", c.lr_schedule, "constant, step:EPOCHS:GAMMA, cosine:EPOCHS, warmup:W+...")
      ->capture_default_str();
  app.add_option("--lr-scaling", c.lr_scaling, "none | linear (lr x n / (N*B))")->capture_default_str();
  app.add_option("--epochs", c.epochs, "Epochs (when --steps is 0)")->capture_default_str();
  app.add_option("--steps", c.steps, "Stop after this many steps (0: use --epochs)")->capture_default_str();
  app.add_option("--target-loss", c.target_loss, "Training loss whose time to reach is reported (0: none)")
      ->capture_default_str();
  app.add_flag("--stop-at-target", c.stop_at_target, "Stop when the target loss is reached");
  app.add_option("--seed", c.seed, "Seed (init, shuffling, stragglers)")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) { return !v.empty() && v[0] == '-' ? std::string("must be an integer >= 0") : std::string(); },
          "UINT"));
  app.add_option_function<std::string>(
         "--shuffle",
         [&c](const std::string& v) {
           if (v != "on" && v != "off") throw CLI::ValidationError("--shuffle", "expected on or off, got '" + v + "'");
           c.shuffle = v == "on";
         },
         "Shuffle every epoch: on|off")
      ->default_str("on");
  app.add_option("--out", c.out_dir, "Output directory: config.json, metrics.jsonl, summary.json, checkpoint");
  app.add_option("--resume", c.resume,
                 "Resume from a checkpoint.safetensors: the same run continues, so --net, --exchange, --batch, "
                 "--split, --window, --seed, --clock, the number of workers (and for gossip --topology, "
                 "--window-scope, --budget) must be the checkpoint's; the exception is a ring run on the real clock, "
                 "which may continue on another number of workers (its global batch becomes N x B). --lr, its "
                 "schedule, --steps/--epochs and the profile may change. metrics.jsonl in --out continues after "
                 "the checkpoint's step");
  app.add_option("--checkpoint-every", c.checkpoint_every, "Checkpoint every N steps (0: only at the end)")
      ->capture_default_str();
  app.add_option("--eval-every", c.eval_every, "Evaluate on the test set every N steps (0: only at the end)")
      ->capture_default_str();
  app.add_option("--check-replicas-every", c.check_replicas_every, "Debug: hash all replicas every N steps")
      ->capture_default_str();
  app.add_option("--log-every", c.log_every, "Progress line every N steps when not on a terminal")
      ->capture_default_str();
  app.add_option("--adaptive-guard", c.adaptive_guard, "adaptive: close at this multiple of the predicted step time")
      ->capture_default_str();
  app.add_flag("--quiet", c.quiet, "No progress output");
  app.add_option("--trace", c.trace,
                 "Write the run's timeline to FILE.json (Chrome trace format: open it in ui.perfetto.dev or "
                 "chrome://tracing); times on the run's clock");
  app.add_option("--trace-steps", c.trace_steps, "Steps the trace holds, A:B (from A up to, not including, B)")
      ->capture_default_str();
}

}  // namespace nbsgd::cli
