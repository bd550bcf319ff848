// Engine set-up, the run loop, metrics, checkpoints and resume.
#include "runtime/train/engine.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nets/checkpoint.h"
#include "nets/models.h"
#include "nets/data/fashion_mnist.h"
#include "nets/data/synthetic_cifar.h"
#include "runtime/device/check.h"
#include "runtime/train/engine_impl.h"

namespace nbsgd::engine {

namespace {

std::vector<double> parse_slowdowns(const std::string& text, int n) {
  std::vector<double> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    double x = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !std::isfinite(x) || x < 1.0)
      throw InputError("--slowdown " + text + ": '" + item + "' must be a number >= 1");
    v.push_back(x);
  }
  if (static_cast<int>(v.size()) != n)
    throw InputError("--slowdown " + text + ": " + std::to_string(v.size()) + " value(s) for " + std::to_string(n) +
                     " worker(s)");
  return v;
}

data::DataSplit load_data(const TrainConfig& c) {
  if (c.data == "fashion-mnist") return data::load_fashion_mnist(c.data_dir, c.train_limit > 0 ? c.train_limit : -1);
  if (c.data == "synthetic-cifar") {
    int64_t n = c.train_limit > 0 ? std::min(c.train_limit, c.synthetic_train) : c.synthetic_train;
    return data::make_synthetic_cifar(n, c.synthetic_test, c.seed);
  }
  throw InputError("--data " + c.data + ": unknown data set (fashion-mnist, synthetic-cifar)");
}

uint64_t fnv1a(const std::vector<float>& v) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(float); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

