// GossipEngine: set-up, the D-PSGD / MATCHA step (timeline, then the math for what
// counted), the run loop, metrics and the averaged model.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "nets/checkpoint.h"
#include "nets/data/fashion_mnist.h"
#include "nets/data/synthetic_cifar.h"
#include "nets/optim/commit.h"
#include "runtime/device/check.h"
#include "runtime/train/gossip_engine_impl.h"
#include "runtime/train/gossip/matcha.h"

namespace nbsgd::engine {

bool is_gossip_exchange(const std::string& e) { return e == "dpsgd" || e == "matcha" || e == "adpsgd"; }

namespace {

std::vector<double> parse_slowdowns(const std::string& text, int n) {
  std::vector<double> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double x = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !std::isfinite(x) || x < 1.0)
      throw InputError("--slowdown " + text + ": '" + item + "' must be a number >= 1");
    v.push_back(x);
  }
  if (static_cast<int>(v.size()) != n)
    throw InputError(fmt::format("--slowdown {}: {} value(s) for {} worker(s)", text, v.size(), n));
  return v;
}

data::DataSplit load_data(const TrainConfig& c) {
  if (c.data == "fashion-mnist") return data::load_fashion_mnist(c.data_dir, c.train_limit > 0 ? c.train_limit : -1);
  if (c.data == "synthetic-cifar") {
    const int64_t n = c.train_limit > 0 ? std::min(c.train_limit, c.synthetic_train) : c.synthetic_train;
    return data::make_synthetic_cifar(n, c.synthetic_test, c.seed);
  }
  throw InputError("--data " + c.data + ": unknown data set (fashion-mnist, synthetic-cifar)");
}

}  // namespace

void LossTracker::add(double loss_sum, double count) {
  if (count <= 0) return;
  last = loss_sum / count;
  recent.emplace_back(loss_sum, count);
  loss += loss_sum;
  n += count;
  if (recent.size() > 10) {
    loss -= recent.front().first;
    n -= recent.front().second;
    recent.pop_front();
  }
}

