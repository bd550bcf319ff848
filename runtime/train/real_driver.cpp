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
//     completion notice, and an injected throttle's start a host task between the
//     two. CUDA: its end is the completion notice's host time, its begin the
//     worker's previous end or its window's open (an injected stall taken as the
//     drawn length from the open), and a throttle stays inside the mini-batch's
//     span; nothing waits on the device for them. Sync steps have no notices: when
//     tracing, each mini-batch gets a host task that reports its end.
#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "kernels/basic.h"
#include "kernels/throttle.h"
#include "nets/optim/commit.h"
#include "runtime/device/check.h"
#include "runtime/device/comm/launch.h"
#include "runtime/device/nvtx.h"
#include "runtime/train/commit_if.h"
#include "runtime/train/ranks.h"
#include "runtime/train/timeline.h"
#include "runtime/train/virtual_driver.h"

namespace nbsgd::engine {

namespace {

// The window's messages across ranks: int64 words (doubles by their bits).
enum : int64_t { kNext = 1, kDone = 2, kIdle = 3, kBye = 4 };  // to rank 0 (tag kReqTag)
enum : int64_t { kClose = 1, kResult = 2, kFin = 3 };            // from rank 0 (tag kCourierTag)
constexpr int kReqTag = 1, kCourierTag = 2;
int next_reply_tag(int w) { return 16 + 2 * w; }
int flag_reply_tag(int w) { return 17 + 2 * w; }
int64_t dbits(double d) { return std::bit_cast<int64_t>(d); }
double bitsd(int64_t b) { return std::bit_cast<double>(b); }
std::vector<int64_t> words(const std::vector<unsigned char>& b) {
  std::vector<int64_t> w(b.size() / sizeof(int64_t));
  if (!w.empty()) std::memcpy(w.data(), b.data(), w.size() * sizeof(int64_t));
  return w;
}
void send_words(int dest, int tag, const std::vector<int64_t>& w, const char* what) {
  comm::ranks_send(dest, tag, w.data(), w.size() * sizeof(int64_t), what);
}
// steady_clock since its epoch (CLOCK_MONOTONIC: one clock for every process of a
// machine), minus steady_now_s(), whose origin is this process's own.
double monotonic_offset_s() {
  static const double off =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count() - steady_now_s();
  return off;
}
// Queue operations rank 0 logs for the others to replay: {op, a, b}.
enum : int64_t { kTake = 0, kCommit = 1, kGiveBack = 2 };

class RealDriver final : public WindowDriver {
 public:
  RealDriver(Setup& s, Exchange&)
      : s_(s),
        ctl_(s.ctl),
        sync_(s.ctl.window.kind == WindowKind::Sync),
        coord_(s.span.spans() && s.span.rank == 0),
        remote_(s.span.spans() && s.span.rank != 0) {
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
    counted_in_step_.assign(N, 0);
    for (int i = 0; i < N; ++i)
      if (s.span.owns(i)) issuers_.emplace_back([this, i] { issuer_loop(i); });
    if (coord_) coordinator_ = std::thread([this] { coordinator_loop(); });
    if (remote_) courier_ = std::thread([this] { courier_loop(); });
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
    // Unwinding from an error: it ends every rank (MPI_Abort) once it reaches
    // main; the messages' threads stop at once rather than wait for the others.
    const bool unwinding = std::uncaught_exceptions() > 0;
    if (unwinding) {
      coord_cancel_.store(true);
      courier_cancel_.store(true);
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
    issue_gen_ = step;
    begun_ = step;
    cv_.notify_all();
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

 private:
  // Waits (under lk) until pred(), for at most NBSGD_MPI_TIMEOUT_S: another rank
  // that died or hangs stops every rank with one line.
  template <class Pred>
  void wait_bounded_for(std::unique_lock<std::mutex>& lk, Pred pred, const char* what) {
    const double limit = comm::rank_timeout_s();
    if (!cv_.wait_for(lk, std::chrono::duration<double>(limit), pred))
      comm::ranks_fail(fmt::format("{}: nothing within {:g} s (NBSGD_MPI_TIMEOUT_S): a rank died or hangs; "
                                   "stopping every rank (the last complete checkpoint is kept)",
                                   what, limit));
  }
  template <class Pred>
  void wait_bounded_for(Pred pred, const char* what) {
    std::unique_lock<std::mutex> lk(m_);
    wait_bounded_for(lk, pred, what);
  }

  // NBSGD_MPI_STATS=1 (bench/ranks.sh): per rank, one line at the run's end with
  // the window's cost across ranks: how long after rank 0 closed a window this rank
  // knew it, and the messages it sent.
  void report_stats() {
    const char* v = std::getenv("NBSGD_MPI_STATS");
    if (!s_.span.spans() || !v || std::string(v) != "1") return;
    std::vector<double> d;
    {
      std::lock_guard<std::mutex> lk(m_);
      d = close_delays_;
    }
    std::sort(d.begin(), d.end());
    auto q = [&](double f) { return d.empty() ? -1.0 : 1e6 * d[std::min(d.size() - 1, size_t(f * d.size()))]; };
    const char* key = coord_ ? "close_sent_us" : "close_known_us";
    std::fprintf(stderr, "nbsgd-stats: rank %d closes %zu %s_median %.1f %s_p99 %.1f messages %lld\n", s_.span.rank,
                 d.size(), key, q(0.5), key, q(0.99), static_cast<long long>(comm::ranks_messages_sent()));
  }

  // Rank 0, under the lock, once the window of `step` has closed: tells every other
  // rank, once per step, from the thread that closed it (a completion's, at once).
  void announce_close(int64_t step) {
    if (!coord_ || sync_ || close_sent_ >= step || !ctl_.closed()) return;
    close_sent_ = step;
    for (int r = 1; r < s_.span.ranks; ++r)
      send_words(r, kCourierTag, {kClose, step, dbits(ctl_.close_time() + monotonic_offset_s())}, "the window's close");
    close_delays_.push_back(steady_now_s() - ctl_.close_time());  // the close's decision to its last send
  }

  // Rank 0's epoch queue, logged for the other ranks' replay (windows that decide).
  std::optional<data::MiniBatch> q_take(int size) {
    auto mb = s_.queue->take(size);
    if (coord_) qlog_.insert(qlog_.end(), {kTake, size, mb ? static_cast<int64_t>(mb->id) : -1});
    return mb;
  }
  void q_commit(const data::MiniBatch& mb) {
    if (coord_) qlog_.insert(qlog_.end(), {kCommit, static_cast<int64_t>(mb.id), 0});
    s_.queue->commit(mb);
  }
  void q_give_back(data::MiniBatch mb) {
    if (coord_) qlog_.insert(qlog_.end(), {kGiveBack, static_cast<int64_t>(mb.id), 0});
    s_.queue->give_back(std::move(mb));
  }

  // ---- rank 0 of several: the coordinator thread. Ends once every other rank has
  // said that its run ended (after its last completion was answered).
  void coordinator_loop() {
    std::vector<unsigned char> buf;
    int byes = 0;
    while (byes < s_.span.ranks - 1) {
      const int src = comm::ranks_recv(-1, kReqTag, buf, "the window's coordinator", -1, &coord_cancel_);
      if (src < 0) break;
      std::vector<int64_t> msg = words(buf);
      std::lock_guard<std::mutex> lk(m_);
      if (msg.empty()) continue;
      if (msg[0] == kBye) {
        ++byes;
        continue;
      }
      if (msg[1] > begun_ && !shutting_down_) {
        deferred_.emplace_back(src, std::move(msg));
        continue;
      }
      handle(src, msg);
    }
    for (int r = 1; r < s_.span.ranks; ++r) send_words(r, kCourierTag, {kFin}, "the end of the run");
    std::lock_guard<std::mutex> lk(m_);
    coord_done_ = true;
    cv_.notify_all();
  }

  // Under the lock: one request of another rank's worker, for a step begun.
  void handle(int src, const std::vector<int64_t>& msg) {
    const int64_t kind = msg[0], step = msg[1];
    const int w = static_cast<int>(msg[2]);
    NBSGD_CHECK(w >= 0 && w < s_.n() && !s_.span.owns(w), fmt::format("rank {} spoke for worker {}", src, w));
    if (kind == kNext) {
      std::optional<data::MiniBatch> mb;
      if (step_ == step && !ctl_.closed() && !shutting_down_) {
        const int size = ctl_.next_size(w);
        if (size > 0) mb = q_take(size);
      }
      std::vector<int64_t> r{-1, 0, 0};
      if (mb) {
        const int n = static_cast<int>(mb->indices.size());
        ctl_.on_start(w, n);
        ++pending_[w];
        r = {static_cast<int64_t>(mb->id), mb->epoch, n};
        r.resize(3 + (static_cast<size_t>(n) * sizeof(int32_t) + 7) / 8);
        std::memcpy(r.data() + 3, mb->indices.data(), static_cast<size_t>(n) * sizeof(int32_t));
        remote_out_[mb->id] = std::move(*mb);
      }
      send_words(src, next_reply_tag(w), r, "a mini-batch's hand-out");
    } else if (kind == kDone) {
      const uint64_t id = static_cast<uint64_t>(msg[3]);
      const int actual = static_cast<int>(msg[4]);
      const bool skipped = msg[5] != 0;
      double t = std::max(steady_now_s(), last_notice_t_);
      last_notice_t_ = t;
      const bool current = step_ == step;
      if (!skipped) ctl_.observe(w, std::max(last_done_t_[w], ctl_.step_start()), t, actual);
      last_done_t_[w] = t;
      const bool counted = current && ctl_.on_complete(w, t, actual);
      auto it = remote_out_.find(id);
      NBSGD_CHECK(it != remote_out_.end(), fmt::format("rank {} completed mini-batch {}, never handed out", src, id));
      if (counted) {
        q_commit(it->second);
      } else {
        q_give_back(std::move(it->second));
        ++(skipped ? skipped_before_start_ : wasted_);
      }
      remote_out_.erase(it);
      if (current) --pending_[w];
      send_words(src, flag_reply_tag(w), {counted ? 1 : 0}, "a mini-batch's fate");
      if (current) announce_close(step);
    } else if (kind == kIdle) {
      if (step_ == step) {
        idle_[w] = true;
        delay_s_[w] += bitsd(msg[3]);
      }
    }
    cv_.notify_all();
  }

  // ---- another rank: rank 0's close, result and end, as they come.
  void courier_loop() {
    std::vector<unsigned char> buf;
    for (;;) {
      if (comm::ranks_recv(0, kCourierTag, buf, "the window's close", -1, &courier_cancel_) < 0) return;
      std::vector<int64_t> msg = words(buf);
      if (msg.empty()) continue;
      if (msg[0] == kClose) {
        std::lock_guard<std::mutex> lk(m_);
        closed_through_.store(std::max(closed_through_.load(), msg[1]));
        // One clock on one node (steady_clock is CLOCK_MONOTONIC): the close's delay.
        if (msg.size() > 2) close_delays_.push_back(steady_now_s() + monotonic_offset_s() - bitsd(msg[2]));
      } else if (msg[0] == kResult) {
        std::lock_guard<std::mutex> lk(m_);
        result_ = std::move(msg);
        result_step_ = result_[1];
      } else if (msg[0] == kFin) {
        std::lock_guard<std::mutex> lk(m_);
        fin_ = true;
        cv_.notify_all();
        return;
      }
      cv_.notify_all();
    }
  }

  // Another rank's step: its workers issue, rank 0 decides, the result says what
  // counted; the queue replays rank 0's operations.
  void remote_step(int64_t step, StepWindow& out) {
    const int N = s_.n();
    const double t0 = steady_now_s();
    std::unique_lock<std::mutex> lk(m_);
    step_ = step;
    last_counted_.assign(N, -1);
    counted_in_step_.assign(N, 0);
    idle_.assign(N, true);
    for (int w = 0; w < N; ++w)
      if (s_.span.owns(w)) idle_[w] = false;
    delay_s_.assign(N, 0.0);
    out.epoch = s_.queue->current_epoch();
    if (sync_) plan_sync_step(out);
    trace_step_ = false;
    step_open_ = t0;
    issue_gen_ = step;
    cv_.notify_all();
    if (!sync_) wait_bounded_for(lk, [&] { return result_step_ >= step; }, "the window's result from rank 0");
    wait_bounded_for(lk, [&] { return std::all_of(idle_.begin(), idle_.end(), [](bool b) { return b; }); },
                     "this rank's issuing");
    if (issue_error_) std::rethrow_exception(issue_error_);
    if (!sync_) {
      NBSGD_CHECK(result_step_ == step && static_cast<int>(result_[6]) == N,
                  fmt::format("the window's result from rank 0 is for step {}, not {}", result_step_, step));
      const int64_t* f = result_.data() + 7;
      out.epoch = result_[2];
      out.finished.assign(f, f + N);
      out.samples.assign(f + N, f + 2 * N);
      out.delay_s.resize(N);
      for (int w = 0; w < N; ++w) out.delay_s[w] = bitsd(f[2 * N + w]);
      out.window_s = bitsd(result_[3]);
      out.close_t.assign(N, bitsd(result_[4]));
      out.wasted = result_[5];
      // The counted mini-batches' answers may still be on their way.
      wait_bounded_for(lk,
                       [&] {
                         for (int w = 0; w < N; ++w)
                           if (s_.span.owns(w) && counted_in_step_[w] < out.finished[w]) return false;
                         return true;
                       },
                       "the counted mini-batches' answers from rank 0");
      replay(f + 3 * N);
    } else {
      out.delay_s = delay_s_;
    }
    fill_events(step, out);
    out.open_t.assign(N, t0 - clock_base_);
    step_ = -1;
    lk.unlock();
    share_accumulators(s_, out.ready, step);
  }

  // Under the lock, every issuer stopped: each worker's accumulator's last writer
  // (its last counted slot's done event, or the update that freed it) and the end
  // of its running mini-batch. The window is closed: a mini-batch of this step that
  // began is running or done (those that did not are skipped), and the last one to
  // begin ends last.
  void fill_events(int64_t step, StepWindow& out) {
    const int N = s_.n();
    out.ready.assign(N, nullptr);
    out.running.assign(N, nullptr);
    for (int w = 0; w < N; ++w) {
      out.ready[w] = last_counted_[w] >= 0 ? &s_.workers[w]->slot(last_counted_[w]).done
                                           : &s_.workers[w]->accumulator_free(step);
      const int64_t st = started_[w].load();
      if (!sync_ && st >= 0 && st / kSlotCode == step) out.running[w] = &s_.workers[w]->slot(int(st % kSlotCode)).done;
    }
  }

  // Rank 0's queue operations, {op, a, b} each after the count, on this rank's queue.
  void replay(const int64_t* log) {
    const int64_t n = log[0];
    const int64_t* op = log + 1;
    for (int64_t i = 0; i < n; ++i, op += 3) {
      if (op[0] == kTake) {
        auto mb = s_.queue->take(op[1]);
        NBSGD_CHECK((mb ? static_cast<int64_t>(mb->id) : -1) == op[2],
                    fmt::format("the epoch queue's replay of rank 0's hand-outs diverged: op {} of {}, take({}) gave "
                                "batch {}, rank 0's {}",
                                i, n, op[1], mb ? static_cast<int64_t>(mb->id) : -1, op[2]));
        if (mb) replay_out_[mb->id] = std::move(*mb);
      } else {
        auto it = replay_out_.find(static_cast<uint64_t>(op[1]));
        NBSGD_CHECK(it != replay_out_.end(), "the epoch queue's replay: a batch rank 0 never handed out");
        if (op[0] == kCommit)
          s_.queue->commit(it->second);
        else
          s_.queue->give_back(std::move(it->second));
        replay_out_.erase(it);
      }
    }
  }

  // Another rank's worker w: its next mini-batch of the step, from rank 0.
  std::optional<data::MiniBatch> remote_next(int w, int64_t step) {
    {
      std::unique_lock<std::mutex> lk(m_);
      cv_.wait(lk, [&] { return closed_through_.load() >= step || inflight_[w] < s_.cfg.inflight; });
      if (closed_through_.load() >= step) return std::nullopt;
    }
    send_words(0, kReqTag, {kNext, step, w}, "a mini-batch's hand-out");
    std::vector<unsigned char> buf;
    comm::ranks_recv(0, next_reply_tag(w), buf, "a mini-batch's hand-out from rank 0");
    const std::vector<int64_t> r = words(buf);
    if (r.size() < 3 || r[0] < 0) return std::nullopt;
    data::MiniBatch mb;
    mb.id = static_cast<uint64_t>(r[0]);
    mb.epoch = r[1];
    mb.indices.resize(static_cast<size_t>(r[2]));
    std::memcpy(mb.indices.data(), r.data() + 3, mb.indices.size() * sizeof(int32_t));
    std::lock_guard<std::mutex> lk(m_);
    ++inflight_[w];
    return mb;
  }

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
  std::optional<data::MiniBatch> next(int w, int64_t step, size_t& planned) {
    if (sync_) {
      if (planned >= plan_[w].size()) return std::nullopt;
      return std::move(plan_[w][planned++]);
    }
    if (remote_) return remote_next(w, step);
    std::unique_lock<std::mutex> lk(m_);
    cv_.wait(lk, [&] { return ctl_.closed() || inflight_[w] < s_.cfg.inflight; });
    const int size = ctl_.closed() ? 0 : ctl_.next_size(w);
    std::optional<data::MiniBatch> mb;
    if (size > 0) mb = q_take(size);
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
      std::optional<data::MiniBatch> mb = next(w, step, planned);
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
    // Another rank's worker: rank 0 waits for its end of issuing, and its delay.
    if (remote_) send_words(0, kReqTag, {kIdle, step, w, dbits(stall + injected)}, "the end of a worker's issuing");
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
    if (remote_) {
      // Rank 0 decides; the answer comes back before the flag-guarded commit.
      const int64_t id = static_cast<int64_t>(mb.id);
      s_.workers[w]->ctx().compute().host_task([this, w, k, flag_host, step, id, actual, skipped] {
        send_words(0, kReqTag, {kDone, step, w, id, actual, *skipped ? 1 : 0}, "a mini-batch's completion");
        std::vector<unsigned char> buf;
        comm::ranks_recv(0, flag_reply_tag(w), buf, "a mini-batch's fate from rank 0");
        const std::vector<int64_t> r = words(buf);
        const bool counted = !r.empty() && r[0] == 1;
        std::lock_guard<std::mutex> g(m_);
        *flag_host = counted ? 1 : 0;
        if (counted) {
          last_counted_[w] = k;
          ++counted_in_step_[w];
        }
        --inflight_[w];
        cv_.notify_all();
      });
      return;
    }
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
        q_commit(*shared_mb);
        last_counted_[w] = k;
      } else {
        q_give_back(std::move(*shared_mb));
        ++(*skipped ? skipped_before_start_ : wasted_);
      }
      if (probe)
        record_span(w, step, *probe, t, actual,
                    counted ? TraceSpan::Fate::Counted : *skipped ? TraceSpan::Fate::Skipped : TraceSpan::Fate::Wasted);
      if (current) --pending_[w];
      --inflight_[w];
      if (current) announce_close(step);
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
  // Across ranks (ranks.h). coord_: rank 0 of several, remote_: another rank.
  const bool coord_, remote_;
  std::thread coordinator_, courier_;
  std::atomic<bool> coord_cancel_{false}, courier_cancel_{false};
  int64_t begun_ = -1;       // rank 0: the latest step begun
  int64_t close_sent_ = -1;  // rank 0: the latest step whose close it sent
  std::vector<std::pair<int, std::vector<int64_t>>> deferred_;  // rank 0: requests for a step not begun yet
  std::map<uint64_t, data::MiniBatch> remote_out_;  // rank 0: handed out to other ranks' workers, by id
  std::vector<int64_t> qlog_;                        // rank 0: queue operations since the last result
  bool coord_done_ = false;                          // rank 0: the coordinator has ended
  std::map<uint64_t, data::MiniBatch> replay_out_;   // another rank: its queue's replayed hand-outs
  std::vector<int64_t> result_;                      // another rank: rank 0's latest result
  int64_t result_step_ = -1;
  std::vector<int> counted_in_step_;  // another rank: counted answers received, per worker
  bool fin_ = false;                  // another rank: rank 0's coordinator has ended
  // Per step (s): another rank, rank 0's close to its arrival here; rank 0, the
  // close to the end of its sending.
  std::vector<double> close_delays_;
};

}  // namespace

std::unique_ptr<WindowDriver> make_real_driver(Setup& s, Exchange& x) { return std::make_unique<RealDriver>(s, x); }

}  // namespace nbsgd::engine
