// RealDriver: the window on the real clock (GPUs, or host workers with --clock
// real), for every exchange. One issuer thread per worker, bound to its device,
// enqueues that worker's mini-batches; the trainer's thread only opens and closes
// windows.
//   - Non-blocking windows (fastest, quorum:K, deadline:MS, adaptive; global scope):
//     an issuer keeps at most --inflight mini-batches of its worker in flight
//     (counting a cancelled one still running). Each mini-batch: stage, stamp,
//     forward/backward into the slot's scratch, injected straggling, and the slot's
//     `computed` event: that is all the compute stream holds. The worker's
//     completion watcher (a thread) waits on each `computed` in order, asks the
//     StepController whether the mini-batch counts, under the driver's lock, and
//     then enqueues, on the worker's comm stream, its commit into the step's
//     accumulator if it counts, and the slot's done event. No host function is in
//     the compute stream: the GPU never waits for the host's decision, and the next
//     mini-batch runs while it is made. When the window closes, what still runs is
//     cancelled: it gets no commit and its samples go back to the queue.
//   - --window sync: every mini-batch counts, so nothing is decided on the host.
//     The step's mini-batches are handed out at the start, round-robin (mini-batch
//     k of every worker, worker 0 first: the virtual clock's order at equal speeds),
//     and the issuers enqueue them with plain commits. step() returns once they are
//     enqueued, without waiting for any worker: each worker's exchange then waits
//     only on the events the exchange names (for gossip, its neighbours'), so the
//     blocking gossip baselines have no global barrier. The trainer's read-back ring
//     bounds how far the host runs ahead.
//   Across ranks (mpirun/srun, ranks.h; host workers, the ring): rank 0 decides
//     every worker's window. Its coordinator thread runs the same StepController,
//     fed by messages from the other ranks' issuers and notices: a hand-out request
//     (answered with the mini-batch, taken from rank 0's epoch queue, the only one
//     that decides), a completion (answered counted or cancelled, decided at its
//     arrival on rank 0's clock) and the end of an issuer's step. At the close rank
//     0 tells every rank (its queued work is skipped from then on), and once every
//     issuer has stopped it sends the step's result: every worker's counted
//     mini-batches and samples, and the epoch queue's operations since the last
//     result, which the other ranks replay so that their queues stay rank 0's, bit
//     for bit (the queue's batches are a function of its calls' order, epoch_queue.h).
//     Then every rank all-gathers the accumulators (ranks.h) and runs the same
//     in-process ring. --window sync decides nothing: every rank plans the step from
//     its own copy of the queue, which is rank 0's.
//   Tracing (trace_spans(true); --trace): every mini-batch reports its span when it
//     ends, from the times the driver takes anyway. Host backend: its begin is the
//     moment its stream reaches it (the cancellable unit's check), its end the
//     moment its stream reached its `computed` event, and an injected throttle's
//     start a host task between the two. CUDA: its end is the watcher's host time
//     on noticing it, its begin the
//     worker's previous end or its window's open (an injected stall taken as the
//     drawn length from the open), and a throttle stays inside the mini-batch's
//     span; nothing waits on the device for them. Sync steps have no notices: when
//     tracing, each mini-batch gets a host task that reports its end.


#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <string>
#include <limits>

#include "kernels/basic.h"
#include "kernels/throttle.h"
#include "nets/optim/commit.h"
#include "runtime/device/nvtx.h"
#include "runtime/train/ranks.h"
#include "runtime/train/real_driver_impl.h"

