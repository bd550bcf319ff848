// RealDriver: the window on the real clock (GPUs, or host workers with --clock
// real), for every exchange. One issuer thread per worker, bound to its device,
// enqueues that worker's mini-batches; the trainer's thread only opens and closes
// windows.
//   - Non-blocking windows (fastest, quorum:K, deadline:MS, adaptive; global scope):
//     an issuer keeps at most --inflight mini-batches of its worker in flight
//     (counting a cancelled one still running). Each mini-batch: stage, stamp,
//     forward/backward into the slot's scratch, injected straggling, a completion
//     notice (a host task that asks the StepController whether it counts, under the
//     driver's lock, and writes the slot's mapped flag), the flag-guarded commit,
//     the slot's done event. When the window closes, what still runs is cancelled:
//     its commit is a no-op and its samples go back to the queue.
//   - --window sync: every mini-batch counts, so nothing is decided on the host.
//     The step's mini-batches are handed out at the start, round-robin (mini-batch
//     k of every worker, worker 0 first: the virtual clock's order at equal speeds),
//     and the issuers enqueue them with plain commits. step() returns once they are
//     enqueued, without waiting for any worker: each worker's exchange then waits
//     only on the events the exchange names (for gossip, its neighbours'), so the
//     blocking gossip baselines have no global barrier. The trainer's read-back ring
//     bounds how far the host runs ahead.
//   Tracing (trace_spans(true); --trace): every mini-batch reports its span when it
//     ends, from the times the driver takes anyway. Host backend: its begin is the
//     moment its stream reaches it (the cancellable unit's check), its end the
//     completion notice, and an injected throttle's start a host task between the
//     two. CUDA: its end is the completion notice's host time, its begin the
//     worker's previous end or its window's open (an injected stall taken as the
//     drawn length from the open), and a throttle stays inside the mini-batch's
//     span; nothing waits on the device for them. Sync steps have no notices: when
//     tracing, each mini-batch gets a host task that reports its end.
#include <algorithm>
#include <atomic>
#include <limits>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <thread>

#include "kernels/basic.h"
#include "kernels/throttle.h"
#include "nets/optim/commit.h"
#include "runtime/device/check.h"
#include "runtime/device/nvtx.h"
#include "runtime/train/commit_if.h"
#include "runtime/train/timeline.h"
#include "runtime/train/virtual_driver.h"

namespace nbsgd::engine {

namespace {

class RealDriver final : public WindowDriver {
 public:
  RealDriver(Setup& s, Exchange&) : s_(s), ctl_(s.ctl), sync_(s.ctl.window.kind == WindowKind::Sync) {
    const int N = s.n();
    clock_base_ = steady_now_s();
    inflight_.assign(N, 0);
    last_done_t_.assign(N, 0.0);
    trace_prev_end_.assign(N, 0.0);
    next_slot_.assign(N, 0);
    plan_.resize(N);
    for (auto& w : s.workers) skipped_.emplace_back(w->slots(), 0);
    started_ = std::vector<std::atomic<int64_t>>(static_cast<size_t>(N));
    for (auto& a : started_) a.store(-1);
    for (auto& w : s.workers) {
      flags_.push_back(Buffer::mapped(w->ctx().backend(), w->slots() * sizeof(int)));
      stamps_.push_back(Buffer(w->ctx().backend(), w->ctx().device().ordinal, w->slots() * sizeof(uint64_t)));
    }
    for (int i = 0; i < N; ++i) issuers_.emplace_back([this, i] { issuer_loop(i); });
  }
  ~RealDriver() override { stop(); }

  double now() const override { return steady_now_s() - clock_base_; }
  std::string save_state() const override { return nlohmann::json{{"real_clock_s", now()}}.dump(); }
  // A resumed real-clock run continues the clock of its checkpoint.
  void restore_state(const std::string& state, int64_t) override {
    auto st = nlohmann::json::parse(state, nullptr, false);
    if (st.is_discarded() || !st.is_object() || !st.contains("real_clock_s") || !st["real_clock_s"].is_number())
      throw InputError("it was written by a virtual-clock run; resume it with --clock virtual");
    clock_base_ = steady_now_s() - st["real_clock_s"].get<double>();
  }
  int64_t wasted() const override {
    std::lock_guard<std::mutex> lk(m_);
    return wasted_;
  }

  void stop() override {
    {
      std::lock_guard<std::mutex> lk(m_);
      if (shutting_down_) return;
      shutting_down_ = true;
    }
    cv_.notify_all();
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
  }
  int abandoned_holds() const override { return abandoned_holds_; }
  void take_spans(std::vector<TraceSpan>& out) override {
    std::lock_guard<std::mutex> lk(m_);
    for (auto& sp : trace_buf_) out.push_back(sp);
    trace_buf_.clear();
  }
  int64_t skipped() const override {
    std::lock_guard<std::mutex> lk(m_);
    return skipped_before_start_;
  }