GossipEngine::Impl::Impl(const TrainConfig& c) : cfg(c) {
  if (!is_gossip_exchange(cfg.exchange))
    throw InputError("--exchange " + cfg.exchange + ": the gossip engine runs dpsgd, matcha or adpsgd");
  check_numbers(cfg);
  if (cfg.batch <= 0 || cfg.split <= 0) throw InputError("--batch and --split must be positive");
  if (cfg.batch % cfg.split != 0)
    throw InputError(fmt::format("--split {}: M must divide --batch B = {}", cfg.split, cfg.batch));
  if (cfg.lr_scaling != "none" && cfg.lr_scaling != "linear")
    throw InputError("--lr-scaling " + cfg.lr_scaling + ": expected none or linear");
  if (cfg.window_scope != "global" && cfg.window_scope != "neighbors")
    throw InputError("--window-scope " + cfg.window_scope + ": expected global or neighbors");
  if (!cfg.resume.empty())
    throw InputError("--resume: --exchange " + cfg.exchange + " runs cannot be resumed (they checkpoint the averaged model)");
  if (cfg.checkpoint_every > 0)
    throw InputError("--checkpoint-every: --exchange " + cfg.exchange + " saves only the final averaged model");

  DiscoverOptions d;
  d.host_workers = cfg.host_workers;
  devices = discover_devices(d);
  if (!cfg.devices.empty()) devices = select_devices(devices, cfg.devices);
  // The virtual clock models every variant; the real clock (GPUs, or --clock real)
  // runs the blocking baselines dpsgd/matcha --window sync without a global barrier
  // (gossip_real.cpp). The non-blocking gossip windows and AD-PSGD need per-worker
  // windows decided from live completions: virtual clock only.
  if (cfg.clock == "auto") {
    real_clock = devices.backend != Backend::Host;
  } else if (cfg.clock == "virtual") {
    if (devices.backend != Backend::Host)
      throw InputError("--clock virtual: the virtual clock runs on host workers only, not on GPUs "
                       "(use --clock real, or --host-workers N)");
  } else if (cfg.clock == "real") {
    real_clock = true;
  } else {
    throw InputError("--clock " + cfg.clock + ": expected auto, real or virtual");
  }
  if (real_clock && cfg.exchange == "adpsgd")
    throw InputError("--exchange adpsgd runs on the virtual clock only (host workers: --host-workers N --clock virtual)");
  if (real_clock && parse_window(cfg.window).kind != WindowKind::Sync && cfg.window_scope != "global")
    throw InputError("--window-scope " + cfg.window_scope + ": on the real clock the non-blocking gossip windows are "
                     "decided over all workers (--window-scope global); the neighbourhood scope runs on the virtual "
                     "clock (host workers: --host-workers N --clock virtual)");
  const int N = static_cast<int>(devices.devices.size());

  ctl_cfg.window = parse_window(cfg.window);
  ctl_cfg.workers = N;
  ctl_cfg.batch = cfg.batch;
  ctl_cfg.split = cfg.split;
  ctl_cfg.cap = parse_cap(cfg.cap, ctl_cfg.window, cfg.split);
  ctl_cfg.adaptive_guard = cfg.adaptive_guard;

  graph = gossip::parse_topology(cfg.topology, N);
  if (cfg.exchange == "matcha") {
    plan = gossip::make_matcha_plan(graph, cfg.budget);
  } else {
    plan = gossip::make_dpsgd_plan(graph);
  }

  std::vector<std::string> names;
  for (const Device& dv : devices.devices) names.push_back(dv.name);
  if (!cfg.profile.empty() && !cfg.slowdown.empty()) throw InputError("--profile and --slowdown: give one of them");
  straggler::Profile prof =
      !cfg.profile.empty()
          ? straggler::load_profile(cfg.profile)
          : straggler::profile_from_slowdowns(cfg.slowdown.empty() ? std::vector<double>(N, 1.0)
                                                                    : parse_slowdowns(cfg.slowdown, N));
  profile = straggler::resolve(prof, N, names);

  data = load_data(cfg);
  if (cfg.test_limit > 0 && cfg.test_limit < data.test.n) {
    data.test.n = cfg.test_limit;
    data.test.images.resize(cfg.test_limit * data.test.sample_size());
    data.test.labels.resize(cfg.test_limit);
  }
  const int b = cfg.batch / cfg.split;
  const int host_threads =
      real_clock ? std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / N) : 1;
  for (int i = 0; i < N; ++i)
    workers.push_back(std::make_unique<Worker>(i, devices.devices[i], real_clock ? ClockKind::Real : ClockKind::Virtual,
                                               cfg.net, b, std::max(cfg.inflight, 1) + 2, cfg.seed, host_threads));
  if (real_clock) {
    for (auto& w : workers)
      stamps.push_back(Buffer(w->ctx().backend(), w->ctx().device().ordinal, w->slots() * sizeof(uint64_t)));
    // An SM partition without a green context runs on the whole GPU: the throttle
    // stands in for the SMs it should not have (as Engine does).
    for (int i = 0; i < N; ++i) {
      const double f = workers[static_cast<size_t>(i)]->ctx().fallback_slowdown();
      if (f == 1.0) continue;
      auto& fn = profile.devices[static_cast<size_t>(i)].slowdown_fn;
      fn.base *= f;
      for (auto& seg : fn.segments) seg.value *= f;
    }
  }
  nets::Model& m0 = workers[0]->model();
  if (m0.input_channels() != data.train.c || m0.input_height() != data.train.h || m0.input_width() != data.train.w)
    throw InputError(fmt::format("--net {} takes {}x{}x{} inputs, but --data {} has {}x{}x{}", cfg.net,
                                 m0.input_channels(), m0.input_height(), m0.input_width(), cfg.data, data.train.c,
                                 data.train.h, data.train.w));
  P = workers[0]->P();
  flops = m0.flops_per_sample();
  cfg.model = duration_model_for_net(cfg.model, cfg.net);  // launch overhead from the net, as Engine does
  std::vector<DeviceContext*> ctxs;
  for (auto& w : workers) ctxs.push_back(&w->ctx());
  exchange = comm::make_gossip_exchange(ctxs);

  const int64_t steps_per_epoch = std::max<int64_t>(1, data.train.n / (int64_t(N) * cfg.batch));
  schedule = optim::parse_lr_schedule(cfg.lr_schedule, cfg.lr, steps_per_epoch);
  sgd.lr = cfg.lr;
  sgd.momentum = cfg.momentum;
  sgd.weight_decay = cfg.weight_decay;
  sgd.nesterov = cfg.nesterov;
  // Linear scaling per worker: its step shrinks with the samples it finished, n_i / B.
  sgd.count_ref = cfg.lr_scaling == "linear" ? double(cfg.batch) : 0.0;

  // Never exhausted: the run stops at step boundaries (as Engine with --steps).
  queue = std::make_unique<data::EpochQueue>(data.train.n, cfg.seed, cfg.shuffle, -1);
  readback = Buffer::pinned(devices.backend, size_t(2 * N) * sizeof(float));

  if (!adpsgd() && !real_clock) {
    GossipTimelineConfig tc;
    tc.controller = ctl_cfg;
    tc.neighbors_scope = cfg.window_scope == "neighbors";
    tc.model = cfg.model;
    tc.flops_per_sample = flops;
    tc.model_bytes = P * sizeof(float);
    tc.params = P;
    auto take = [this](int, int size, int& actual) -> int64_t {
      auto mb = queue->take(size);
      if (!mb) {
        actual = 0;
        return -1;
      }
      actual = static_cast<int>(mb->indices.size());
      handed.emplace(next_handle, std::move(*mb));
      return next_handle++;
    };
    auto give_back = [this](int64_t h) {
      auto it = handed.find(h);
      NBSGD_CHECK(it != handed.end(), "gossip: unknown mini-batch handle");
      queue->give_back(std::move(it->second));
      handed.erase(it);
    };
    timeline = std::make_unique<GossipTimeline>(
        tc, profile, [this](int64_t s) -> const std::vector<std::vector<int>>& { return neighbours(s); }, take,
        give_back);
  }
}

