// RealDriver's class (real_driver.cpp: the window on the real clock; real_driver_ranks.cpp:
// the same window decided across the ranks of a launch). Internal to those two files.
#pragma once

#include <pthread.h>

#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/device/check.h"
#include "runtime/device/nvtx.h"
#include "runtime/device/comm/launch.h"
#include "runtime/train/timeline.h"
#include "runtime/train/virtual_driver.h"

namespace nbsgd::engine::real_clock {

// The window's messages across ranks: int64 words (doubles by their bits).
enum : int64_t { kNext = 1, kDone = 2, kIdle = 3, kBye = 4 };  // to rank 0 (tag kReqTag)
enum : int64_t { kClose = 1, kResult = 2, kFin = 3 };            // from rank 0 (tag kCourierTag)
constexpr int kReqTag = 1, kCourierTag = 2;
inline int next_reply_tag(int w) { return 16 + 2 * w; }
inline int flag_reply_tag(int w) { return 17 + 2 * w; }
inline int64_t dbits(double d) { return std::bit_cast<int64_t>(d); }
inline double bitsd(int64_t b) { return std::bit_cast<double>(b); }
inline std::vector<int64_t> words(const std::vector<unsigned char>& b) {
  std::vector<int64_t> w(b.size() / sizeof(int64_t));
  if (!w.empty()) std::memcpy(w.data(), b.data(), w.size() * sizeof(int64_t));
  return w;
}
inline void send_words(int dest, int tag, const std::vector<int64_t>& w, const char* what) {
  comm::ranks_send(dest, tag, w.data(), w.size() * sizeof(int64_t), what);
}
// steady_clock since its epoch (CLOCK_MONOTONIC: one clock for every process of a
// machine), minus steady_now_s(), whose origin is this process's own.
inline double monotonic_offset_s() {
  static const double off =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count() - steady_now_s();
  return off;
}
// The driver's threads carry names (for perf, gdb and Nsight's NVTX thread rows),
// as the host streams' do: issue/W, watch/W.
inline void name_this_thread(const char* what, int w) {
  const std::string name = std::string(what) + "/" + std::to_string(w);
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  nvtx::name_thread(name.c_str());
}
// Queue operations rank 0 logs for the others to replay: {op, a, b}.
enum : int64_t { kTake = 0, kCommit = 1, kGiveBack = 2 };

class RealDriver final : public WindowDriver {
 public:
  RealDriver(Setup& s, Exchange&)
      : s_(s),
        ctl_(s.ctl),
        sync_(s.ctl.window.kind == WindowKind::Sync),
        kernel_cancel_(!sync_ && s.cfg.cancel_at == "kernel"),
        coord_(s.span.spans() && s.span.rank == 0),
        remote_(s.span.spans() && s.span.rank != 0) {
    const int N = s.n();
    clock_base_ = steady_now_s();
    inflight_.assign(N, 0);
    handed_alone_.assign(N, 0);
    issue_cv_ = std::make_unique<std::condition_variable[]>(static_cast<size_t>(N));
    last_done_t_.assign(N, 0.0);
    trace_prev_end_.assign(N, 0.0);
    next_slot_.assign(N, 0);
    plan_.resize(N);
    for (auto& w : s.workers) skipped_.emplace_back(w->slots(), 0);
    for (auto& w : s.workers) cut_.emplace_back(w->slots(), 0);
    for (auto& w : s.workers) began_.emplace_back(w->slots(), -1.0);
    started_ = std::vector<std::atomic<int64_t>>(static_cast<size_t>(N));
    for (auto& a : started_) a.store(-1);
    for (auto& w : s.workers)
      stamps_.push_back(Buffer(w->ctx().backend(), w->ctx().device().ordinal, w->slots() * sizeof(uint64_t)));
    counted_in_step_.assign(N, 0);
    for (int i = 0; i < N; ++i) watches_.push_back(std::make_unique<Watch>());
    for (int i = 0; i < N; ++i)
      if (s.span.owns(i)) {
        issuers_.emplace_back([this, i] { issuer_loop(i); });
        if (!sync_) watches_[i]->thread = std::thread([this, i] { watch_loop(i); });
      }
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

  void stop() override;
  int abandoned_holds() const override { return abandoned_holds_; }
  // The median of the watchers' wake-up lags (host backend), once they have ended.
  double notice_lag_s() const override;
  // The median lag from a hand-out the in-flight depth held back to its stream
  // reaching it (host backend), once the watchers have ended; 0 when none.
  double issue_lag_s() const override;
  double driver_cpu_s() const override {
    std::lock_guard<std::mutex> lk(m_);
    return driver_cpu_s_;
  }
  void take_spans(std::vector<TraceSpan>& out) override {
    std::lock_guard<std::mutex> lk(m_);
    for (auto& sp : trace_buf_) out.push_back(sp);
    trace_buf_.clear();
  }
  int64_t skipped() const override {
    std::lock_guard<std::mutex> lk(m_);
    return skipped_before_start_;
  }
  int64_t cut() const override {
    std::lock_guard<std::mutex> lk(m_);
    return cut_minibatches_;
  }

  void step(int64_t step, StepWindow& out) override;

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

  // NBSGD_MPI_STATS=1: the window's cost across ranks, one line at the run's end.
  void report_stats();

  // Rank 0, under the lock: the close of `step` to every other rank, once.
  void announce_close(int64_t step);

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

  // ---- rank 0 of several: the coordinator thread.
  void coordinator_loop();

  // Under the lock: one request of another rank's worker, for a step begun.
  void handle(int src, const std::vector<int64_t>& msg);

  // ---- another rank: rank 0's close, result and end, as they come.
  void courier_loop();

  // Another rank's step: rank 0 decides it.
  void remote_step(int64_t step, StepWindow& out);

  // Under the lock: each worker's accumulator's last writer, its running mini-batch.
  void fill_events(int64_t step, StepWindow& out);

  // Rank 0's queue operations, {op, a, b} each after the count, on this rank's queue.
  void replay(const int64_t* log);

  // Another rank's worker w: its next mini-batch of the step, from rank 0.
  std::optional<data::MiniBatch> remote_next(int w, int64_t step);

  // --window sync: hand out every worker's m mini-batches now, round-robin.
  void plan_sync_step(StepWindow& out);

  void wait_for_close(std::unique_lock<std::mutex>& lk);

  void issuer_loop(int w);

  // The next mini-batch of worker w in this step, or nothing.
  std::optional<data::MiniBatch> next(int w, int64_t step, size_t& planned);

  // What a traced mini-batch (or stall) learns on its way through the stream: host
  // times on the steady clock, < 0 where unknown (CUDA).
  struct Probe {
    double begin = -1, mid = -1;  // mid: the injected throttle's start
    double not_before = 0;        // CUDA: its window's open
  };

  // Under the lock: the spans of a traced mini-batch that ended at steady time t.
  void record_span(int w, int64_t step, const Probe& p, double t, int size, TraceSpan::Fate fate);

  // trace: the step's window open (steady clock) when the step is traced.
  // open: the step's window open (steady clock); trace: whether it is traced.
  void issue(int w, int64_t step, double open, bool trace);

  // A mini-batch whose completion its worker's watcher is to notice.
  struct Notice {
    int k = 0;  // its slot
    int64_t step = 0;
    data::MiniBatch mb;
    int actual = 0;
    const int* skipped = nullptr;  // set by the stream when it skipped it unstarted
    const double* began = nullptr;  // set by the stream when it reached it (host backend)
    double open = 0;                // its step's window open (steady clock)
    std::shared_ptr<Probe> probe;
    // Host backend: when it was handed out, if nothing else of its worker was in
    // flight then and it was not its step's first (the depth bound: the stream
    // waited for it); else < 0.
    double handed = -1;
    const int* cut = nullptr;  // --cancel-at kernel: set by the stream when it stopped it at a kernel boundary
  };
  // Per worker: its completion watcher, a thread that waits on each mini-batch's
  // `computed` event in issue order (a blocking wait, no spinning), then decides
  // whether it counts and enqueues its commit (counted) and the slot's release on
  // the worker's comm stream. Nothing of it is in the compute stream: the GPU never
  // waits for the host to decide, and the next mini-batch runs meanwhile.
  struct Watch {
    std::mutex m;
    std::condition_variable cv;
    std::deque<Notice> q;
    bool stop = false;
    std::thread thread;
    // Host backend: the lag from a mini-batch's end (its event's host time) to this
    // watcher's wake-up, when it had to wait; the latest kLags, its thread's alone
    // until it ends.
    static constexpr size_t kLags = 1 << 16;
    std::vector<double> lags;
    size_t next_lag = 0;
    // Host backend: the lag from a bound hand-out (Notice::handed) to its stream
    // reaching the mini-batch (the issuer's enqueue, the staging, the wake-ups).
    std::vector<double> issue_lags;
    size_t next_issue_lag = 0;
  };
  void enqueue_notice(int w, Notice n);
  void watch_loop(int w);
  // The notice itself (the watcher's thread, the mini-batch's work done).
  void notice(int w, Notice& n);
  // Under the lock: the commit of a counted mini-batch (or none) and the slot's
  // release, on worker w's comm stream.
  void enqueue_commit(int w, const Notice& n, bool counted);

  Setup& s_;
  StepController ctl_;
  const bool sync_;
  // --cancel-at kernel (host backend): a running mini-batch stops at the first
  // kernel boundary after its window's close, its throttle at the slowed device's.
  const bool kernel_cancel_;
  // The close, seen by every worker's compute stream: a throttle of a running
  // kernel-granular mini-batch looks again (Stream::poke).
  void poke_streams() {
    if (!kernel_cancel_) return;
    for (int w = 0; w < s_.n(); ++w)
      if (s_.span.owns(w)) s_.workers[w]->ctx().compute().poke();
  }
  double clock_base_ = 0;
  mutable std::mutex m_;
  // The trainer's and the issuers' between steps: window opens and closes, ends of
  // issuing, errors.
  std::condition_variable cv_;
  // Per worker: whether its issuer's latest hand-out (next()) found nothing else of
  // that worker in flight; written and read by that issuer's thread only.
  std::vector<char> handed_alone_;
  // Issuer w's wait for an in-flight place (next()): a completion wakes only its
  // own worker's issuer, and the trainer only when it can proceed (notice()).
  std::unique_ptr<std::condition_variable[]> issue_cv_;
  // Under the lock: everything waiting on the driver re-checks.
  void wake_all() {
    cv_.notify_all();
    for (int w = 0; w < s_.n(); ++w) issue_cv_[w].notify_all();
  }
  int64_t step_ = -1;  // the step whose window is open
  std::vector<int> inflight_, pending_, last_counted_, next_slot_;
  std::vector<bool> idle_;
  std::vector<double> delay_s_;
  std::vector<std::vector<data::MiniBatch>> plan_;
  int64_t wasted_ = 0, reported_wasted_ = 0;
  int64_t skipped_before_start_ = 0;  // cancelled before they began: no work done
  int64_t cut_minibatches_ = 0;       // wasted, stopped at a kernel boundary
  std::atomic<int64_t> closed_through_{-1};  // the latest step whose window closed
  // Per worker: step * kSlotCode + slot of the latest mini-batch that began (-1).
  static constexpr int64_t kSlotCode = 1 << 16;
  std::vector<std::atomic<int64_t>> started_;
  // Per worker, per slot: when its stream reached the mini-batch (host backend;
  // -1 on CUDA, where the host does not see it begin).
  std::vector<std::vector<double>> began_;
  std::vector<std::vector<int>> skipped_;    // per worker, per slot: set by the stream
  std::vector<std::vector<int>> cut_;        // per worker, per slot: cut at a kernel (set by the stream)
  int abandoned_holds_ = 0;
  // The issuers' and watchers' own CPU seconds, each added as its thread ends.
  double driver_cpu_s_ = 0;
  struct CpuTally {  // adds the calling thread's CPU time to driver_cpu_s_ when it ends
    RealDriver& d;
    ~CpuTally();
  };
  // The window opens of the latest steps (steady clock), by step % size.
  std::array<std::pair<int64_t, double>, 8> opens_{};
  double open_of(int64_t step) const {
    const auto& o = opens_[static_cast<size_t>(step) % opens_.size()];
    return o.first == step ? o.second : 0.0;
  }
  std::vector<double> last_done_t_;  // per worker: its latest completion notice  // cumulative: a cancellation is noticed when it ends
  double last_notice_t_ = 0;
  // Tracing: the step's flag and window open (steady clock) for the issuers, the
  // spans reported and not yet taken, and per worker the latest traced end (run clock).
  bool trace_step_ = false;
  double step_open_ = 0;
  std::vector<TraceSpan> trace_buf_;
  std::vector<double> trace_prev_end_;
  std::vector<Buffer> stamps_;
  std::vector<std::unique_ptr<Watch>> watches_;
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

}  // namespace nbsgd::engine::real_clock
