// D-PSGD / MATCHA on the real clock (GPUs, or host workers with --clock real).
//
// --window sync, the blocking baselines, run with no global barrier:
// The host enqueues every step for every worker and never waits for a worker to
// finish: worker i's compute stream runs its m mini-batches (stage, forward and
// backward, injected straggling, commit), its local update, then the exchange,
// whose comm streams wait only on the events of the neighbours i mixes with in that
// step (comm/comm.h). The next step's forward pass waits on the worker's own
// exchange. So a fast worker runs ahead of a slow one by as many steps as the graph
// lets it, exactly as D-PSGD allows, and a global barrier never slows the baseline.
// The host only bounds how far it enqueues ahead (kLag steps, more than any
// worker can drift on the graphs nbsgd builds for one box), and reads each step's
// [n, loss] back when the step's events complete; a step's `t` is the moment the
// host saw its last worker finish the exchange.
//
// Mini-batches are handed out round-robin (mini-batch k of every worker, worker 0
// first), the order the virtual clock's timeline uses when every worker is equally
// fast, so a real-clock run without stragglers computes the same bits as the
// virtual-clock run (a test checks this). Every mini-batch of a sync step counts,
// so the epoch queue commits them as they are handed out.
//
// The non-blocking windows (fastest, quorum:K, deadline:MS, adaptive) run with
// --window-scope global, as the ring engine's real clock: the host hands out
// mini-batches (at most --inflight per worker in flight), each ends in a completion
// notice that asks the StepController whether it counts and writes the slot's
// mapped flag, then the flag-guarded commit; when the window closes, what still
// runs is cancelled (its commit is a no-op, its samples go back to the queue) and
// each worker's comm stream takes its last counted commit, updates its replica
// with its own n_i and mixes with its neighbours. The window is one decision over
// all workers, by definition of the global scope; the neighbourhood scope, whose
// windows overlap across steps, is modelled on the virtual clock only.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>

#include "kernels/basic.h"
#include "kernels/throttle.h"
#include "nets/optim/commit.h"
#include "runtime/device/check.h"
#include "runtime/train/commit_if.h"
#include "runtime/train/controller.h"
#include "runtime/train/gossip_engine_impl.h"
#include "runtime/train/timeline.h"
#include "runtime/device/nvtx.h"