GossipEngine::Impl::~Impl() {
  for (auto& w : workers) {
    try {
      w->ctx().compute().synchronize();
      w->ctx().comm().synchronize();
      w->ctx().copy().synchronize();
    } catch (const std::exception& e) {
      log_error(__FILE__, __LINE__, w->index(), "~GossipEngine", e.what());
    }
  }
}

const comm::MixWeights& GossipEngine::Impl::weights(int64_t s) const {
  auto it = weights_cache.find(s);
  if (it != weights_cache.end()) return it->second;
  auto w = gossip::step_weights(plan, gossip::active_matchings(plan, cfg.seed, s));
  return weights_cache.emplace(s, std::move(w)).first->second;
}

const std::vector<std::vector<int>>& GossipEngine::Impl::neighbours(int64_t s) const {
  auto it = neighbours_cache.find(s);
  if (it != neighbours_cache.end()) return it->second;
  std::vector<std::vector<int>> nb(static_cast<size_t>(n()));
  const auto& w = weights(s);
  for (int i = 0; i < n(); ++i)
    for (auto [j, wij] : w[static_cast<size_t>(i)])
      if (j != i) nb[static_cast<size_t>(i)].push_back(j);
  return neighbours_cache.emplace(s, std::move(nb)).first->second;
}

// ------------------------------------------------------------------ one step
StepRecord GossipEngine::Impl::gossip_step(RunSummary& sum, double& clock) {
  const int N = n();
  StepRecord rec;
  rec.step = step;
  rec.epoch = queue->current_epoch();
  GossipStepOutcome o = timeline->finish_step(step);

  // The math for every counted mini-batch, on the worker's own replica x_i(t).
  std::vector<Event> ready;
  for (int i = 0; i < N; ++i) {
    Worker& w = *workers[i];
    const GossipWorkerStep& r = o.workers[static_cast<size_t>(i)];
    int used = 0;
    for (const GossipMiniBatch& mb : r.minibatches) {
      if (!mb.counted) {
        ++sum.wasted_minibatches;
        continue;
      }
      auto it = handed.find(mb.handle);
      NBSGD_CHECK(it != handed.end(), "gossip: counted mini-batch without its samples");
      const int k = used++ % w.slots();
      w.stage_and_compute(k, data.train, it->second.indices);
      optim::commit(w.ctx().compute(), w.slot(k).scratch.as<float>(), w.accumulator(), P);
      w.ctx().compute().record(w.slot(k).done);
      queue->commit(it->second);
      handed.erase(it);
    }
    NBSGD_CHECK(used == r.finished, "gossip: counted mini-batches differ from the window's count");
    Stream& cs = w.ctx().compute();
    cs.wait(w.update_done);
    copy_async(cs, readback.as<float>() + 2 * i, w.accumulator() + P, 2 * sizeof(float));
    rec.finished.push_back(r.finished);
    rec.delay_s.push_back(r.delay_s);
    rec.window_s = std::max(rec.window_s, r.close - r.start);
  }
  rec.lr = schedule.lr_at(step);
  std::vector<float*> x, acc;
  for (auto& w : workers) {
    x.push_back(w->params());
    acc.push_back(w->accumulator());
  }
  const comm::MixWeights& W = weights(step);
  const bool fused = cfg.momentum == 0.0 && sgd.count_ref == 0.0;
  for (auto& w : workers) {
    if (!fused)
      optim::fused_sgd_update(w->ctx().compute(), w->params(), w->momentum(), w->accumulator(), P,
                              static_cast<float>(rec.lr), sgd, 1.0f);
    ready.push_back(w->ctx().event());
    w->ctx().compute().record(ready.back());
  }
  std::vector<const Event*> rp;
  for (auto& e : ready) rp.push_back(&e);
  if (fused) {
    comm::GossipStep gs;
    gs.lr = static_cast<float>(rec.lr);
    gs.weight_decay = static_cast<float>(cfg.weight_decay);
    exchange->fused_gossip_sgd(x, acc, P, gs, W, rp);
  } else {
    exchange->mix(x, P, W, rp);
  }
  for (auto& w : workers) w->ctx().comm().record(w->update_done);
  for (auto& w : workers) w->ctx().comm().synchronize();

  double loss_sum = 0, count = 0;
  for (int i = 0; i < N; ++i) {
    count += readback.as<float>()[2 * i];
    loss_sum += readback.as<float>()[2 * i + 1];
  }
  rec.samples = static_cast<int64_t>(count);
  rec.loss = count > 0 ? loss_sum / count : std::nan("");
  rec.skipped = count == 0;
  rec.t = o.end();
  rec.consensus = consensus(replicas());
  clock = std::max(clock, rec.t);
  if (rec.skipped) ++sum.skipped_steps;
  losses.add(loss_sum, count);
  // Forget what the timeline will not ask for again.
  weights_cache.erase(weights_cache.begin(), weights_cache.lower_bound(step + 1));
  neighbours_cache.erase(neighbours_cache.begin(), neighbours_cache.lower_bound(step + 1));
  return rec;
}

