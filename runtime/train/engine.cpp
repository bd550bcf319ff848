// The trainer: set-up, the run loop, read-back, evaluation and the summary.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include "runtime/device/check.h"
#include "runtime/train/trainer.h"
#include "runtime/train/virtual_driver.h"

namespace nbsgd::engine {

namespace {
uint64_t fnv1a(const std::vector<float>& v) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(float); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
}  // namespace

Engine::Impl::Impl(const TrainConfig& cfg, PhaseHook hook) : s(make_setup(cfg, hook)), phase(std::move(hook)) {
  if (is_gossip_exchange(s->cfg.exchange)) gossip = make_gossip_plan(s->cfg, n());
  if (!adpsgd()) {
    exchange = make_exchange(s->cfg, s->workers, s->sgd, s->cfg.model);
    driver = s->virtual_clock ? make_virtual_driver(*s, *exchange) : make_real_driver(*s, *exchange);
  }
  const size_t per_slot = exchange ? exchange->readback_floats() : 2 * size_t(n());
  readback = Buffer::pinned(s->devices.backend, kSlots * per_slot * sizeof(float));
  // The real clock on GPUs reads step times from events (relative to a base event).
  const Timing timing = !s->virtual_clock && s->devices.backend == Backend::Cuda ? Timing::On : Timing::Off;
  step_done.resize(kSlots);
  for (auto& row : step_done)
    for (auto& w : s->workers) row.push_back(w->ctx().event(timing));
  if (!s->cfg.resume.empty()) load_checkpoint(s->cfg.resume);
  trace_open();
}

Engine::Impl::~Impl() {
  try {
    if (driver) driver->stop();
  } catch (const std::exception& e) {
    log_error(__FILE__, __LINE__, -1, "~Engine", e.what());
  }
  for (auto& w : s->workers) {
    try {
      w->ctx().compute().synchronize();
      w->ctx().comm().synchronize();
      w->ctx().update().synchronize();
      w->ctx().copy().synchronize();
    } catch (const std::exception& e) {
      log_error(__FILE__, __LINE__, w->index(), "~Engine", e.what());
    }
  }
}

double Engine::Impl::now() const { return driver ? driver->now() : adpsgd_clock; }

bool Engine::Impl::stop_now(const std::atomic<bool>* stop, RunSummary& sum) const {
  const TrainConfig& c = s->cfg;
  if (c.steps > 0 && step >= c.steps) return true;
  // Every epoch, not only the last: a cancelled mini-batch may hold an earlier
  // epoch's samples until after the last epoch's permutation is used up.
  if (c.steps <= 0) {
    bool all = true;
    for (int64_t e = 0; e < c.epochs && all; ++e) all = s->queue->epoch_complete(e);
    if (all) return true;
  }
  if (c.stop_at_target && time_to_target) return true;
  if (stop && stop->load()) {
    sum.interrupted = true;
    return true;
  }
  return false;
}

// ------------------------------------------------------------------ one step
bool Engine::Impl::issue_step(const std::atomic<bool>* stop) {
  Pending p;
  p.step = step;
  p.slot = static_cast<int>(step % kSlots);
  p.lr = s->schedule.lr_at(step);
  if (trace) driver->trace_spans(trace->range().contains(step));
  driver->step(step, p.window);
  // The virtual clock: the step's computation (every counted mini-batch) is
  // enqueued; a signal before it ends abandons the step rather than waiting for it.
  if (s->virtual_clock && stop) {
    std::vector<Event> computed;
    for (auto& w : s->workers) {
      computed.push_back(w->ctx().event());
      w->ctx().compute().record(computed.back());
    }
    auto all_done = [&] {
      return std::all_of(computed.begin(), computed.end(), [](const Event& e) { return e.query(); });
    };
    // Polled, backing off from 20 us to 2 ms: a short step costs a few wake-ups.
    for (auto nap = std::chrono::microseconds(20); !all_done() && !stop->load();
         nap = std::min(nap * 2, std::chrono::microseconds(2000)))
      std::this_thread::sleep_for(nap);
    if (stop->load() && driver->abandon_step(step)) {
      counters.abandoned_step = step;
      return false;
    }
  }
  float* rb = readback.as<float>() + p.slot * exchange->readback_floats();
  exchange->enqueue(step, p.lr, p.window.ready, p.window.running, rb);
  const bool on_update = exchange->updates_on_update_stream();
  for (int w = 0; w < n(); ++w) {
    DeviceContext& ctx = s->workers[w]->ctx();
    (on_update ? ctx.update() : ctx.comm()).record(step_done[p.slot][w]);
  }
  exchange->forget_before(step + 1);
  samples_total += p.window.total_samples();
  ++step;
  // The virtual clock is a simulation: its math runs step by step, so that a run
  // is the same bits whatever the host's timing.
  if (s->virtual_clock)
    for (auto& w : s->workers) {
      w->ctx().comm().synchronize();
      w->ctx().update().synchronize();
    }
  pending.push_back(std::move(p));
  return true;
}

// The real clock's time at which the slot's step had finished on every worker.
double Engine::Impl::event_time(int slot) const {
  double t = 0;
  for (int w = 0; w < n(); ++w) {
    const Event& e = step_done[slot][w];
    t = std::max(t, e.backend() == Backend::Host ? e.host_timestamp() - host_base
                                                 : base_t[w] + Event::elapsed_s(base_events[w], e));
  }
  return t;
}

StepRecord Engine::Impl::record_of(Pending& p) {
  const float* rb = readback.as<float>() + p.slot * exchange->readback_floats();
  const Exchange::Totals tot = exchange->totals(rb);
  const double count = tot.n, loss_sum = tot.loss_sum;
  StepWindow& w = p.window;
  StepRecord rec;
  rec.step = p.step;
  rec.epoch = w.epoch;
  rec.t = s->virtual_clock ? w.t_end : event_time(p.slot);
  rec.lr = p.lr;
  rec.samples = static_cast<int64_t>(count);
  rec.loss = tot.mean_loss;
  rec.finished = w.finished;
  rec.delay_s = w.delay_s;
  rec.window_s = w.window_s >= 0 ? w.window_s : rec.t - last_t;  // sync on the real clock: the step's length
  rec.skipped = count == 0;
  if (trace) trace_step(p, rec);
  NBSGD_CHECK(rec.samples == w.total_samples(), fmt::format("step {}: the exchanged count {} differs from the window's {}",
                                                            rec.step, rec.samples, w.total_samples()));
  if (s->virtual_clock && !replicated()) rec.consensus = consensus();
  losses.add(loss_sum, count);
  counters.wasted_minibatches += w.wasted;
  last_t = std::max(last_t, rec.t);
  return rec;
}

bool Engine::Impl::drain(bool all, const std::function<void(const StepRecord&)>& on_step,
                         const std::atomic<bool>* stop) {
  while (!pending.empty()) {
    Pending& p = pending.front();
    auto done = [&] {
      bool d = true;
      for (const Event& e : step_done[p.slot]) d = d && e.query();
      return d;
    };
    if (!done() && !all && pending.size() < static_cast<size_t>(kSlots - 1)) break;
    // A signal must not wait for a stalled worker's step: poll, and give up when
    // it arrives (the run then stops its driver, which cuts the stalls short).
    if (stop) {
      while (!done()) {
        if (stop->load()) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    for (const Event& e : step_done[p.slot]) e.synchronize();
    StepRecord rec = record_of(p);
    pending.pop_front();
    after_step(rec, on_step);
  }
  return true;
}

bool Engine::Impl::after_step(StepRecord& rec, const std::function<void(const StepRecord&)>& on_step) {
  // A diverged run stops here, before the step is logged or any later checkpoint
  // is written: the last checkpoint on disk holds the weights of a finite step.
  if (!rec.skipped && !std::isfinite(rec.loss))
    throw InputError(fmt::format("step {}: the training loss is {} (the run diverged; try a smaller --lr); stopped, "
                                 "and the last checkpoint written, if any, was kept",
                                 rec.step, std::isnan(rec.loss) ? "nan" : rec.loss > 0 ? "inf" : "-inf"));
  if (rec.skipped) ++counters.skipped_steps;
  if (!rec.skipped && s->cfg.target_loss > 0 && !time_to_target && losses.mean() <= s->cfg.target_loss)
    time_to_target = rec.t;
  on_step(rec);
  // A window no mini-batch fits in (e.g. a deadline shorter than one) would spin
  // forever on skipped steps: stop with the reason.
  consecutive_empty = rec.samples == 0 ? consecutive_empty + 1 : 0;
  if (consecutive_empty >= 100)
    throw InputError(fmt::format("--window {}: no worker finished a mini-batch in 100 consecutive steps "
                                 "(the window is shorter than one mini-batch)", s->cfg.window));
  return true;
}

// --check-replicas-every, --eval-every, --checkpoint-every, after step `step`.
void Engine::Impl::periodic(const std::atomic<bool>* stop) {
  const TrainConfig& c = s->cfg;
  if (c.check_replicas_every > 0 && step % c.check_replicas_every == 0 && replicated()) {
    auto h = replica_hashes();
    for (size_t i = 1; i < h.size(); ++i)
      NBSGD_CHECK(h[i] == h[0], fmt::format("replica {} diverged from replica 0 at step {}", i, step));
  }
  if (c.eval_every > 0 && step % c.eval_every == 0) {
    auto [l, a] = evaluate(stop);
    if (!c.quiet && !(stop && stop->load()))
      std::fprintf(stderr, "eval step %lld: %s test loss %.4f accuracy %.4f\n", (long long)step,
                   replicated() ? "replica 0" : "averaged model", l, a);
  }
  if (stop && stop->load()) return;  // the run writes its checkpoint as it stops
  if (c.checkpoint_every > 0 && step % c.checkpoint_every == 0 && !c.out_dir.empty())
    save_checkpoint(c.out_dir + "/checkpoint.safetensors");
}

// ------------------------------------------------------------------ run loop
RunSummary Engine::Impl::run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop) {
  RunSummary sum;
  const double wall0 = steady_now_s();
  if (adpsgd()) {
    run_adpsgd(on_step, stop, sum);
    finish(sum, wall0, stop);
    return sum;
  }
  // Across ranks a signal may reach one rank only, or each at another step: every
  // rank shares its flag in the step's all-gather (ranks.h), and from then on the
  // run sees only that agreed flag, set on every rank after the same step.
  if (s->span.spans()) {
    s->span.signal = stop;
    stop = &s->span.stop_all;
  }
  driver->watch_stop(stop);
  host_base = steady_now_s() - driver->now();
  if (!s->virtual_clock && s->devices.backend == Backend::Cuda) {
    for (auto& w : s->workers) {
      base_events.push_back(w->ctx().event(Timing::On));
      base_t.push_back(driver->now());
      w->ctx().comm().record(base_events.back());
    }
  }
  last_t = driver->now();
  const TrainConfig& c = s->cfg;
  auto due = [&](int64_t every) { return every > 0 && step % every == 0; };
  while (!stop_now(stop, sum)) {
    if (!issue_step(stop)) continue;  // abandoned: stop_now sees the signal
    if (!drain(false, on_step, stop)) continue;
    const bool check = due(c.check_replicas_every) || due(c.eval_every) || (due(c.checkpoint_every) && !c.out_dir.empty());
    if (check) {
      if (!drain(true, on_step, stop)) continue;  // a signal: the run's own checkpoint follows
      // Cancelled work may still be queued; evaluation swaps models on worker 0.
      for (auto& w : s->workers) {
        w->ctx().compute().synchronize();
        w->ctx().update().synchronize();
      }
      periodic(stop);
    }
  }
  // Stop first: queued work is cancelled and injected stalls still held are cut,
  // so the last steps' exchanges do not wait for a stalled worker.
  driver->stop();
  drain(true, on_step);
  finish(sum, wall0, stop);
  return sum;
}

void Engine::Impl::finish(RunSummary& sum, double wall0, const std::atomic<bool>* stop) {
  if (driver) driver->stop();
  for (auto& w : s->workers) {
    w->ctx().compute().synchronize();
    w->ctx().comm().synchronize();
    w->ctx().update().synchronize();
  }
  sum.steps = step;
  sum.samples = samples_total;
  sum.wall_s = steady_now_s() - wall0;
  sum.clock_s = now();
  sum.samples_per_s = sum.clock_s > 0 ? sum.samples / sum.clock_s : 0;
  sum.final_train_loss = losses.mean();
  sum.time_to_target_s = time_to_target;
  sum.skipped_steps = counters.skipped_steps;
  sum.wasted_minibatches = driver && driver->wasted() >= 0 ? driver->wasted() : counters.wasted_minibatches;
  sum.skipped_minibatches = driver ? driver->skipped() : 0;
  sum.cut_minibatches = driver ? driver->cut() : 0;
  sum.abandoned_step = counters.abandoned_step;
  sum.abandoned_holds = driver ? driver->abandoned_holds() : 0;
  sum.driver_cpu_s = driver ? driver->driver_cpu_s() : 0.0;
  sum.notice_lag_s = driver ? driver->notice_lag_s() : 0.0;
  sum.issue_lag_s = driver ? driver->issue_lag_s() : 0.0;
  for (auto& w : s->workers)
    if (w->computed_runs() >= 0) sum.computed_minibatches = std::max<int64_t>(sum.computed_minibatches, 0) + w->computed_runs();
  for (int64_t e = 0; e <= s->queue->current_epoch(); ++e) {
    if (s->queue->epoch_complete(e)) {
      sum.samples_per_epoch.push_back(s->queue->samples_committed(e));
    } else {
      sum.partial_epoch_samples += s->queue->samples_committed(e);
    }
  }
  sum.epochs_completed = static_cast<int64_t>(sum.samples_per_epoch.size());
  sum.clock = s->virtual_clock ? "virtual" : "real";
  sum.evaluated = replicated() ? "replica 0" : "averaged model";
  trace_close(sum);
  // A signal skips the final evaluation, or cuts it short: the run stops now.
  if (stop && stop->load()) sum.interrupted = true;
  if (sum.interrupted) {
    sum.evaluated = "not evaluated (interrupted)";
    sum.test_loss = sum.test_accuracy = std::nan("");
    return;
  }
  const std::string eval = fmt::format("final evaluation on {} test samples ({})", s->data.test.n, sum.evaluated);
  if (phase) phase(eval, false);
  auto [tl, ta] = evaluate(stop);
  if (phase) phase(eval, true);
  sum.test_loss = tl;
  sum.test_accuracy = ta;
  if (stop && stop->load()) {
    sum.interrupted = true;
    sum.evaluated = "not evaluated (interrupted during the evaluation)";
    sum.test_loss = sum.test_accuracy = std::nan("");
  }
}

// ------------------------------------------------------------------ models
std::vector<std::vector<float>> Engine::Impl::replicas() const {
  std::vector<std::vector<float>> x;
  for (auto& w : s->workers) x.push_back(w->download_params());
  return x;
}

std::vector<float> Engine::Impl::average(const std::vector<std::vector<float>>& x) const {
  std::vector<double> acc(s->P, 0.0);
  for (const auto& xi : x)
    for (size_t e = 0; e < s->P; ++e) acc[e] += xi[e];
  std::vector<float> avg(s->P);
  for (size_t e = 0; e < s->P; ++e) avg[e] = static_cast<float>(acc[e] / double(x.size()));
  return avg;
}

double Engine::Impl::consensus() const {
  const auto x = replicas();
  std::vector<double> mean(s->P, 0.0);
  for (const auto& xi : x)
    for (size_t e = 0; e < s->P; ++e) mean[e] += xi[e];
  for (double& m : mean) m /= double(x.size());
  double d = 0;
  for (const auto& xi : x)
    for (size_t e = 0; e < s->P; ++e) d += (xi[e] - mean[e]) * (xi[e] - mean[e]);
  return d / double(x.size());
}

// Replicated exchanges: replica 0. Gossip: the averaged model x_bar on worker 0
// (with worker 0's BN buffers), then worker 0's own replica goes back.
std::pair<double, double> Engine::Impl::evaluate(const std::atomic<bool>* stop) {
  Worker& w0 = *s->workers[0];
  if (replicated()) return w0.evaluate(s->data.test, 256, stop);
  auto x = replicas();
  w0.upload_params(average(x));
  auto r = w0.evaluate(s->data.test, 256, stop);
  w0.upload_params(x[0]);
  return r;
}

std::vector<uint64_t> Engine::Impl::replica_hashes() const {
  std::vector<uint64_t> h;
  for (auto& w : s->workers) h.push_back(fnv1a(w->download_params()));
  return h;
}

// ------------------------------------------------------------------ Engine
Engine::Engine(const TrainConfig& cfg, PhaseHook phase) : impl_(std::make_unique<Impl>(cfg, std::move(phase))) {}
Engine::~Engine() = default;

RunSummary Engine::run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop) {
  return impl_->run(on_step, stop);
}
void Engine::save_checkpoint(const std::string& path) const { impl_->save_checkpoint(path); }
const TrainConfig& Engine::config() const { return impl_->s->cfg; }
int64_t Engine::steps_done() const { return impl_->step; }
int Engine::workers() const { return impl_->n(); }
size_t Engine::num_params() const { return impl_->s->P; }
double Engine::flops_per_sample() const { return impl_->s->flops; }
bool Engine::virtual_clock() const { return impl_->s->virtual_clock; }
int64_t Engine::train_samples() const { return impl_->s->data.train.n; }
const DeviceList& Engine::devices() const { return impl_->s->devices; }
std::vector<uint64_t> Engine::replica_hashes() const { return impl_->replica_hashes(); }
std::vector<std::vector<float>> Engine::replicas() const { return impl_->replicas(); }
std::array<IssueCounts, 4> Engine::issue_counts(int i) const {
  NBSGD_CHECK(i >= 0 && i < impl_->n(), "issue_counts: no such worker");
  DeviceContext& c = impl_->s->workers[static_cast<size_t>(i)]->ctx();
  return {c.compute().counts(), c.copy().counts(), c.comm().counts(), c.update().counts()};
}
void Engine::set_replica(int i, const std::vector<float>& p) {
  NBSGD_CHECK(i >= 0 && i < impl_->n(), "set_replica: no such worker");
  impl_->s->workers[static_cast<size_t>(i)]->upload_params(p);
}
std::vector<std::vector<std::pair<int, double>>> Engine::step_weights(int64_t st) const {
  if (!impl_->gossip) throw InputError("step_weights: --exchange " + impl_->s->cfg.exchange + " has no mixing matrix");
  const auto& plan = impl_->gossip->plan;
  return gossip::step_weights(plan, gossip::active_matchings(plan, impl_->s->cfg.seed, st));
}

std::string Engine::describe() const {
  const Setup& s = *impl_->s;
  const TrainConfig& c = s.cfg;
  const std::string xdesc = impl_->exchange ? impl_->exchange->describe()
                                            : fmt::format("adpsgd over {} ({} edges): asynchronous, no window; a "
                                                          "reported step is a round of N iterations",
                                                          c.topology, impl_->gossip->graph.edges.size());
  const std::string window =
      impl_->adpsgd() ? std::string("none")
                      : fmt::format("{} ({} scope), cap {}", c.window,
                                    s.ctl.window.kind == WindowKind::Sync ? "own batch" : c.window_scope,
                                    s.ctl.cap < 0 ? std::string("none") : std::to_string(s.ctl.cap));
  std::string out = fmt::format(
      "nbsgd train: net {} ({} parameters, {:.3g} MFLOP/sample), data {} ({} train / {} test)\n"
      "  exchange {}\n"
      "  window {}, batch {} per worker in {} mini-batches of {}, inflight {}\n"
      "  lr {} ({}), momentum {}, weight decay {}{}, lr scaling {}, seed {}, clock {}\n",
      c.net, s.P, s.flops * 1e-6, c.data, s.data.train.n, s.data.test.n, xdesc, window, c.batch, c.split,
      c.batch / c.split, c.inflight, c.lr, s.schedule.describe(), c.momentum, c.weight_decay,
      c.nesterov ? ", nesterov" : "", c.lr_scaling, c.seed, s.virtual_clock ? "virtual" : "real");
  if (!s.data.summary.empty()) out += "  " + s.data.summary + "\n";
  if (!s.device_data.empty())
    out += fmt::format("  mini-batches gathered on the device{}, from the training set uploaded once ({}, {:.1f} MB)\n",
                       s.device_data.size() > 1 ? "s" : "", s.device_data[0]->as_bytes() ? "uint8" : "float32",
                       DeviceData::device_bytes(s.data.train) / 1e6);
  if (!s.gather_note.empty()) out += "  " + s.gather_note + "\n";
  if (c.gather == "host") out += "  mini-batches gathered on the host (--gather host)\n";
  if (s.virtual_clock)
    out += fmt::format("  virtual clock: {:g} GFLOP/s, {:.4g} us launch overhead per mini-batch, link {:g} GB/s + {:g} us{}{}{}{}{}\n",
                       c.model.gflops, c.model.launch_overhead_s * 1e6, c.model.link_gbps, c.model.link_latency_s * 1e6,
                       c.model.jitter_cv > 0 ? fmt::format(", compute jitter CV {:g}", c.model.jitter_cv) : "",
                       c.model.notice_latency_s > 0
                           ? fmt::format(", a close seen {:g} us late", c.model.notice_latency_s * 1e6)
                           : "",
                       c.model.host_cpu_s > 0
                           ? fmt::format(", {:g} us of host CPU per mini-batch", c.model.host_cpu_s * 1e6)
                           : "",
                       c.model.issue_latency_s > 0
                           ? fmt::format(", a mini-batch issued {:g} us after its hand-out", c.model.issue_latency_s * 1e6)
                           : "",
                       c.model.cancel_kernels > 1
                           ? fmt::format(", a running mini-batch cut at the close in {} kernels", c.model.cancel_kernels)
                           : "");
  if (!s.virtual_clock && c.window != "sync")
    out += c.cancel_at == "kernel"
               ? "  cancel: a mini-batch running at its window's close stops at the next kernel boundary (--cancel-at kernel)\n"
               : "  cancel: a mini-batch running at its window's close runs to its end (--cancel-at minibatch)\n";
  out += fmt::format("  devices ({}):\n", to_string(s.devices.backend));
  for (size_t k = 0; k < s.devices.devices.size(); ++k) {
    const Device& d = s.devices.devices[k];
    out += fmt::format("    {:>2} {:<24} {}\n", d.index, d.name, s.profile.devices[k].describe());
  }
  return out;
}

}  // namespace nbsgd::engine
