// One step of the engine: on the virtual clock (the timeline decides, the math runs
// for what counted) and on the real clock (workers run; completion notices decide).
#include <algorithm>
#include <cmath>

#include "kernels/basic.h"
#include "kernels/throttle.h"
#include "nets/optim/commit.h"
#include "runtime/device/check.h"
#include "runtime/train/commit_if.h"
#include "runtime/train/engine_impl.h"
#include "runtime/device/nvtx.h"

namespace nbsgd::engine {

// ------------------------------------------------------------------ exchange
// Sum the workers' [G, n, loss] accumulators (one all-reduce of P+2 floats), keep
// worker 0's [n, loss] for the log, then one fused update per worker. Every replica
// applies the same kernel to the same summed bytes, so replicas stay bit-identical.
void Engine::Impl::exchange_and_update(int64_t step_index, double lr, int readback_slot,
                                       const std::vector<const Event*>& ready) {
  NBSGD_NVTX_RANGE("exchange+update", nvtx::kExchange);
  std::vector<float*> bufs;
  for (auto& w : workers) bufs.push_back(w->accumulator());
  allreduce->all_reduce_sum(bufs, P + 2, ready);
  Worker& w0 = *workers[0];
  copy_async(w0.ctx().comm(), readback.as<float>() + 2 * readback_slot, w0.accumulator() + P, 2 * sizeof(float));
  for (auto& w : workers) {
    optim::fused_sgd_update(w->ctx().comm(), w->params(), w->momentum(), w->accumulator(), P,
                            static_cast<float>(lr), sgd, 1.0f);
    w->ctx().comm().record(w->update_done);
  }
  (void)step_index;
}

// ------------------------------------------------------------------ virtual clock
void Engine::Impl::step_virtual(StepResult& r) {
  std::vector<data::MiniBatch> handed;
  auto take = [&](int, int size, int& actual) -> int64_t {
    auto mb = queue->take(size);
    if (!mb) {
      actual = 0;
      return -1;
    }
    actual = static_cast<int>(mb->indices.size());
    handed.push_back(std::move(*mb));
    return static_cast<int64_t>(handed.size()) - 1;
  };
  r.epoch = queue->current_epoch();
  StepOutcome o = timeline->step(step, take);

  // The math for every mini-batch that counted, in each worker's hand-out order.
  std::vector<int> used(n(), 0);
  // The accumulator's last writer: the last counted commit, or else the previous
  // step's update on the comm stream (other workers' comm streams read it).
  std::vector<const Event*> ready(n(), nullptr);
  for (int w = 0; w < n(); ++w) ready[w] = &workers[w]->update_done;
  for (const SimMiniBatch& mb : o.minibatches) {
    if (!mb.counted) continue;
    Worker& w = *workers[mb.worker];
    const int k = used[mb.worker]++ % w.slots();
    w.stage_and_compute(k, data.train, handed[mb.handle].indices);
    optim::commit(w.ctx().compute(), w.slot(k).scratch.as<float>(), w.accumulator(), P);
    w.ctx().compute().record(w.slot(k).done);
    ready[mb.worker] = &w.slot(k).done;
  }
  // Cancelled mini-batches go back, the last handed out first, so the queue hands
  // them out again in their original order.
  for (auto it = o.minibatches.rbegin(); it != o.minibatches.rend(); ++it) {
    if (it->counted) continue;
    queue->give_back(std::move(handed[it->handle]));
    ++r.wasted;
  }
  for (const SimMiniBatch& mb : o.minibatches)
    if (mb.counted) queue->commit(handed[mb.handle]);

  r.lr = schedule.lr_at(step);
  exchange_and_update(step, r.lr, static_cast<int>(step % readback_slots), ready);
  r.t_end = o.end;
  r.window_s = o.window_s();
  r.finished = o.finished;
  r.delay_s = o.delay_s;
  r.samples = o.total_samples;
}

// ------------------------------------------------------------------ real clock
double Engine::Impl::now_real() const { return steady_now_s(); }

// Issues worker w's mini-batches for the current step, at most cfg.inflight in
// flight (counting a cancelled one still running from the previous step), until
// the window closes or the policy gives it nothing more. Each mini-batch: stage,
// stamp, forward/backward into the slot's scratch, injected straggling, a
// completion notice (a host task that decides counted or cancelled under the
// engine lock and writes the slot's mapped flag), the flag-guarded commit, and the
// slot's done event.
void Engine::Impl::issue_real(int w, int64_t step_index) {
  Worker& wk = *workers[w];
  const auto& dev = profile.devices[w];
  straggler::Rng delay_rng = step_stream(profile, w, step_index, straggler::Stream::Delay);
  straggler::Rng stall_rng = step_stream(profile, w, step_index, straggler::Stream::Stall);
  const double stall = dev.draw_stall_s(stall_rng, step_index);
  Stream& cs = wk.ctx().compute();
  if (stall > 0) {
    NBSGD_NVTX_RANGE("injected:stall", nvtx::kInjected);
    cs.wait(wk.update_done);
    kernels::delay(cs, stall);
  }
  const double slowdown = dev.slowdown(step_index);
  double injected_mean = 0;
  for (;;) {
    std::unique_lock<std::mutex> lk(m);
    cv.wait(lk, [&] { return controller->closed() || rs.inflight[w] < cfg.inflight; });
    const int size = controller->closed() ? 0 : controller->next_size(w);
    std::optional<data::MiniBatch> mb;
    if (size > 0) mb = queue->take(size);
    if (!mb) break;
    const int actual = static_cast<int>(mb->indices.size());
    controller->on_start(w, actual);
    ++rs.inflight[w];
    ++rs.pending[w];
    const int k = rs.next_slot[w];
    rs.next_slot[w] = (k + 1) % wk.slots();
    lk.unlock();

    const double extra = dev.draw_delay_s(delay_rng, step_index);
    injected_mean += extra;
    int* flag_host = flags[w].as<int>() + k;
    const int* flag_dev = static_cast<const int*>(flags[w].device_data()) + k;
    uint64_t* stamp = stamps[w].as<uint64_t>() + k;
    wk.stage_and_compute(k, data.train, mb->indices, stamp);
    if (slowdown > 1.0 || extra > 0) {
      NBSGD_NVTX_RANGE("injected:throttle", nvtx::kInjected);
      kernels::throttle(cs, stamp, slowdown - 1.0, extra, kernels::DelayMode::Idle);
    }
    auto shared_mb = std::make_shared<data::MiniBatch>(std::move(*mb));
    cs.host_task([this, w, k, flag_host, step_index, shared_mb, actual] {
      double t = now_real();
      std::lock_guard<std::mutex> g(m);
      // The controller takes completions in time order: two notices racing for the
      // lock keep the order in which they got it.
      t = std::max(t, rs.last_notice_t);
      rs.last_notice_t = t;
      const bool current = rs.step == step_index;
      const bool counted = current && controller->on_complete(w, t, actual);
      *flag_host = counted ? 1 : 0;
      if (counted) {
        queue->commit(*shared_mb);
        rs.last_counted[w] = k;
      } else {
        queue->give_back(std::move(*shared_mb));
        ++rs.wasted;
      }
      if (current) --rs.pending[w];
      --rs.inflight[w];
      cv.notify_all();
    });
    commit_if(cs, wk.slot(k).scratch.as<float>(), wk.accumulator(), P, flag_dev);
    cs.record(wk.slot(k).done);
  }
  std::lock_guard<std::mutex> lk(m);
  rs.delay_s[w] += stall + injected_mean;
  rs.idle[w] = true;
  cv.notify_all();
}

void Engine::Impl::issuer_loop(int w) {
  int64_t seen = -1;
  if (workers[w]->ctx().backend() == Backend::Cuda) bind_thread_to_device(workers[w]->ctx().device().ordinal);
  for (;;) {
    int64_t s;
    {
      std::unique_lock<std::mutex> lk(m);
      cv.wait(lk, [&] { return shutting_down || issue_gen > seen; });
      if (shutting_down) return;
      seen = s = issue_gen;
    }
    try {
      issue_real(w, s);
    } catch (...) {
      std::lock_guard<std::mutex> lk(m);
      if (!issue_error) issue_error = std::current_exception();
      rs.idle[w] = true;
      controller->close_at(now_real());
      cv.notify_all();
    }
  }
}

void Engine::Impl::step_real(StepResult& r) {
  const double t0 = now_real();
  std::unique_lock<std::mutex> lk(m);
  rs.step = step;
  rs.pending.assign(n(), 0);
  rs.last_counted.assign(n(), -1);
  rs.idle.assign(n(), false);
  rs.delay_s.assign(n(), 0.0);
  rs.wasted = 0;
  controller->begin_step(t0);
  r.epoch = queue->current_epoch();
  issue_gen = step;
  cv.notify_all();
  for (;;) {
    const bool all_idle = std::all_of(rs.idle.begin(), rs.idle.end(), [](bool b) { return b; }) &&
                          std::all_of(rs.pending.begin(), rs.pending.end(), [](int x) { return x <= 0; });
    if (controller->closed() || all_idle) break;
    if (auto d = controller->deadline()) {
      if (now_real() >= *d) {
        controller->close_at(*d);
        break;
      }
      cv.wait_for(lk, std::chrono::duration<double>(*d - now_real()));
    } else {
      cv.wait(lk);
    }
  }
  if (!controller->closed()) controller->close_at(now_real());
  cv.notify_all();
  // Wait until every issuer has stopped: then each issue sequence is fully enqueued
  // and the done event of each worker's last counted slot follows its commit.
  cv.wait(lk, [&] { return std::all_of(rs.idle.begin(), rs.idle.end(), [](bool b) { return b; }); });
  if (issue_error) std::rethrow_exception(issue_error);
  std::vector<const Event*> ready(n(), nullptr);
  for (int w = 0; w < n(); ++w)
    ready[w] = rs.last_counted[w] >= 0 ? &workers[w]->slot(rs.last_counted[w]).done : &workers[w]->update_done;
  r.finished = controller->finished();
  r.samples = 0;
  for (int s : controller->finished_samples()) r.samples += s;
  r.window_s = controller->close_time() - t0;
  r.delay_s = rs.delay_s;
  r.wasted = rs.wasted;
  rs.step = -1;  // notices still to come for this step are cancellations
  lk.unlock();
  r.lr = schedule.lr_at(step);
  exchange_and_update(step, r.lr, static_cast<int>(step % readback_slots), ready);
  r.t_end = now_real() - clock_base;
}

}  // namespace nbsgd::engine