// ------------------------------------------------------------------ run loop
RunSummary GossipEngine::Impl::run(const std::function<void(const StepRecord&)>& on_step,
                                   const std::atomic<bool>* stop) {
  RunSummary sum;
  const double wall0 = steady_now_s();
  double clock = 0;
  int consecutive_empty = 0;
  auto stop_now = [&] {
    if (cfg.steps > 0 && step >= cfg.steps) return true;
    if (cfg.steps <= 0 && queue->epoch_complete(cfg.epochs - 1)) return true;
    if (cfg.stop_at_target && time_to_target) return true;
    if (stop && stop->load()) {
      sum.interrupted = true;
      return true;
    }
    return false;
  };
  // Book-keeping after every step (both kinds); false ends the run.
  auto emit = [&](const StepRecord& rec) {
    samples_total += rec.samples;
    ++step;
    if (!rec.skipped && cfg.target_loss > 0 && !time_to_target && losses.n > 0 && losses.mean() <= cfg.target_loss)
      time_to_target = rec.t;
    on_step(rec);
    consecutive_empty = rec.samples == 0 ? consecutive_empty + 1 : 0;
    if (consecutive_empty >= 100)
      throw InputError(fmt::format("--window {}: no worker finished a mini-batch in 100 consecutive steps "
                                   "(the window is shorter than one mini-batch)", cfg.window));
    if (cfg.eval_every > 0 && step % cfg.eval_every == 0 && !cfg.quiet) {
      auto [l, a] = evaluate_average();
      std::fprintf(stderr, "eval step %lld: averaged model test loss %.4f accuracy %.4f\n", (long long)step, l, a);
    }
    return !stop_now();
  };
  if (adpsgd()) {
    if (!stop_now()) run_adpsgd(sum, clock, emit);
  } else if (real_clock) {
    run_real(sum, clock, emit, stop, wall0);
  } else {
    while (!stop_now()) {
      if (!emit(gossip_step(sum, clock))) break;
    }
  }
  for (auto& w : workers) {
    w->ctx().compute().synchronize();
    w->ctx().comm().synchronize();
  }
  sum.steps = step;
  sum.samples = samples_total;
  sum.wall_s = steady_now_s() - wall0;
  sum.clock_s = clock;
  sum.samples_per_s = clock > 0 ? samples_total / clock : 0;
  sum.final_train_loss = losses.mean();
  sum.time_to_target_s = time_to_target;
  for (int64_t e = 0; e <= queue->current_epoch(); ++e) {
    if (queue->epoch_complete(e)) {
      sum.samples_per_epoch.push_back(queue->samples_committed(e));
    } else {
      sum.partial_epoch_samples += queue->samples_committed(e);
    }
  }
  sum.epochs_completed = static_cast<int64_t>(sum.samples_per_epoch.size());
  auto [tl, ta] = evaluate_average();
  sum.test_loss = tl;
  sum.test_accuracy = ta;
  return sum;
}