Engine::Impl::Impl(const TrainConfig& c) : cfg(c) {
  check_numbers(cfg);
  if (cfg.batch <= 0 || cfg.split <= 0) throw InputError("--batch and --split must be positive");
  if (cfg.batch % cfg.split != 0)
    throw InputError(fmt::format("--split {}: M must divide --batch B = {}", cfg.split, cfg.batch));
  if (cfg.inflight < 1) throw InputError("--inflight must be at least 1");
  if (cfg.lr_scaling != "none" && cfg.lr_scaling != "linear")
    throw InputError("--lr-scaling " + cfg.lr_scaling + ": expected none or linear");
  if (cfg.exchange != "ring")
    throw InputError("--exchange " + cfg.exchange + ": this engine runs ring (dpsgd, matcha, adpsgd: see nbsgd compare)");

  // Devices and clock.
  DiscoverOptions d;
  d.host_workers = cfg.host_workers;
  devices = discover_devices(d);
  if (!cfg.devices.empty()) devices = select_devices(devices, cfg.devices);
  if (cfg.clock == "auto") {
    virtual_clock = devices.backend == Backend::Host;
  } else if (cfg.clock == "virtual") {
    if (devices.backend == Backend::Cuda)
      throw InputError("--clock virtual: the virtual clock runs on host workers only, not on GPUs "
                       "(use --clock real, or --host-workers N)");
    virtual_clock = true;
  } else if (cfg.clock == "real") {
    virtual_clock = false;
  } else {
    throw InputError("--clock " + cfg.clock + ": expected auto, real or virtual");
  }
  const int N = static_cast<int>(devices.devices.size());

  // Window rules.
  ctl_cfg.window = parse_window(cfg.window);
  ctl_cfg.workers = N;
  ctl_cfg.batch = cfg.batch;
  ctl_cfg.split = cfg.split;
  ctl_cfg.cap = parse_cap(cfg.cap, ctl_cfg.window, cfg.split);
  ctl_cfg.adaptive_guard = cfg.adaptive_guard;

  // Straggler profile (--slowdown is its shorthand).
  std::vector<std::string> names;
  for (const Device& dv : devices.devices) names.push_back(dv.name);
  straggler::Profile prof;
  if (!cfg.profile.empty() && !cfg.slowdown.empty()) throw InputError("--profile and --slowdown: give one of them");
  if (!cfg.profile.empty()) {
    prof = straggler::load_profile(cfg.profile);
  } else {
    prof = straggler::profile_from_slowdowns(cfg.slowdown.empty() ? std::vector<double>(N, 1.0)
                                                                  : parse_slowdowns(cfg.slowdown, N));
  }
  profile = straggler::resolve(prof, N, names);
  // A profile's sm_fraction makes a GPU worker an SM partition, as --devices 0:F does.
  for (int i = 0; i < N; ++i) {
    Device& dv = devices.devices[i];
    if (dv.backend == Backend::Cuda && profile.devices[i].sm_fraction < 1.0 && dv.sm_fraction == 1.0) {
      dv.sm_fraction = profile.devices[i].sm_fraction;
      dv.kind = "cuda-partition";
    }
  }
  if (!virtual_clock && devices.backend == Backend::Host) {
    // Host workers on the real clock: slowdowns become real sleeps (see issue_real).
  }

  // Data and workers (identical init on every replica: same seed).
  data = load_data(cfg);
  if (cfg.test_limit > 0 && cfg.test_limit < data.test.n) {
    data.test.n = cfg.test_limit;
    data.test.images.resize(cfg.test_limit * data.test.sample_size());
    data.test.labels.resize(cfg.test_limit);
  }
  const int b = cfg.batch / cfg.split;
  const int host_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / N);
  for (int i = 0; i < N; ++i)
    workers.push_back(std::make_unique<Worker>(i, devices.devices[i], virtual_clock ? ClockKind::Virtual : ClockKind::Real,
                                               cfg.net, b, cfg.inflight + 2, cfg.seed, host_threads));
  // An SM partition without a green context runs on the whole GPU: the throttle
  // stands in for the SMs it should not have (DeviceContext::fallback_slowdown).
  for (int i = 0; i < N; ++i) {
    const double f = workers[i]->ctx().fallback_slowdown();
    if (f == 1.0) continue;
    auto& fn = profile.devices[i].slowdown_fn;
    fn.base *= f;
    for (auto& seg : fn.segments) seg.value *= f;
  }
  nets::Model& m0 = workers[0]->model();
  if (m0.input_channels() != data.train.c || m0.input_height() != data.train.h || m0.input_width() != data.train.w)
    throw InputError(fmt::format("--net {} takes {}x{}x{} inputs, but --data {} has {}x{}x{}", cfg.net,
                                 m0.input_channels(), m0.input_height(), m0.input_width(), cfg.data, data.train.c,
                                 data.train.h, data.train.w));
  P = workers[0]->P();
  flops = m0.flops_per_sample();
  cfg.model = duration_model_for_net(cfg.model, cfg.net);

  std::vector<DeviceContext*> ctxs;
  for (auto& w : workers) ctxs.push_back(&w->ctx());
  allreduce = comm::make_all_reduce(ctxs);

  const int64_t steps_per_epoch = std::max<int64_t>(1, data.train.n / (int64_t(N) * cfg.batch));
  schedule = optim::parse_lr_schedule(cfg.lr_schedule, cfg.lr, steps_per_epoch);
  sgd.lr = cfg.lr;
  sgd.momentum = cfg.momentum;
  sgd.weight_decay = cfg.weight_decay;
  sgd.nesterov = cfg.nesterov;
  sgd.count_ref = cfg.lr_scaling == "linear" ? double(N) * cfg.batch : 0.0;

  queue = std::make_unique<data::EpochQueue>(data.train.n, cfg.seed, cfg.shuffle, cfg.steps > 0 ? -1 : cfg.epochs);
  readback = Buffer::pinned(devices.backend, readback_slots * 2 * sizeof(float));
  for (int i = 0; i < readback_slots; ++i) readback_events.push_back(workers[0]->ctx().event());

  if (virtual_clock) {
    TimelineConfig tc;
    tc.controller = ctl_cfg;
    tc.model = cfg.model;
    tc.flops_per_sample = flops;
    tc.exchange_bytes = (P + 2) * sizeof(float);
    tc.params = P;
    timeline = std::make_unique<VirtualTimeline>(tc, profile);
  } else {
    controller = std::make_unique<StepController>(ctl_cfg);
    rs.inflight.assign(N, 0);
    rs.next_slot.assign(N, 0);
    for (auto& w : workers) {
      flags.push_back(Buffer::mapped(w->ctx().backend(), w->slots() * sizeof(int)));
      stamps.push_back(Buffer(w->ctx().backend(), w->ctx().device().ordinal, w->slots() * sizeof(uint64_t)));
    }
    for (int i = 0; i < N; ++i) issuers.emplace_back([this, i] { issuer_loop(i); });
  }
  if (!cfg.resume.empty()) load_checkpoint(cfg.resume);
}