  void step(int64_t step, StepWindow& out) override {
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
    issue_gen_ = step;
    cv_.notify_all();
    if (!sync_) wait_for_close(lk);
    // Every issuer has stopped: its sequence is fully enqueued, and the done event of
    // its last counted slot follows its commit.
    cv_.wait(lk, [&] { return std::all_of(idle_.begin(), idle_.end(), [](bool b) { return b; }); });
    if (issue_error_) std::rethrow_exception(issue_error_);
    out.ready.assign(N, nullptr);
    out.running.assign(N, nullptr);
    for (int w = 0; w < N; ++w) {
      out.ready[w] = last_counted_[w] >= 0 ? &s_.workers[w]->slot(last_counted_[w]).done
                                           : &s_.workers[w]->accumulator_free(step);
      // The window is closed: a mini-batch of this step that began is running or
      // done (those that did not are skipped), and the last one to begin ends last.
      const int64_t st = started_[w].load();
      if (!sync_ && st >= 0 && st / kSlotCode == step) out.running[w] = &s_.workers[w]->slot(int(st % kSlotCode)).done;
    }
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
  }

 private:
  // --window sync: hand out every worker's m mini-batches now, round-robin.
  void plan_sync_step(StepWindow& out) {
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

  void wait_for_close(std::unique_lock<std::mutex>& lk) {
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
    cv_.notify_all();
  }

  void issuer_loop(int w) {
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
        issue(w, st, trace ? std::optional<double>(open) : std::nullopt);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m_);
        if (!issue_error_) issue_error_ = std::current_exception();
        idle_[w] = true;
        ctl_.close_at(steady_now_s());
        cv_.notify_all();
      }
    }
  }

  // The next mini-batch of worker w in this step, or nothing: the window's, under
  // the lock (non-blocking windows), or the step's plan (sync).
  std::optional<data::MiniBatch> next(int w, size_t& planned) {
    if (sync_) {
      if (planned >= plan_[w].size()) return std::nullopt;
      return std::move(plan_[w][planned++]);
    }
    std::unique_lock<std::mutex> lk(m_);
    cv_.wait(lk, [&] { return ctl_.closed() || inflight_[w] < s_.cfg.inflight; });
    const int size = ctl_.closed() ? 0 : ctl_.next_size(w);
    std::optional<data::MiniBatch> mb;
    if (size > 0) mb = s_.queue->take(size);
    if (!mb) return mb;
    ctl_.on_start(w, static_cast<int>(mb->indices.size()));
    ++inflight_[w];
    ++pending_[w];
    return mb;
  }

  // What a traced mini-batch (or stall) learns on its way through the stream: host
  // times on the steady clock, < 0 where unknown (CUDA).
  struct Probe {
    double begin = -1, mid = -1;  // mid: the injected throttle's start
    double not_before = 0;        // CUDA: its window's open
  };