namespace nbsgd::engine {

namespace {
constexpr int kLag = 8;  // steps the host may enqueue ahead of the slowest worker
}

void GossipEngine::Impl::run_real(RunSummary& sum, double& clock, const std::function<bool(const StepRecord&)>& emit,
                                  const std::atomic<bool>* stop, double wall0) {
  const int N = n();
  const int m = cfg.split;
  const int b = cfg.batch / cfg.split;
  const bool fused = cfg.momentum == 0.0 && sgd.count_ref == 0.0;
  const bool cuda = devices.backend == Backend::Cuda;
  const bool sync = ctl_cfg.window.kind == WindowKind::Sync;
  Buffer rb = Buffer::pinned(devices.backend, size_t(2) * N * kLag * sizeof(float));
  std::vector<std::vector<Event>> done(kLag);  // [slot][worker]: the step's exchange, on comm
  for (auto& row : done)
    for (auto& w : workers) row.push_back(w->ctx().event());
  std::vector<int> next_slot(static_cast<size_t>(N), 0);

  struct Pending {
    StepRecord rec;
    int slot;
  };
  std::deque<Pending> pending;
  double last_t = 0;
  auto finish = [&](Pending& p) {
    for (auto& e : done[static_cast<size_t>(p.slot)]) e.synchronize();
    StepRecord& rec = p.rec;
    rec.t = steady_now_s() - wall0;
    if (sync) rec.window_s = rec.t - last_t;  // windowed steps carry their window's length
    last_t = rec.t;
    double loss_sum = 0, count = 0;
    const float* r = rb.as<float>() + size_t(2) * N * p.slot;
    for (int i = 0; i < N; ++i) {
      count += r[2 * i];
      loss_sum += r[2 * i + 1];
    }
    rec.samples = static_cast<int64_t>(count);
    rec.loss = count > 0 ? loss_sum / count : std::nan("");
    rec.skipped = count == 0;
    if (rec.skipped) ++sum.skipped_steps;
    losses.add(loss_sum, count);
    clock = std::max(clock, rec.t);
    emit(rec);
  };
  auto drain = [&](bool all) {
    while (!pending.empty()) {
      bool ready = true;
      for (auto& e : done[static_cast<size_t>(pending.front().slot)]) ready = ready && e.query();
      if (!ready && !all && pending.size() < static_cast<size_t>(kLag)) break;
      finish(pending.front());
      pending.pop_front();
    }
  };

  // The step's stall of worker i, before its first mini-batch (binds the device).
  auto inject_stall = [&](int i, int64_t s) {
    Worker& w = *workers[static_cast<size_t>(i)];
    if (cuda) bind_thread_to_device(w.ctx().device().ordinal);
    straggler::Rng stall_rng = step_stream(profile, i, s, straggler::Stream::Stall);
    const double stall = profile.devices[static_cast<size_t>(i)].draw_stall_s(stall_rng, s);
    if (stall > 0) {
      NBSGD_NVTX_RANGE("injected:stall", nvtx::kInjected);
      w.ctx().compute().wait(w.update_done);
      kernels::delay(w.ctx().compute(), stall);
    }
    return stall;
  };
  // After worker i's last counted commit, on stream `st`: read [n, loss] back into
  // the step's slot, the local update (unless the exchange fuses it), the ready event.
  auto finish_worker = [&](int i, Stream& st, int slot, double lr, std::vector<Event>& ready) {
    Worker& w = *workers[static_cast<size_t>(i)];
    copy_async(st, rb.as<float>() + size_t(2) * (size_t(N) * slot + i), w.accumulator() + P, 2 * sizeof(float));
    if (!fused)
      optim::fused_sgd_update(st, w.params(), w.momentum(), w.accumulator(), P, static_cast<float>(lr), sgd, 1.0f);
    ready.push_back(w.ctx().event());
    st.record(ready.back());
  };

  // --window sync: every worker's m mini-batches, all counted; the update on the
  // compute stream, right after the last commit.
  auto issue_sync = [&](int64_t s, int slot, StepRecord& rec, std::vector<Event>& ready) {
    // Hand-out, round-robin.
    std::vector<std::vector<data::MiniBatch>> mbs(static_cast<size_t>(N));
    for (int k = 0; k < m; ++k)
      for (int i = 0; i < N; ++i)
        if (auto mb = queue->take(b)) mbs[static_cast<size_t>(i)].push_back(std::move(*mb));

    for (int i = 0; i < N; ++i) {
      Worker& w = *workers[static_cast<size_t>(i)];
      Stream& cs = w.ctx().compute();
      const auto& dev = profile.devices[static_cast<size_t>(i)];
      straggler::Rng delay_rng = step_stream(profile, i, s, straggler::Stream::Delay);
      double injected = inject_stall(i, s);
      const double slowdown = dev.slowdown(s);
      for (data::MiniBatch& mb : mbs[static_cast<size_t>(i)]) {
        const int k = next_slot[static_cast<size_t>(i)];
        next_slot[static_cast<size_t>(i)] = (k + 1) % w.slots();
        uint64_t* stamp = stamps[static_cast<size_t>(i)].as<uint64_t>() + k;
        const double extra = dev.draw_delay_s(delay_rng, s);
        w.stage_and_compute(k, data.train, mb.indices, stamp);
        if (slowdown > 1.0 || extra > 0) {
          NBSGD_NVTX_RANGE("injected:throttle", nvtx::kInjected);
          kernels::throttle(cs, stamp, slowdown - 1.0, extra, kernels::DelayMode::Idle);
        }
        optim::commit(cs, w.slot(k).scratch.as<float>(), w.accumulator(), P);
        cs.record(w.slot(k).done);
        queue->commit(mb);
        injected += extra;  // the throttle's share is known only on the device
        ++rec.finished[static_cast<size_t>(i)];
      }
      rec.delay_s[static_cast<size_t>(i)] = injected;
      cs.wait(w.update_done);
      finish_worker(i, cs, slot, rec.lr, ready);
    }
  };

  // The non-blocking windows, global scope: hand out while the controller allows,
  // decide each completion in its notice, close, cancel what still runs.
  std::mutex mu;  // guards ctl, rs and the epoch queue (notices run on stream threads)
  std::condition_variable cv;
  StepController ctl(ctl_cfg);
  struct {
    int64_t step = -1;  // the step whose window is open; notices of others cancel
    std::vector<int> inflight, pending, last_counted;
    int64_t wasted = 0;
    double last_notice_t = 0;
  } rs;
  rs.inflight.assign(static_cast<size_t>(N), 0);
  std::vector<Buffer> flags;
  if (!sync)
    for (auto& w : workers) flags.push_back(Buffer::mapped(w->ctx().backend(), w->slots() * sizeof(int)));
  auto issue_windowed = [&](int64_t s, int slot, StepRecord& rec, std::vector<Event>& ready) {
    std::vector<straggler::Rng> delay_rng;
    std::vector<double> slowdown(static_cast<size_t>(N));
    for (int i = 0; i < N; ++i) {
      delay_rng.push_back(step_stream(profile, i, s, straggler::Stream::Delay));
      slowdown[static_cast<size_t>(i)] = profile.devices[static_cast<size_t>(i)].slowdown(s);
      rec.delay_s[static_cast<size_t>(i)] = inject_stall(i, s);
    }
    std::unique_lock<std::mutex> lk(mu);
    rs.step = s;
    rs.pending.assign(static_cast<size_t>(N), 0);
    rs.last_counted.assign(static_cast<size_t>(N), -1);
    const double t0 = steady_now_s();
    ctl.begin_step(t0);
    for (;;) {
      // Hand out whatever the window and --inflight allow, worker 0 first.
      for (bool progress = true; progress && !ctl.closed();) {
        progress = false;
        for (int i = 0; i < N && !ctl.closed(); ++i) {
          if (rs.inflight[static_cast<size_t>(i)] >= cfg.inflight) continue;
          const int size = ctl.next_size(i);
          if (size <= 0) continue;
          auto taken = queue->take(size);
          if (!taken) continue;
          const int actual = static_cast<int>(taken->indices.size());
          ctl.on_start(i, actual);
          ++rs.inflight[static_cast<size_t>(i)];
          ++rs.pending[static_cast<size_t>(i)];
          Worker& w = *workers[static_cast<size_t>(i)];
          const int k = next_slot[static_cast<size_t>(i)];
          next_slot[static_cast<size_t>(i)] = (k + 1) % w.slots();
          const auto& dev = profile.devices[static_cast<size_t>(i)];
          const double extra = dev.draw_delay_s(delay_rng[static_cast<size_t>(i)], s);
          rec.delay_s[static_cast<size_t>(i)] += extra;
          auto mb = std::make_shared<data::MiniBatch>(std::move(*taken));
          lk.unlock();  // enqueue outside the lock: notices of earlier work may need it
          if (cuda) bind_thread_to_device(w.ctx().device().ordinal);
          Stream& cs = w.ctx().compute();
          uint64_t* stamp = stamps[static_cast<size_t>(i)].as<uint64_t>() + k;
          int* flag_host = flags[static_cast<size_t>(i)].as<int>() + k;
          const int* flag_dev = static_cast<const int*>(flags[static_cast<size_t>(i)].device_data()) + k;
          w.stage_and_compute(k, data.train, mb->indices, stamp);
          const double sd = slowdown[static_cast<size_t>(i)];
          if (sd > 1.0 || extra > 0) {
            NBSGD_NVTX_RANGE("injected:throttle", nvtx::kInjected);
            kernels::throttle(cs, stamp, sd - 1.0, extra, kernels::DelayMode::Idle);
          }
          cs.host_task([&, i, k, s, mb, actual, flag_host] {
            double t = steady_now_s();
            std::lock_guard<std::mutex> g(mu);
            t = std::max(t, rs.last_notice_t);  // completions reach the controller in time order
            rs.last_notice_t = t;
            const bool current = rs.step == s;
            const bool counted = current && ctl.on_complete(i, t, actual);
            *flag_host = counted ? 1 : 0;
            if (counted) {
              queue->commit(*mb);
              rs.last_counted[static_cast<size_t>(i)] = k;
            } else {
              queue->give_back(std::move(*mb));
              ++rs.wasted;
            }
            if (current) --rs.pending[static_cast<size_t>(i)];
            --rs.inflight[static_cast<size_t>(i)];
            cv.notify_all();
          });
          commit_if(cs, w.slot(k).scratch.as<float>(), w.accumulator(), P, flag_dev);
          cs.record(w.slot(k).done);
          lk.lock();
          progress = true;
        }
      }
      if (ctl.closed()) break;
      if (std::all_of(rs.pending.begin(), rs.pending.end(), [](int x) { return x <= 0; })) break;  // nothing left
      if (auto d = ctl.deadline()) {
        if (steady_now_s() >= *d) {
          ctl.close_at(*d);
          break;
        }
        cv.wait_for(lk, std::chrono::duration<double>(*d - steady_now_s()));
      } else {
        cv.wait(lk);
      }
    }
    if (!ctl.closed()) ctl.close_at(steady_now_s());
    for (int i = 0; i < N; ++i) rec.finished[static_cast<size_t>(i)] = ctl.finished()[static_cast<size_t>(i)];
    rec.window_s = ctl.close_time() - t0;
    std::vector<int> last = rs.last_counted;
    rs.step = -1;  // notices still to come for this step are cancellations
    lk.unlock();
    // Each worker's comm stream takes its last counted commit (cancelled work may
    // still run on the compute stream: its commit is a no-op), reads [n, loss]
    // back, updates the replica with its own n_i.
    for (int i = 0; i < N; ++i) {
      Worker& w = *workers[static_cast<size_t>(i)];
      if (cuda) bind_thread_to_device(w.ctx().device().ordinal);
      Stream& cm = w.ctx().comm();
      cm.wait(last[static_cast<size_t>(i)] >= 0 ? w.slot(last[static_cast<size_t>(i)]).done : w.update_done);
      finish_worker(i, cm, slot, rec.lr, ready);
    }
  };

  int64_t issued = step;
  auto more = [&] {
    if (cfg.steps > 0 && issued >= cfg.steps) return false;
    if (cfg.steps <= 0) {
      std::lock_guard<std::mutex> g(mu);
      if (queue->epoch_complete(cfg.epochs - 1)) return false;
    }
    if (cfg.stop_at_target && time_to_target) return false;
    if (stop && stop->load()) {
      sum.interrupted = true;
      return false;
    }
    return true;
  };

  while (more()) {
    const int64_t s = issued++;
    const int slot = static_cast<int>(s % kLag);
    NBSGD_NVTX_RANGE("gossip step (real clock)", nvtx::kHost);
    Pending p;
    p.slot = slot;
    p.rec.step = s;
    {
      std::lock_guard<std::mutex> g(mu);
      p.rec.epoch = queue->current_epoch();
    }
    p.rec.lr = schedule.lr_at(s);
    p.rec.finished.assign(static_cast<size_t>(N), 0);
    p.rec.delay_s.assign(static_cast<size_t>(N), 0.0);

    std::vector<Event> ready;
    if (sync) {
      issue_sync(s, slot, p.rec, ready);
    } else {
      issue_windowed(s, slot, p.rec, ready);
    }
    std::vector<float*> x, acc;
    for (auto& w : workers) {
      x.push_back(w->params());
      acc.push_back(w->accumulator());
    }
    std::vector<const Event*> rp;
    for (auto& e : ready) rp.push_back(&e);
    const comm::MixWeights& W = weights(s);
    if (fused) {
      comm::GossipStep gs;
      gs.lr = static_cast<float>(p.rec.lr);
      gs.weight_decay = static_cast<float>(cfg.weight_decay);
      exchange->fused_gossip_sgd(x, acc, P, gs, W, rp);
    } else {
      exchange->mix(x, P, W, rp);
    }
    for (int i = 0; i < N; ++i) {
      Stream& comm_s = workers[static_cast<size_t>(i)]->ctx().comm();
      comm_s.record(workers[static_cast<size_t>(i)]->update_done);
      comm_s.record(done[static_cast<size_t>(slot)][static_cast<size_t>(i)]);
    }
    weights_cache.erase(weights_cache.begin(), weights_cache.lower_bound(s + 1));
    neighbours_cache.erase(neighbours_cache.begin(), neighbours_cache.lower_bound(s + 1));
    pending.push_back(std::move(p));
    // An evaluation swaps the averaged model into worker 0: nothing may be in flight.
    const bool eval_next = cfg.eval_every > 0 && (s + 1) % cfg.eval_every == 0;
    if (eval_next)
      for (auto& w : workers) w->ctx().compute().synchronize();
    drain(eval_next);
  }
  // Cancelled work may still run, and its notices use this frame's state.
  for (auto& w : workers) w->ctx().compute().synchronize();
  drain(true);
  sum.wasted_minibatches += rs.wasted;
}

}  // namespace nbsgd::engine