Engine::Impl::~Impl() {
  {
    std::lock_guard<std::mutex> lk(m);
    shutting_down = true;
  }
  cv.notify_all();
  for (auto& t : issuers) t.join();
  for (auto& w : workers) {
    try {
      w->ctx().compute().synchronize();
      w->ctx().comm().synchronize();
      w->ctx().copy().synchronize();
    } catch (const std::exception& e) {
      log_error(__FILE__, __LINE__, w->index(), "~Engine", e.what());
    }
  }
}

// ------------------------------------------------------------------ checkpoints
std::vector<nbsgd::TensorView> Engine::Impl::tensor_views(const std::vector<float>& params, const std::vector<float>& bn,
                                                          const std::vector<float>& mom) const {
  std::vector<nbsgd::TensorView> v;
  const nets::Model& model = workers[0]->model();
  for (const auto& t : model.param_info()) v.push_back({t.name, t.shape, params.data() + t.offset});
  for (const auto& t : model.buffer_info()) v.push_back({t.name, t.shape, bn.data() + t.offset});
  for (const auto& t : model.param_info()) v.push_back({"momentum." + t.name, t.shape, mom.data() + t.offset});
  return v;
}

void Engine::Impl::save_checkpoint(const std::string& path, double clock_s) {
  Worker& w0 = *workers[0];
  std::vector<float> params = w0.download_params(), bn = w0.download_bn(), mom = w0.download_momentum();
  nlohmann::json tl;
  if (timeline) tl = {{"now", timeline->now()}, {"free_at", timeline->free_at()}, {"rates", timeline->controller().rates()}};
  std::map<std::string, std::string> meta{
      {"nbsgd.net", w0.model().description()},
      {"nbsgd.step", std::to_string(step)},
      {"nbsgd.epoch", std::to_string(queue->current_epoch())},
      {"nbsgd.seed", std::to_string(cfg.seed)},
      {"nbsgd.queue", queue->save_state()},
      {"nbsgd.timeline", tl.dump()},
      {"nbsgd.clock_s", fmt::format("{:.17g}", clock_s)},
      {"nbsgd.samples_total", std::to_string(samples_total)},
      {"nbsgd.config", config_json(cfg)},
      {"format", "pt"},
  };
  save_safetensors(path, tensor_views(params, bn, mom), meta);
}

void Engine::Impl::load_checkpoint(const std::string& path) {
  LoadedTensors t = load_safetensors(path);
  Worker& w0 = *workers[0];
  auto meta = [&](const char* key) -> const std::string& {
    auto it = t.metadata.find(key);
    if (it == t.metadata.end()) throw InputError("checkpoint " + path + ": no '" + key + "' in its metadata");
    return it->second;
  };
  if (meta("nbsgd.net") != w0.model().description())
    throw InputError("checkpoint " + path + " was made for another net: " + meta("nbsgd.net") + ", this run is " +
                     w0.model().description());
  std::vector<float> params(P), bn(w0.model().num_bn_buffers()), mom(P);
  check_matches(t, tensor_views(params, bn, mom), path);
  auto fill = [&](const std::string& name, std::vector<float>& dst, size_t offset) {
    const auto& v = t.tensors.at(name).second;
    std::copy(v.begin(), v.end(), dst.begin() + offset);
  };
  for (const auto& p : w0.model().param_info()) {
    fill(p.name, params, p.offset);
    fill("momentum." + p.name, mom, p.offset);
  }
  for (const auto& b : w0.model().buffer_info()) fill(b.name, bn, b.offset);
  for (auto& w : workers) {
    w->upload_params(params);
    w->upload_momentum(mom);
    w->upload_bn(bn);
  }
  try {
    step = std::stoll(meta("nbsgd.step"));
    resumed_clock = std::stod(meta("nbsgd.clock_s"));
    samples_total = std::stoll(meta("nbsgd.samples_total"));
    *queue = data::EpochQueue::restore(meta("nbsgd.queue"));
  } catch (const InputError& e) {
    throw InputError("checkpoint " + path + ": " + e.what());
  } catch (const std::exception& e) {
    throw InputError("checkpoint " + path + ": bad run state in its metadata (" + e.what() + ")");
  }
  if (queue->dataset_size() != data.train.n)
    throw InputError(fmt::format("checkpoint {}: made for a training set of {} samples, this one has {}", path,
                                 queue->dataset_size(), data.train.n));
  if (timeline) {
    auto tl = nlohmann::json::parse(meta("nbsgd.timeline"), nullptr, false);
    if (tl.is_discarded() || !tl.contains("now"))
      throw InputError("checkpoint " + path + ": it was written by a real-clock run; resume it with --clock real");
    timeline->restore(tl["now"].get<double>(), tl["free_at"].get<std::vector<double>>(),
                      tl["rates"].get<std::vector<double>>());
  }
}