// ------------------------------------------------------------------ replicas
std::vector<std::vector<float>> GossipEngine::Impl::replicas() const {
  std::vector<std::vector<float>> x;
  for (auto& w : workers) x.push_back(w->download_params());
  return x;
}

std::vector<float> GossipEngine::Impl::average(const std::vector<std::vector<float>>& x) const {
  std::vector<double> s(P, 0.0);
  for (const auto& xi : x)
    for (size_t e = 0; e < P; ++e) s[e] += xi[e];
  std::vector<float> avg(P);
  for (size_t e = 0; e < P; ++e) avg[e] = static_cast<float>(s[e] / double(x.size()));
  return avg;
}

double GossipEngine::Impl::consensus(const std::vector<std::vector<float>>& x) const {
  std::vector<double> mean(P, 0.0);
  for (const auto& xi : x)
    for (size_t e = 0; e < P; ++e) mean[e] += xi[e];
  for (double& m : mean) m /= double(x.size());
  double d = 0;
  for (const auto& xi : x)
    for (size_t e = 0; e < P; ++e) d += (xi[e] - mean[e]) * (xi[e] - mean[e]);
  return d / double(x.size());
}

// Evaluates x_bar on worker 0, then puts its own replica back.
std::pair<double, double> GossipEngine::Impl::evaluate_average() {
  Worker& w0 = *workers[0];
  auto x = replicas();
  w0.upload_params(average(x));
  auto r = w0.evaluate(data.test, 256);
  w0.upload_params(x[0]);
  return r;
}

// ------------------------------------------------------------------ GossipEngine
GossipEngine::GossipEngine(const TrainConfig& cfg) : impl_(std::make_unique<Impl>(cfg)) {}
GossipEngine::~GossipEngine() = default;

RunSummary GossipEngine::run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop) {
  return impl_->run(on_step, stop);
}
const TrainConfig& GossipEngine::config() const { return impl_->cfg; }
int GossipEngine::workers() const { return impl_->n(); }
bool GossipEngine::virtual_clock() const { return !impl_->real_clock; }
size_t GossipEngine::num_params() const { return impl_->P; }
const DeviceList& GossipEngine::devices() const { return impl_->devices; }
std::vector<std::vector<float>> GossipEngine::replicas() const { return impl_->replicas(); }
void GossipEngine::set_replica(int i, const std::vector<float>& p) {
  NBSGD_CHECK(i >= 0 && i < impl_->n(), "set_replica: no such worker");
  impl_->workers[static_cast<size_t>(i)]->upload_params(p);
}
std::vector<std::vector<std::pair<int, double>>> GossipEngine::step_weights(int64_t s) const {
  return gossip::step_weights(impl_->plan, gossip::active_matchings(impl_->plan, impl_->cfg.seed, s));
}