  // Under the lock: the spans of a traced mini-batch that ended at steady time t.
  void record_span(int w, int64_t step, const Probe& p, double t, int size, TraceSpan::Fate fate) {
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

  // trace: the step's window open (steady clock) when the step is traced.
  void issue(int w, int64_t step, std::optional<double> trace) {
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
        const double b = std::max(trace_prev_end_[w], *trace - clock_base_);
        trace_buf_.push_back({TraceSpan::Kind::Stall, TraceSpan::Fate::Counted, w, 0, b, b + stall, step});
        trace_prev_end_[w] = b + stall;
      }
    }
    const double slowdown = dev.slowdown(step);
    double injected = 0;
    int last = -1;
    size_t planned = 0;
    for (;;) {
      std::optional<data::MiniBatch> mb = next(w, planned);
      if (!mb) break;
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
      // Decided on the stream when the mini-batch is about to begin: skipped if its
      // window has closed, else it runs, and the step's update must wait for it.
      // (Mark first, then look: with the trainer's close-then-read, either this sees
      // the close and skips, or the trainer sees the mark and waits for it.)
      std::shared_ptr<Probe> probe;
      if (trace) {
        probe = std::make_shared<Probe>();
        probe->not_before = *trace;
      }
      auto closed = [this, w, k, step, probe] {
        if (probe) probe->begin = steady_now_s();
        started_[w].store(step * kSlotCode + k);
        return closed_through_.load() >= step;
      };
      // Sync: nothing is cancelled; a traced mini-batch on the host takes its begin
      // from the same check, which then never cancels.
      const bool unit = !sync_ || (probe && host);
      if (!sync_) {
        // Staging only asks (it may run well ahead); the compute's first task decides.
        wk.ctx().copy().begin_cancellable([this, step] { return closed_through_.load() >= step; });
        cs.begin_cancellable(closed, skipped);
      } else if (unit) {
        cs.begin_cancellable([probe] {
          probe->begin = steady_now_s();
          return false;
        });
      }
      wk.stage_and_compute(k, s_.data.train, mb->indices, stamp);
      if (slowdown > 1.0 || extra > 0) {
        NBSGD_NVTX_RANGE("injected:throttle", nvtx::kInjected);
        if (probe && host) cs.host_task([probe] { probe->mid = steady_now_s(); });
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
        last = k;
      } else {
        enqueue_notice(w, k, step, std::move(*mb), actual, skipped, probe);
        commit_if(cs, wk.slot(k).scratch.as<float>(), wk.accumulator(step), s_.P,
                  static_cast<const int*>(flags_[w].device_data()) + k);
      }
      cs.record(wk.slot(k).done);
    }
    std::lock_guard<std::mutex> lk(m_);
    if (sync_) last_counted_[w] = last;
    delay_s_[w] += stall + injected;  // the throttle's share is known only on the device
    idle_[w] = true;
    cv_.notify_all();
  }

  // A host task after the mini-batch's compute and injected delay: counted or
  // cancelled, decided under the lock, written to the slot's mapped flag.
  void enqueue_notice(int w, int k, int64_t step, data::MiniBatch mb, int actual, const int* skipped,
                      std::shared_ptr<Probe> probe) {
    int* flag_host = flags_[w].as<int>() + k;
    auto shared_mb = std::make_shared<data::MiniBatch>(std::move(mb));
    s_.workers[w]->ctx().compute().host_task([this, w, k, flag_host, step, shared_mb, actual, skipped, probe] {
      double t = steady_now_s();
      std::lock_guard<std::mutex> g(m_);
      // The controller takes completions in time order: two notices racing for the
      // lock keep the order in which they got it.
      t = std::max(t, last_notice_t_);
      last_notice_t_ = t;
      const bool current = step_ == step;
      // adaptive: every mini-batch that ran feeds the rate estimate, its service time
      // taken from the worker's previous completion (its stream runs them in order).
      if (!*skipped) ctl_.observe(w, std::max(last_done_t_[w], ctl_.step_start()), t, actual);
      last_done_t_[w] = t;
      const bool counted = current && ctl_.on_complete(w, t, actual);
      *flag_host = counted ? 1 : 0;
      if (counted) {
        s_.queue->commit(*shared_mb);
        last_counted_[w] = k;
      } else {
        s_.queue->give_back(std::move(*shared_mb));
        ++(*skipped ? skipped_before_start_ : wasted_);
      }
      if (probe)
        record_span(w, step, *probe, t, actual,
                    counted ? TraceSpan::Fate::Counted : *skipped ? TraceSpan::Fate::Skipped : TraceSpan::Fate::Wasted);
      if (current) --pending_[w];
      --inflight_[w];
      cv_.notify_all();
    });
  }

  Setup& s_;
  StepController ctl_;
  const bool sync_;
  double clock_base_ = 0;
  mutable std::mutex m_;
  std::condition_variable cv_;
  int64_t step_ = -1;  // the step whose window is open
  std::vector<int> inflight_, pending_, last_counted_, next_slot_;
  std::vector<bool> idle_;
  std::vector<double> delay_s_;
  std::vector<std::vector<data::MiniBatch>> plan_;
  int64_t wasted_ = 0, reported_wasted_ = 0;
  int64_t skipped_before_start_ = 0;  // cancelled before they began: no work done
  std::atomic<int64_t> closed_through_{-1};  // the latest step whose window closed
  // Per worker: step * kSlotCode + slot of the latest mini-batch that began (-1).
  static constexpr int64_t kSlotCode = 1 << 16;
  std::vector<std::atomic<int64_t>> started_;
  std::vector<std::vector<int>> skipped_;    // per worker, per slot: set by the stream
  int abandoned_holds_ = 0;
  std::vector<double> last_done_t_;  // per worker: its latest completion notice  // cumulative: a cancellation is noticed when it ends
  double last_notice_t_ = 0;
  // Tracing: the step's flag and window open (steady clock) for the issuers, the
  // spans reported and not yet taken, and per worker the latest traced end (run clock).
  bool trace_step_ = false;
  double step_open_ = 0;
  std::vector<TraceSpan> trace_buf_;
  std::vector<double> trace_prev_end_;
  std::vector<Buffer> flags_, stamps_;
  std::vector<std::thread> issuers_;
  int64_t issue_gen_ = -1;
  bool shutting_down_ = false;
  std::exception_ptr issue_error_;
};

}  // namespace

std::unique_ptr<WindowDriver> make_real_driver(Setup& s, Exchange& x) { return std::make_unique<RealDriver>(s, x); }

}  // namespace nbsgd::engine