// ------------------------------------------------------------------ run loop
RunSummary Engine::Impl::run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop) {
  RunSummary sum;
  const double wall0 = steady_now_s();
  clock_base = wall0 - resumed_clock;
  std::deque<std::pair<StepResult, int>> pending;  // waiting for their loss read-back
  std::deque<std::pair<double, double>> recent;    // (loss_sum, n) of the last steps, for the target
  double recent_loss = 0, recent_n = 0;
  double last_loss = std::nan("");
  int consecutive_empty = 0;

  auto emit = [&](const StepResult& r, int slot) {
    const float* rb = readback.as<float>() + 2 * slot;
    StepRecord rec;
    rec.step = r.step;
    rec.epoch = r.epoch;
    rec.t = r.t_end;
    rec.samples = static_cast<int64_t>(rb[0]);
    rec.loss = rec.samples > 0 ? rb[1] / rb[0] : std::nan("");
    rec.lr = r.lr;
    rec.finished = r.finished;
    rec.delay_s = r.delay_s;
    rec.window_s = r.window_s;
    rec.skipped = rec.samples == 0;
    NBSGD_CHECK(rec.samples == r.samples, fmt::format("step {}: the exchanged count {} differs from the window's {}",
                                                      r.step, rec.samples, r.samples));
    if (rec.skipped) {
      ++sum.skipped_steps;
    } else {
      last_loss = rec.loss;
      recent.emplace_back(rb[1], rb[0]);
      recent_loss += rb[1];
      recent_n += rb[0];
      if (recent.size() > 10) {
        recent_loss -= recent.front().first;
        recent_n -= recent.front().second;
        recent.pop_front();
      }
      if (cfg.target_loss > 0 && !time_to_target && recent_n > 0 && recent_loss / recent_n <= cfg.target_loss)
        time_to_target = rec.t;
    }
    sum.wasted_minibatches += r.wasted;
    on_step(rec);
  };
  auto drain = [&](bool all) {
    while (!pending.empty()) {
      const int slot = pending.front().second;
      if (all || pending.size() >= static_cast<size_t>(readback_slots - 1)) {
        readback_events[slot].synchronize();
      } else if (!readback_events[slot].query()) {
        break;
      }
      emit(pending.front().first, slot);
      pending.pop_front();
    }
  };

  for (;;) {
    if (cfg.steps > 0 && step >= cfg.steps) break;
    if (cfg.steps <= 0 && queue->epoch_complete(cfg.epochs - 1)) break;
    if (cfg.stop_at_target && time_to_target) break;
    if (stop && stop->load()) {
      sum.interrupted = true;
      break;
    }
    StepResult r;
    r.step = step;
    const int slot = static_cast<int>(step % readback_slots);
    if (virtual_clock) {
      step_virtual(r);
    } else {
      step_real(r);
    }
    workers[0]->ctx().comm().record(readback_events[slot]);
    samples_total += r.samples;
    ++step;
    if (virtual_clock) workers[0]->ctx().comm().synchronize();
    // A window no mini-batch fits in (e.g. a deadline shorter than one) would spin
    // forever on skipped steps: stop with the reason. (Read before the step moves
    // into `pending`: drain() may emit and pop it at once.)
    consecutive_empty = r.samples == 0 ? consecutive_empty + 1 : 0;
    pending.emplace_back(std::move(r), slot);
    drain(false);
    if (consecutive_empty >= 100)
      throw InputError(fmt::format("--window {}: no worker finished a mini-batch in 100 consecutive steps "
                                   "(the window is shorter than one mini-batch)", cfg.window));
    if (cfg.check_replicas_every > 0 && step % cfg.check_replicas_every == 0) {
      drain(true);
      auto h = replica_hashes();
      for (size_t i = 1; i < h.size(); ++i)
        NBSGD_CHECK(h[i] == h[0], fmt::format("replica {} diverged from replica 0 at step {}", i, step));
    }
    if (cfg.eval_every > 0 && step % cfg.eval_every == 0) {
      drain(true);
      auto [l, a] = workers[0]->evaluate(data.test, 256);
      if (!cfg.quiet) std::fprintf(stderr, "eval step %lld: test loss %.4f accuracy %.4f\n", (long long)step, l, a);
    }
    if (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 && !cfg.out_dir.empty()) {
      drain(true);
      save_checkpoint(cfg.out_dir + "/checkpoint.safetensors", current_clock());
    }
  }
  drain(true);
  for (auto& w : workers) {
    w->ctx().compute().synchronize();
    w->ctx().comm().synchronize();
  }
  sum.steps = step;
  sum.samples = samples_total;
  sum.wall_s = steady_now_s() - wall0;
  sum.clock_s = current_clock();
  sum.samples_per_s = sum.clock_s > 0 ? sum.samples / sum.clock_s : 0;
  sum.final_train_loss = recent_n > 0 ? recent_loss / recent_n : last_loss;
  sum.time_to_target_s = time_to_target;
  for (int64_t e = 0; e <= queue->current_epoch(); ++e) {
    if (queue->epoch_complete(e)) {
      sum.samples_per_epoch.push_back(queue->samples_committed(e));
    } else {
      sum.partial_epoch_samples += queue->samples_committed(e);
    }
  }
  sum.epochs_completed = static_cast<int64_t>(sum.samples_per_epoch.size());
  auto [tl, ta] = workers[0]->evaluate(data.test, 256);
  sum.test_loss = tl;
  sum.test_accuracy = ta;
  return sum;
}