namespace nbsgd::engine {

namespace real_clock {

void RealDriver::stop() {
  {
    std::lock_guard<std::mutex> lk(m_);
    if (shutting_down_) return;
    shutting_down_ = true;
  }
  // Unwinding from an error: it ends every rank (MPI_Abort) once it reaches
  // main; the messages' threads stop at once rather than wait for the others.
  const bool unwinding = std::uncaught_exceptions() > 0;
  if (unwinding) {
    coord_cancel_.store(true);
    courier_cancel_.store(true);
  }
  wake_all();
  for (auto& t : issuers_) t.join();
  // The end of the run waits for no stalled worker: queued work is skipped and
  // injected stalls and delays still held return at once; only a mini-batch's
  // own computation that is already running is waited for.
  closed_through_.store(std::numeric_limits<int64_t>::max());
  for (auto& w : s_.workers) w->ctx().compute().abandon_holds();
  for (auto& w : s_.workers) {
    w->ctx().compute().synchronize();
    abandoned_holds_ += w->ctx().compute().abandon_holds();  // again: now the count of those cut short
  }
  // Every mini-batch's work is done: the watchers notice what is left, and end.
  for (auto& wt : watches_) {
    {
      std::lock_guard<std::mutex> g(wt->m);
      wt->stop = true;
    }
    wt->cv.notify_all();
  }
  for (auto& wt : watches_)
    if (wt->thread.joinable()) wt->thread.join();
  // Across ranks: this rank's notices have all been answered; rank 0's
  // coordinator ends once every other rank has said so, and answers each.
  if (unwinding) {
    if (courier_.joinable()) courier_.join();
    if (coordinator_.joinable()) coordinator_.join();
    return;
  }
  report_stats();
  if (remote_) {
    send_words(0, kReqTag, {kBye, 0, s_.span.rank}, "the end of the run");
    wait_bounded_for([&] { return fin_; }, "the end of the run (rank 0's answer)");
    courier_.join();
  }
  if (coord_) {
    wait_bounded_for([&] { return coord_done_; }, "the end of the run (every rank's last completions)");
    coordinator_.join();
  }
}

void RealDriver::step(int64_t step, StepWindow& out) {
  if (remote_) return remote_step(step, out);
  const int N = s_.n();
  const double t0 = steady_now_s();
  std::unique_lock<std::mutex> lk(m_);
  step_ = step;
  pending_.assign(N, 0);
  last_counted_.assign(N, -1);
  idle_.assign(N, false);
  delay_s_.assign(N, 0.0);
  out.epoch = s_.queue->current_epoch();
  if (sync_) plan_sync_step(out);
  ctl_.begin_step(t0);
  trace_step_ = trace_;
  step_open_ = t0;
  opens_[static_cast<size_t>(step) % opens_.size()] = {step, t0};
  issue_gen_ = step;
  begun_ = step;
  wake_all();
  // Requests from other ranks that came before this step began.
  if (coord_) {
    std::vector<std::pair<int, std::vector<int64_t>>> early;
    early.swap(deferred_);
    for (auto& [src, msg] : early) handle(src, msg);
  }
  if (!sync_) wait_for_close(lk);
  announce_close(step);  // a deadline's, a signal's, or every worker's end: not sent yet
  // Every issuer has stopped: its sequence is fully enqueued, and the done event of
  // its last counted slot follows its commit.
  auto all_idle = [&] { return std::all_of(idle_.begin(), idle_.end(), [](bool b) { return b; }); };
  if (coord_)
    wait_bounded_for(lk, all_idle, "the end of every rank's issuing");
  else
    cv_.wait(lk, all_idle);
  if (issue_error_) std::rethrow_exception(issue_error_);
  fill_events(step, out);
  if (!sync_) {
    out.finished = ctl_.finished();
    out.samples = ctl_.finished_samples();
    out.window_s = ctl_.close_time() - t0;
  }
  out.delay_s = delay_s_;
  // Sync on the real clock: the window is the step itself, known once it ended.
  out.open_t.assign(N, t0 - clock_base_);
  if (!sync_) out.close_t.assign(N, ctl_.close_time() - clock_base_);
  out.wasted = wasted_ - reported_wasted_;  // cancellations noticed since the last step
  reported_wasted_ = wasted_;
  step_ = -1;  // notices still to come for this step are cancellations
  if (coord_ && !sync_) {
    std::vector<int64_t> r{kResult, step, out.epoch, dbits(out.window_s), dbits(out.close_t[0]), out.wasted, N};
    for (int w = 0; w < N; ++w) r.push_back(out.finished[w]);
    for (int w = 0; w < N; ++w) r.push_back(out.samples[w]);
    for (int w = 0; w < N; ++w) r.push_back(dbits(out.delay_s[w]));
    r.push_back(static_cast<int64_t>(qlog_.size() / 3));  // operations, of 3 words each
    r.insert(r.end(), qlog_.begin(), qlog_.end());
    qlog_.clear();
    for (int rk = 1; rk < s_.span.ranks; ++rk) send_words(rk, kCourierTag, r, "the window's result");
  }
  lk.unlock();
  if (s_.span.spans()) share_accumulators(s_, out.ready, step);
}

// Under the lock, every issuer stopped: each worker's accumulator's last writer
// (its last counted slot's done event, or the update that freed it) and the end
// of its running mini-batch. The window is closed: a mini-batch of this step that
// began is running or done (those that did not are skipped), and the last one to
// begin ends last.
void RealDriver::fill_events(int64_t step, StepWindow& out) {
  const int N = s_.n();
  out.ready.assign(N, nullptr);
  out.running.assign(N, nullptr);
  for (int w = 0; w < N; ++w) {
    out.ready[w] = last_counted_[w] >= 0 ? &s_.workers[w]->slot(last_counted_[w]).done
                                         : &s_.workers[w]->accumulator_free(step);
    const int64_t st = started_[w].load();
    if (!sync_ && st >= 0 && st / kSlotCode == step)
      out.running[w] = &s_.workers[w]->slot(int(st % kSlotCode)).computed;
  }
}

// --window sync: hand out every worker's m mini-batches now, round-robin.
void RealDriver::plan_sync_step(StepWindow& out) {
  const int N = s_.n(), b = s_.ctl.mini_batch();
  out.finished.assign(N, 0);
  out.samples.assign(N, 0);
  for (auto& p : plan_) p.clear();
  for (int k = 0; k < s_.ctl.split; ++k)
    for (int i = 0; i < N; ++i)
      if (auto mb = s_.queue->take(b)) {
        ++out.finished[i];
        out.samples[i] += static_cast<int>(mb->indices.size());
        s_.queue->commit(*mb);
        plan_[i].push_back(std::move(*mb));
      }
}

void RealDriver::wait_for_close(std::unique_lock<std::mutex>& lk) {
  // A signal handler cannot notify the condition variable: with a stop flag to
  // watch, no wait is longer than this, and a set flag closes the window now.
  constexpr double kStopPoll_s = 0.02;
  for (;;) {
    const bool all_idle = std::all_of(idle_.begin(), idle_.end(), [](bool b) { return b; }) &&
                          std::all_of(pending_.begin(), pending_.end(), [](int x) { return x <= 0; });
    if (ctl_.closed() || all_idle) break;
    if (stop_ && stop_->load()) break;
    if (auto d = ctl_.deadline()) {
      if (steady_now_s() >= *d) {
        ctl_.close_at(*d);
        break;
      }
      const double wait = *d - steady_now_s();
      cv_.wait_for(lk, std::chrono::duration<double>(stop_ ? std::min(wait, kStopPoll_s) : wait));
    } else if (stop_) {
      cv_.wait_for(lk, std::chrono::duration<double>(kStopPoll_s));
    } else {
      cv_.wait(lk);
    }
  }
  if (!ctl_.closed()) ctl_.close_at(steady_now_s());
  closed_through_.store(step_);  // queued work of this step is skipped from now on
  poke_streams();
  wake_all();
}

void RealDriver::issuer_loop(int w) {
  name_this_thread("issue", w);
  CpuTally tally{*this};
  int64_t seen = -1;
  bool trace = false;
  double open = 0;
  if (s_.workers[w]->ctx().backend() == Backend::Cuda) bind_thread_to_device(s_.workers[w]->ctx().device().ordinal);
  for (;;) {
    int64_t st;
    {
      std::unique_lock<std::mutex> lk(m_);
      cv_.wait(lk, [&] { return shutting_down_ || issue_gen_ > seen; });
      if (shutting_down_) return;
      seen = st = issue_gen_;
      trace = trace_step_;
      open = step_open_;
    }
    try {
      issue(w, st, open, trace);
    } catch (...) {
      std::lock_guard<std::mutex> lk(m_);
      if (!issue_error_) issue_error_ = std::current_exception();
      idle_[w] = true;
      ctl_.close_at(steady_now_s());
      wake_all();
    }
  }
}

// The next mini-batch of worker w in this step, or nothing: the window's, under
// the lock (non-blocking windows), or the step's plan (sync).
std::optional<data::MiniBatch> RealDriver::next(int w, int64_t step, size_t& planned) {
  if (sync_) {
    if (planned >= plan_[w].size()) return std::nullopt;
    return std::move(plan_[w][planned++]);
  }
  if (remote_) return remote_next(w, step);
  std::unique_lock<std::mutex> lk(m_);
  issue_cv_[w].wait(lk, [&] { return ctl_.closed() || inflight_[w] < s_.cfg.inflight; });
  const int size = ctl_.closed() ? 0 : ctl_.next_size(w);
  std::optional<data::MiniBatch> mb;
  if (size > 0) mb = q_take(size);
  if (!mb) return mb;
  ctl_.on_start(w, static_cast<int>(mb->indices.size()));
  handed_alone_[w] = inflight_[w] == 0;
  ++inflight_[w];
  ++pending_[w];
  return mb;
}

// Under the lock: the spans of a traced mini-batch that ended at steady time t.
void RealDriver::record_span(int w, int64_t step, const Probe& p, double t, int size, TraceSpan::Fate fate) {
  const double end = t - clock_base_;
  double begin = p.begin >= 0 ? p.begin - clock_base_ : std::max(trace_prev_end_[w], p.not_before - clock_base_);
  if (fate == TraceSpan::Fate::Skipped) begin = end;
  begin = std::min(begin, end);
  TraceSpan mb{TraceSpan::Kind::MiniBatch, fate, w, size, begin, end, step};
  if (p.mid >= 0 && fate != TraceSpan::Fate::Skipped) {
    mb.end = std::clamp(p.mid - clock_base_, begin, end);
    trace_buf_.push_back({TraceSpan::Kind::Throttle, fate, w, size, mb.end, end, step});
  }
  trace_buf_.push_back(mb);
  trace_prev_end_[w] = std::max(trace_prev_end_[w], end);
}

void RealDriver::issue(int w, int64_t step, double open, bool trace) {
  Worker& wk = *s_.workers[w];
  const bool host = wk.ctx().backend() == Backend::Host;
  const auto& dev = s_.profile.devices[w];
  straggler::Rng delay_rng = step_stream(s_.profile, w, step, straggler::RngPurpose::Delay);
  straggler::Rng stall_rng = step_stream(s_.profile, w, step, straggler::RngPurpose::Stall);
  const double stall = dev.draw_stall_s(stall_rng, step);
  Stream& cs = wk.ctx().compute();
  if (stall > 0) {
    NBSGD_NVTX_RANGE("injected:stall", nvtx::kInjected);
    cs.wait(wk.update_done);
    auto probe = trace && host ? std::make_shared<Probe>() : nullptr;
    if (probe) cs.host_task([probe] { probe->begin = steady_now_s(); });
    kernels::delay(cs, stall);
    if (probe) {
      cs.host_task([this, w, step, probe] {
        std::lock_guard<std::mutex> g(m_);
        const double end = steady_now_s() - clock_base_;
        trace_buf_.push_back({TraceSpan::Kind::Stall, TraceSpan::Fate::Counted, w, 0,
                              std::min(probe->begin - clock_base_, end), end, step});
        trace_prev_end_[w] = std::max(trace_prev_end_[w], end);
      });
    } else if (trace) {
      std::lock_guard<std::mutex> g(m_);
      const double b = std::max(trace_prev_end_[w], open - clock_base_);
      trace_buf_.push_back({TraceSpan::Kind::Stall, TraceSpan::Fate::Counted, w, 0, b, b + stall, step});
      trace_prev_end_[w] = b + stall;
    }
  }
  const double slowdown = dev.slowdown(step);
  double injected = 0;
  int last = -1;
  size_t planned = 0;
  for (int handed_in_step = 0;; ++handed_in_step) {
    std::optional<data::MiniBatch> mb = next(w, step, planned);
    if (!mb) break;
    // (handed_alone_[w] is this issuer's own: written by its next() alone.)
    const double handed = host && !sync_ && !remote_ && handed_in_step > 0 && handed_alone_[w] ? steady_now_s() : -1;
    const int actual = static_cast<int>(mb->indices.size());
    const int k = next_slot_[w];
    next_slot_[w] = (k + 1) % wk.slots();
    const double extra = dev.draw_delay_s(delay_rng, step);
    injected += extra;
    uint64_t* stamp = stamps_[w].as<uint64_t>() + k;
    // A mini-batch whose window has closed before it begins does no work: no
    // staging, no compute, no throttle (a running one still runs to its end).
    int* skipped = skipped_[w].data() + k;
    *skipped = 0;
    int* cut = cut_[w].data() + k;
    *cut = 0;
    double* began = began_[w].data() + k;
    *began = -1.0;
    // Decided on the stream when the mini-batch is about to begin: skipped if its
    // window has closed, else it runs, and the step's update must wait for it.
    // (Mark first, then look: with the trainer's close-then-read, either this sees
    // the close and skips, or the trainer sees the mark and waits for it.)
    std::shared_ptr<Probe> probe;
    if (trace) {
      probe = std::make_shared<Probe>();
      probe->not_before = open;
    }
    auto closed = [this, w, k, step, probe, began, host] {
      if (host) *began = steady_now_s();
      if (probe) probe->begin = host ? *began : steady_now_s();
      started_[w].store(step * kSlotCode + k);
      return closed_through_.load() >= step;
    };
    // Sync: nothing is cancelled; a traced mini-batch on the host takes its begin
    // from the same check, which then never cancels.
    const bool unit = !sync_ || (probe && host);
    // The mini-batch's enqueues wake the idle host compute stream once, at the end
    // of the scope, not once per task: on 2 cores every wake-up preempts a compute
    // thread. (The staging is one batch of its own: stage_and_compute.)
    StreamBatch batch{cs};
    if (!sync_) {
      // Staging only asks (it may run well ahead); the compute's first task decides.
      wk.ctx().copy().begin_cancellable([this, step] { return closed_through_.load() >= step; });
      cs.begin_cancellable(closed, skipped);
      if (kernel_cancel_) cs.cancel_at_kernels([this, step] { return closed_through_.load() >= step; }, cut);
    } else if (unit) {
      cs.begin_cancellable([probe] {
        probe->begin = steady_now_s();
        return false;
      });
    }
    wk.stage_and_compute(k, s_.data.train, mb->indices, stamp);
    if (slowdown > 1.0 || extra > 0) {
      NBSGD_NVTX_RANGE("injected:throttle", nvtx::kInjected);
      if (probe && host) cs.host_bookkeeping([probe] { probe->mid = steady_now_s(); });
      kernels::throttle(cs, stamp, slowdown - 1.0, extra, kernels::DelayMode::Idle);
    }
    if (unit) cs.end_cancellable();
    if (!sync_) wk.ctx().copy().end_cancellable();
    if (sync_) {
      if (probe)
        cs.host_task([this, w, step, probe, actual] {
          const double t = steady_now_s();
          std::lock_guard<std::mutex> g(m_);
          record_span(w, step, *probe, t, actual, TraceSpan::Fate::Counted);
        });
      optim::commit(cs, wk.slot(k).scratch.as<float>(), wk.accumulator(step), s_.P);
      cs.record(wk.slot(k).done);
      last = k;
    } else {
      cs.record(wk.slot(k).computed);
      enqueue_notice(w, Notice{k, step, std::move(*mb), actual, skipped, began, open, probe, handed, cut});
    }
  }
  // Another rank's worker: rank 0 waits for its end of issuing, and its delay.
  if (remote_) send_words(0, kReqTag, {kIdle, step, w, dbits(stall + injected)}, "the end of a worker's issuing");
  std::lock_guard<std::mutex> lk(m_);
  if (sync_) last_counted_[w] = last;
  delay_s_[w] += stall + injected;  // the throttle's share is known only on the device
  idle_[w] = true;
  wake_all();
}

}  // namespace real_clock

std::unique_ptr<WindowDriver> make_real_driver(Setup& s, Exchange& x) {
  return std::make_unique<real_clock::RealDriver>(s, x);
}

}  // namespace nbsgd::engine
