// RealDriver across the ranks of a launch (mpirun/srun; real_driver.cpp's header
// comment, "Across ranks"): rank 0's coordinator and the other ranks' side of it.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime/train/ranks.h"
#include "runtime/train/real_driver_impl.h"

namespace nbsgd::engine::real_clock {

// NBSGD_MPI_STATS=1 (bench/ranks.sh): per rank, one line at the run's end with
// the window's cost across ranks: how long after rank 0 closed a window this rank
// knew it, and the messages it sent.
void RealDriver::report_stats() {
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
void RealDriver::announce_close(int64_t step) {
  if (!coord_ || sync_ || close_sent_ >= step || !ctl_.closed()) return;
  close_sent_ = step;
  for (int r = 1; r < s_.span.ranks; ++r)
    send_words(r, kCourierTag, {kClose, step, dbits(ctl_.close_time() + monotonic_offset_s())}, "the window's close");
  close_delays_.push_back(steady_now_s() - ctl_.close_time());  // the close's decision to its last send
}

// ---- rank 0 of several: the coordinator thread. Ends once every other rank has
// said that its run ended (after its last completion was answered).
void RealDriver::coordinator_loop() {
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
  wake_all();
}

// Under the lock: one request of another rank's worker, for a step begun.
void RealDriver::handle(int src, const std::vector<int64_t>& msg) {
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
    // Its service time as in notice(): not before its own window opened.
    if (!skipped) ctl_.observe(w, std::max(last_done_t_[w], open_of(step)), t, actual);
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
  wake_all();
}

// ---- another rank: rank 0's close, result and end, as they come.
void RealDriver::courier_loop() {
  std::vector<unsigned char> buf;
  for (;;) {
    if (comm::ranks_recv(0, kCourierTag, buf, "the window's close", -1, &courier_cancel_) < 0) return;
    std::vector<int64_t> msg = words(buf);
    if (msg.empty()) continue;
    if (msg[0] == kClose) {
      std::lock_guard<std::mutex> lk(m_);
      closed_through_.store(std::max(closed_through_.load(), msg[1]));
      poke_streams();
      // One clock on one node (steady_clock is CLOCK_MONOTONIC): the close's delay.
      if (msg.size() > 2) close_delays_.push_back(steady_now_s() + monotonic_offset_s() - bitsd(msg[2]));
    } else if (msg[0] == kResult) {
      std::lock_guard<std::mutex> lk(m_);
      result_ = std::move(msg);
      result_step_ = result_[1];
    } else if (msg[0] == kFin) {
      std::lock_guard<std::mutex> lk(m_);
      fin_ = true;
      wake_all();
      return;
    }
    wake_all();
  }
}

// Another rank's step: its workers issue, rank 0 decides, the result says what
// counted; the queue replays rank 0's operations.
void RealDriver::remote_step(int64_t step, StepWindow& out) {
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
  wake_all();
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

// Rank 0's queue operations, {op, a, b} each after the count, on this rank's queue.
void RealDriver::replay(const int64_t* log) {
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
std::optional<data::MiniBatch> RealDriver::remote_next(int w, int64_t step) {
  {
    std::unique_lock<std::mutex> lk(m_);
    issue_cv_[w].wait(lk, [&] { return closed_through_.load() >= step || inflight_[w] < s_.cfg.inflight; });
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

}  // namespace nbsgd::engine::real_clock