void GossipEngine::save_checkpoint(const std::string& path) const {
  Impl& i = *impl_;
  auto x = i.replicas();
  std::vector<float> params = i.average(x), bn = i.workers[0]->download_bn();
  std::vector<std::vector<float>> moms;
  for (auto& w : i.workers) moms.push_back(w->download_momentum());
  std::vector<float> mom = i.average(moms);
  std::vector<TensorView> v;
  const nets::Model& model = i.workers[0]->model();
  for (const auto& t : model.param_info()) v.push_back({t.name, t.shape, params.data() + t.offset});
  for (const auto& t : model.buffer_info()) v.push_back({t.name, t.shape, bn.data() + t.offset});
  for (const auto& t : model.param_info()) v.push_back({"momentum." + t.name, t.shape, mom.data() + t.offset});
  std::map<std::string, std::string> meta{{"nbsgd.net", model.description()},
                                          {"nbsgd.step", std::to_string(i.step)},
                                          {"nbsgd.seed", std::to_string(i.cfg.seed)},
                                          {"nbsgd.averaged_replicas", std::to_string(i.n())},
                                          {"nbsgd.config", config_json(i.cfg)},
                                          {"format", "pt"}};
  save_safetensors(path, v, meta);
}

std::string GossipEngine::describe() const {
  const Impl& i = *impl_;
  std::string algo = i.adpsgd() ? "asynchronous (no window; a step is a round of N iterations)"
                                : fmt::format("window {} ({} scope), cap {}", i.cfg.window,
                                              i.ctl_cfg.window.kind == WindowKind::Sync ? "own batch" : i.cfg.window_scope,
                                              i.ctl_cfg.cap < 0 ? std::string("none") : std::to_string(i.ctl_cfg.cap));
  std::string s = fmt::format(
      "nbsgd train: net {} ({} parameters, {:.3g} MFLOP/sample), data {} ({} train / {} test)\n"
      "  exchange {}, topology {} ({} edges), {}\n"
      "  mixing: alpha {:.4g}, lambda_2 {:.4g}, rho {:.4g}, expected edges per step {:.3g}{}\n"
      "  batch {} per worker in {} mini-batches of {}; lr {} ({}), momentum {}, weight decay {}, lr scaling {}, "
      "seed {}, clock {}\n",
      i.cfg.net, i.P, i.flops * 1e-6, i.cfg.data, i.data.train.n, i.data.test.n, i.cfg.exchange, i.cfg.topology,
      i.graph.edges.size(), algo, i.plan.alpha, i.plan.lambda2, i.plan.rho, gossip::expected_edges_per_step(i.plan),
      i.cfg.exchange == "matcha" ? fmt::format(" (budget {})", i.cfg.budget) : std::string(), i.cfg.batch,
      i.cfg.split, i.cfg.batch / i.cfg.split, i.cfg.lr, i.schedule.describe(), i.cfg.momentum, i.cfg.weight_decay,
      i.cfg.lr_scaling, i.cfg.seed, i.real_clock ? "real" : "virtual");
  if (!i.real_clock)
    s += fmt::format("  virtual clock: {:g} GFLOP/s, {:.4g} us launch overhead per mini-batch, link {:g} GB/s + {:g} us\n",
                     i.cfg.model.gflops, i.cfg.model.launch_overhead_s * 1e6, i.cfg.model.link_gbps,
                     i.cfg.model.link_latency_s * 1e6);
  s += fmt::format("  devices ({}):\n", to_string(i.devices.backend));
  for (size_t k = 0; k < i.devices.devices.size(); ++k)
    s += fmt::format("    {:>2} {:<24} {}\n", i.devices.devices[k].index, i.devices.devices[k].name,
                     i.profile.devices[k].describe());
  return s;
}

}  // namespace nbsgd::engine