double Engine::Impl::current_clock() const {
  return virtual_clock ? timeline->now() : steady_now_s() - clock_base;
}

// ------------------------------------------------------------------ Engine
Engine::Engine(const TrainConfig& cfg) : impl_(std::make_unique<Impl>(cfg)) {}
Engine::~Engine() = default;

RunSummary Engine::run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop) {
  return impl_->run(on_step, stop);
}
void Engine::save_checkpoint(const std::string& path) const { impl_->save_checkpoint(path, impl_->current_clock()); }
const TrainConfig& Engine::config() const { return impl_->cfg; }
int Engine::workers() const { return impl_->n(); }
size_t Engine::num_params() const { return impl_->P; }
double Engine::flops_per_sample() const { return impl_->flops; }
bool Engine::virtual_clock() const { return impl_->virtual_clock; }
const DeviceList& Engine::devices() const { return impl_->devices; }

std::vector<uint64_t> Engine::Impl::replica_hashes() const {
  std::vector<uint64_t> h;
  for (auto& w : workers) h.push_back(fnv1a(w->download_params()));
  return h;
}
std::vector<uint64_t> Engine::replica_hashes() const { return impl_->replica_hashes(); }

std::string Engine::describe() const {
  const Impl& i = *impl_;
  std::string s = fmt::format(
      "nbsgd train: net {} ({} parameters, {:.3g} MFLOP/sample), data {} ({} train / {} test)\n"
      "  exchange {}, window {}, cap {}, batch {} per worker in {} mini-batches of {}, inflight {}\n"
      "  lr {} ({}), momentum {}, weight decay {}{}, lr scaling {}, seed {}, clock {}\n",
      i.cfg.net, i.P, i.flops * 1e-6, i.cfg.data, i.data.train.n, i.data.test.n, i.cfg.exchange, i.cfg.window,
      i.ctl_cfg.cap < 0 ? std::string("none") : std::to_string(i.ctl_cfg.cap), i.cfg.batch, i.cfg.split,
      i.cfg.batch / i.cfg.split, i.cfg.inflight, i.cfg.lr, i.schedule.describe(), i.cfg.momentum, i.cfg.weight_decay,
      i.cfg.nesterov ? ", nesterov" : "", i.cfg.lr_scaling, i.cfg.seed, i.virtual_clock ? "virtual" : "real");
  if (i.virtual_clock)
    s += fmt::format("  virtual clock: {:g} GFLOP/s, {:.4g} us launch overhead per mini-batch, link {:g} GB/s + {:g} us\n",
                     i.cfg.model.gflops, i.cfg.model.launch_overhead_s * 1e6, i.cfg.model.link_gbps,
                     i.cfg.model.link_latency_s * 1e6);
  s += fmt::format("  devices ({}):\n", to_string(i.devices.backend));
  for (size_t k = 0; k < i.devices.devices.size(); ++k) {
    const Device& d = i.devices.devices[k];
    s += fmt::format("    {:>2} {:<24} {}\n", d.index, d.name, i.profile.devices[k].describe());
  }
  return s;
}

}  // namespace nbsgd::engine
