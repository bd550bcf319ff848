// Everything `nbsgd train` (and `compare`) can set, with the defaults `--help` shows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/train/duration_model.h"

namespace nbsgd::engine {

struct TrainConfig {
  // model and data
  std::string net = "lenet";          // mlp | lenet | resnet20
  std::string data = "fashion-mnist";  // fashion-mnist | synthetic-cifar
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t train_limit = 0;      // > 0: use only the first N training samples
  int64_t test_limit = 0;       // > 0: evaluate on the first N test samples only
  int64_t synthetic_train = 50000, synthetic_test = 10000;

  // algorithm
  std::string exchange = "ring";  // ring | dpsgd | matcha | adpsgd
  std::string window = "fastest";
  std::string cap;                // "" = the window's default
  std::string topology = "ring";  // gossip exchanges
  std::string window_scope = "global";
  double budget = 0.5;            // MATCHA communication budget

  // devices and clocks
  std::string devices;  // "" = all
  int host_workers = 0;
  std::string clock = "auto";  // auto | real | virtual (auto: virtual on host workers, real on GPUs)
  std::string slowdown;        // "1,1,2,4"
  std::string profile;         // name or path of a TOML profile
  std::string ceiling;         // rates file of nbsgd devices --measure: summary gains efficiency
  // Mini-batches each worker's issuer keeps in flight (--inflight). 2, measured: on
  // the host backend (real clock, 2 workers, LeNet B=64 m=8, --slowdown 1,4,
  // fastest) 1 in flight gave efficiency 0.658 and 2 gave 0.831, since with one the
  // stream idles from each completion until the issuer's next hand-out; 3 against 2
  // (2026-12-02, a 2-core Xeon, fastest and adaptive at no slowdown and 1,4, 3 runs
  // each) was within 3% either way, so depth beyond 2 buys nothing there. On CUDA
  // (not yet measured) the same holds with more weight: the second mini-batch's
  // staging and kernels are queued while the first runs, which hides the launch
  // latency and the completion notice's trip through the host. More buys nothing
  // there (a stream runs one at a time) and costs at the close: a queued mini-batch
  // is skipped for only the cost of its check, but its samples were tied to that
  // worker and go back out of order.
  int inflight = 2;
  // Where a running mini-batch stops when its window closes (--cancel-at):
  // "minibatch", at its end (what a GPU does: cuDNN's and cuBLAS's kernels cannot
  // read a cancel flag), or "kernel", at the next kernel boundary, its throttle at
  // the slowed device's (host backend, real clock; the virtual clock models it with
  // --virtual-cancel-kernels). "auto": kernel on host workers on the real clock,
  // else minibatch.
  std::string cancel_at = "auto";
  // Where a mini-batch is formed (--gather): "device", from the training set kept on
  // each device and uploaded once, by one gather kernel on the copy stream (the GPU
  // never waits for the host for it; a GPU without room for the set falls back to
  // the host, and says so); "host", by a host function into pinned memory and two
  // copies. Both give the same bits.
  std::string gather = "device";
  bool deterministic = false;  // cuDNN: deterministic algorithms only (DeviceContext::set_deterministic)
  DurationModel model;

  // batch
  int batch = 128;  // B per worker
  int split = 8;    // m mini-batches per batch

  // optimiser
  double lr = 0.05, momentum = 0.9, weight_decay = 5e-4;
  bool nesterov = false;
  std::string lr_schedule = "constant";
  std::string lr_scaling = "linear";  // none | linear

  // stopping
  int64_t epochs = 1;
  int64_t steps = 0;         // > 0: stop after this many steps
  double target_loss = 0.0;  // > 0: report the time to reach it
  bool stop_at_target = false;

  // run
  uint64_t seed = 1;
  bool shuffle = true;
  std::string out_dir;
  std::string resume;
  int64_t checkpoint_every = 0;
  int64_t eval_every = 0;
  int64_t check_replicas_every = 0;  // debug: hash every replica's weights every K steps
  bool quiet = false;
  int64_t log_every = 10;
  std::string trace;                // --trace FILE.json: the run's timeline (trace.h); "" = none
  std::string trace_steps = "0:200";  // the steps the trace holds, A:B (B excluded)
  double adaptive_guard = 2.0;
};

// The configuration as pretty JSON (config.json of a run).
std::string config_json(const TrainConfig& c);

// Refuses numbers no run can use (NaN, infinities, negative counts, a learning rate
// of 0, ...) with an InputError naming the flag. make_setup calls it first.
void check_numbers(const TrainConfig& c);

}  // namespace nbsgd::engine
