// make_setup: flags, devices, clock, profile, data, workers, queue, schedule, SGD.
#include "runtime/train/setup.h"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <sstream>
#include <thread>

#include "nets/data/load.h"
#include "nets/models.h"
#include "runtime/device/check.h"
#include "runtime/device/comm/launch.h"
#include "runtime/train/exchange.h"
#include "runtime/train/limits.h"

namespace nbsgd::engine {

namespace {

// The one data entry point (nets/data/load.h), checked against the net's input.
data::DataSplit load_data(const TrainConfig& c) {
  const nets::NetSpec spec = nets::describe_net(c.net);
  data::DataRequest r;
  r.data = c.data;
  r.data_dir = c.data_dir;
  r.train_limit = c.train_limit;
  r.test_limit = c.test_limit;
  r.synthetic_train = c.synthetic_train;
  r.synthetic_test = c.synthetic_test;
  r.seed = c.seed;
  r.net_c = spec.input.c;
  r.net_h = spec.input.h;
  r.net_w = spec.input.w;
  r.net_classes = spec.classes;
  r.net = spec.name;
  return data::load_data(r);
}

void check_flags(const TrainConfig& cfg) {
  check_numbers(cfg);
  if (cfg.batch <= 0 || cfg.split <= 0) throw InputError("--batch and --split must be positive");
  if (cfg.batch % cfg.split != 0)
    throw InputError(fmt::format("--split {}: M must divide --batch B = {}", cfg.split, cfg.batch));
  if (cfg.inflight < 1) throw InputError("--inflight must be at least 1");
  if (cfg.gather != "device" && cfg.gather != "host")
    throw InputError("--gather " + cfg.gather + ": expected device or host");
  if (cfg.lr_scaling != "none" && cfg.lr_scaling != "linear")
    throw InputError("--lr-scaling " + cfg.lr_scaling + ": expected none or linear");
  if (cfg.exchange != "ring" && !is_gossip_exchange(cfg.exchange))
    throw InputError("--exchange " + cfg.exchange + ": expected ring, dpsgd, matcha or adpsgd");
  if (cfg.window_scope != "global" && cfg.window_scope != "neighbors")
    throw InputError("--window-scope " + cfg.window_scope + ": expected global or neighbors");
  if (!cfg.profile.empty() && !cfg.slowdown.empty()) throw InputError("--profile and --slowdown: give one of them");
  if (cfg.cancel_at != "auto" && cfg.cancel_at != "kernel" && cfg.cancel_at != "minibatch")
    throw InputError("--cancel-at " + cfg.cancel_at + ": expected auto, kernel or minibatch");
}

// --cancel-at, resolved: kernel where the engine can stop at a kernel boundary (host
// workers on the real clock) or the virtual clock models it (--virtual-cancel-kernels).
void resolve_cancel(TrainConfig& cfg, Backend backend, bool virtual_clock) {
  const int k = cfg.model.cancel_kernels;
  if (virtual_clock) {
    if (cfg.cancel_at == "auto") cfg.cancel_at = k > 1 ? "kernel" : "minibatch";
    if (cfg.cancel_at == "kernel" && k <= 1)
      throw InputError("--cancel-at kernel on the virtual clock: give the kernels a mini-batch is cut at, "
                       "--virtual-cancel-kernels K (K > 1)");
    if (cfg.cancel_at == "minibatch" && k > 1)
      throw InputError(fmt::format("--virtual-cancel-kernels {}: models --cancel-at kernel, not minibatch", k));
    return;
  }
  if (cfg.cancel_at == "auto") cfg.cancel_at = backend == Backend::Host ? "kernel" : "minibatch";
  if (cfg.cancel_at == "kernel" && backend != Backend::Host)
    throw InputError("--cancel-at kernel: host workers only (on a GPU, cuDNN's and cuBLAS's kernels cannot read a "
                     "cancel flag, so a running mini-batch runs to its end; use --cancel-at minibatch)");
}

bool choose_clock(const TrainConfig& cfg, Backend backend) {
  if (cfg.clock == "auto") return backend == Backend::Host;
  if (cfg.clock == "virtual") {
    if (backend == Backend::Cuda)
      throw InputError("--clock virtual: the virtual clock runs on host workers only, not on GPUs "
                       "(use --clock real, or --host-workers N)");
    return true;
  }
  if (cfg.clock == "real") return false;
  throw InputError("--clock " + cfg.clock + ": expected auto, real or virtual");
}

// What only the virtual clock models, refused on the real clock naming the flag.
void check_real_clock(const TrainConfig& cfg, const ControllerConfig& ctl) {
  if (cfg.exchange == "adpsgd")
    throw InputError("--exchange adpsgd runs on the virtual clock only (host workers: --host-workers N --clock virtual)");
  if (ctl.window.kind != WindowKind::Sync && cfg.window_scope != "global")
    throw InputError("--window-scope " + cfg.window_scope + ": on the real clock the non-blocking gossip windows are "
                     "decided over all workers (--window-scope global); the neighbourhood scope runs on the virtual "
                     "clock (host workers: --host-workers N --clock virtual)");
}

straggler::ResolvedProfile resolve_profile(const TrainConfig& cfg, DeviceList& devices) {
  const int N = static_cast<int>(devices.devices.size());
  std::vector<std::string> names;
  for (const Device& dv : devices.devices) names.push_back(dv.name);
  const straggler::Profile prof =
      !cfg.profile.empty()
          ? straggler::load_profile(cfg.profile)
          : straggler::profile_from_slowdowns(cfg.slowdown.empty() ? std::vector<double>(N, 1.0)
                                                                    : straggler::parse_slowdowns(cfg.slowdown, N));
  straggler::ResolvedProfile p = straggler::resolve(prof, N, names);
  // A profile's sm_fraction makes a GPU worker an SM partition, as --devices 0:F does.
  for (int i = 0; i < N; ++i) {
    Device& dv = devices.devices[i];
    if (dv.backend == Backend::Cuda && p.devices[i].sm_fraction < 1.0 && dv.sm_fraction == 1.0) {
      dv.sm_fraction = p.devices[i].sm_fraction;
      dv.kind = "cuda-partition";
    }
  }
  return p;
}

}  // namespace

std::unique_ptr<Setup> make_setup(const TrainConfig& c, const std::function<void(const std::string&, bool)>& phase) {
  auto tell = [&](const std::string& what, bool done) {
    if (phase) phase(what, done);
  };
  check_flags(c);
  auto s = std::make_unique<Setup>();
  s->cfg = c;
  TrainConfig& cfg = s->cfg;

  DiscoverOptions d;
  d.host_workers = cfg.host_workers;
  s->devices = discover_devices(d);
  if (!cfg.devices.empty()) s->devices = select_devices(s->devices, cfg.devices);
  s->virtual_clock = choose_clock(cfg, s->devices.backend);
  resolve_cancel(cfg, s->devices.backend, s->virtual_clock);
  if (comm::launch().spans()) spread_over_ranks(*s, d);  // ranks.h: N workers over the launch's ranks
  const int N = static_cast<int>(s->devices.devices.size());
  check_workers(N, cfg.host_workers > 0 ? "--host-workers" : "--devices");

  s->ctl.window = parse_window(cfg.window);
  s->ctl.workers = N;
  s->ctl.batch = cfg.batch;
  s->ctl.split = cfg.split;
  s->ctl.cap = parse_cap(cfg.cap, s->ctl.window, cfg.split);
  s->ctl.adaptive_guard = cfg.adaptive_guard;
  validate_window(s->ctl.window, N, cfg.split);
  if (!s->virtual_clock) check_real_clock(cfg, s->ctl);
  if (cfg.window_scope == "neighbors" && (cfg.exchange == "ring" || cfg.exchange == "adpsgd"))
    throw InputError("--window-scope neighbors: applies to --exchange dpsgd and matcha only");
  if (is_gossip_exchange(cfg.exchange)) make_gossip_plan(cfg, N);  // refuses a bad topology before the data loads

  s->profile = resolve_profile(cfg, s->devices);

  // Data and workers (identical init on every replica: same seed).
  const std::string loading = cfg.data.rfind("synthetic", 0) == 0 ? "generating data " + cfg.data : "loading data " + cfg.data;
  tell(loading, false);
  s->data = load_data(cfg);
  tell(loading, true);
  const std::string building = fmt::format("building {} replica(s) of {}", N, cfg.net);
  tell(building, false);
  const int b = cfg.batch / cfg.split;
  const int host_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / N);
  for (int i = 0; i < N; ++i)
    s->workers.push_back(std::make_unique<Worker>(i, s->devices.devices[i],
                                                  s->virtual_clock ? ClockKind::Virtual : ClockKind::Real, cfg.net, b,
                                                  cfg.inflight + 2, cfg.seed, host_threads,
                                                  cfg.deterministic));
  if (cfg.gather == "device") {
    // One copy per device: workers on one GPU (SM partitions) or on the host share it.
    std::map<std::pair<Backend, int>, const DeviceData*> on;
    for (int i = 0; i < N; ++i) {
      const Device& dev = s->devices.devices[i];
      const auto key = std::make_pair(dev.backend, dev.backend == Backend::Host ? 0 : dev.ordinal);
      if (!on.count(key)) {
        on[key] = nullptr;
        if (DeviceData::fits(s->data.train, dev, &s->gather_note)) {
          s->device_data.push_back(std::make_unique<DeviceData>(s->data.train, dev));
          on[key] = s->device_data.back().get();
        }
      }
      s->workers[i]->use_data(on[key]);
    }
  }
  nets::Model& m0 = s->workers[0]->model();
  const data::Dataset& tr = s->data.train;
  if (m0.input_channels() != tr.c || m0.input_height() != tr.h || m0.input_width() != tr.w)
    throw InputError(fmt::format("--net {} takes {}x{}x{} inputs, but --data {} has {}x{}x{}", cfg.net,
                                 m0.input_channels(), m0.input_height(), m0.input_width(), cfg.data, tr.c, tr.h, tr.w));
  s->P = s->workers[0]->P();
  tell(building, true);
  s->flops = m0.flops_per_sample();
  cfg.model = duration_model_for_net(cfg.model, cfg.net);
  // A deadline without a cap must not hold more mini-batches than a step can track.
  check_window_size(s->ctl.window, s->ctl.cap, N, cfg.split, cfg.model.compute_s(s->flops, cfg.batch / cfg.split));

  const int64_t steps_per_epoch = std::max<int64_t>(1, tr.n / (int64_t(N) * cfg.batch));
  s->schedule = optim::parse_lr_schedule(cfg.lr_schedule, cfg.lr, steps_per_epoch);
  s->sgd.lr = cfg.lr;
  s->sgd.momentum = cfg.momentum;
  s->sgd.weight_decay = cfg.weight_decay;
  s->sgd.nesterov = cfg.nesterov;
  // Linear scaling: the step shrinks with the samples it used, n / (N*B) for the
  // centralised average; for a gossip worker, its own n_i / B.
  if (cfg.lr_scaling == "linear") s->sgd.count_ref = cfg.exchange == "ring" ? double(N) * cfg.batch : double(cfg.batch);

  // The ring's steps end together, so an --epochs run can stop the queue at the
  // last epoch's end. Gossip workers run ahead of each other: their queue never
  // runs dry, and the run stops at a step boundary once the epochs are complete.
  const bool bounded = cfg.exchange == "ring" && cfg.steps <= 0;
  s->queue = std::make_unique<data::EpochQueue>(tr.n, cfg.seed, cfg.shuffle, bounded ? cfg.epochs : -1);
  return s;
}

}  // namespace nbsgd::engine
