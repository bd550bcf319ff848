// RealDriver's completion watchers (real_driver.cpp has the class's overview): one
// thread per worker waits on each mini-batch's `computed` event in issue order,
// decides under the driver's lock whether it counts, and enqueues its commit (or
// none) and its slot's release on the worker's comm stream. On the host backend the
// watchers also keep the lags bench_fidelity calibrates the virtual clock with.
#include <algorithm>
#include <vector>

#include "nets/optim/commit.h"
#include "runtime/train/real_driver_impl.h"

namespace nbsgd::engine::real_clock {

namespace {
double median_of(std::vector<double> all) {
  if (all.empty()) return 0.0;
  auto mid = all.begin() + static_cast<std::ptrdiff_t>(all.size() / 2);
  std::nth_element(all.begin(), mid, all.end());
  return *mid;
}
// A ring of the latest Watch::kLags samples.
void keep_sample(std::vector<double>& ring, size_t& next, double x, size_t cap) {
  if (ring.size() < cap) {
    ring.push_back(x);
  } else {
    ring[next] = x;
  }
  next = (next + 1) % cap;
}
}  // namespace

double RealDriver::notice_lag_s() const {
  std::vector<double> all;
  for (const auto& wt : watches_)
    if (!wt->thread.joinable()) all.insert(all.end(), wt->lags.begin(), wt->lags.end());
  return median_of(std::move(all));
}

double RealDriver::issue_lag_s() const {
  std::vector<double> all;
  for (const auto& wt : watches_)
    if (!wt->thread.joinable()) all.insert(all.end(), wt->issue_lags.begin(), wt->issue_lags.end());
  return median_of(std::move(all));
}

RealDriver::CpuTally::~CpuTally() {
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return;
  std::lock_guard<std::mutex> lk(d.m_);
  d.driver_cpu_s_ += double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

void RealDriver::enqueue_notice(int w, Notice n) {
  Watch& wt = *watches_[w];
  {
    std::lock_guard<std::mutex> g(wt.m);
    wt.q.push_back(std::move(n));
  }
  wt.cv.notify_one();
}

void RealDriver::watch_loop(int w) {
  name_this_thread("watch", w);
  CpuTally tally{*this};
  Worker& wk = *s_.workers[w];
  if (wk.ctx().backend() == Backend::Cuda) bind_thread_to_device(wk.ctx().device().ordinal);
  Watch& wt = *watches_[w];
  const bool host = wk.ctx().backend() == Backend::Host;
  for (;;) {
    Notice n;
    {
      std::unique_lock<std::mutex> lk(wt.m);
      wt.cv.wait(lk, [&] { return wt.stop || !wt.q.empty(); });
      if (wt.q.empty()) return;  // stopped and drained
      n = std::move(wt.q.front());
      wt.q.pop_front();
    }
    try {
      Event& done = wk.slot(n.k).computed;
      const bool waits = host && !done.query();
      done.synchronize();
      if (waits) keep_sample(wt.lags, wt.next_lag, steady_now_s() - done.host_timestamp(), Watch::kLags);
      if (n.handed >= 0 && *n.skipped == 0 && *n.began >= n.handed)
        keep_sample(wt.issue_lags, wt.next_issue_lag, *n.began - n.handed, Watch::kLags);
      notice(w, n);
    } catch (...) {
      std::lock_guard<std::mutex> lk(m_);
      if (!issue_error_) issue_error_ = std::current_exception();
      idle_[w] = true;
      --inflight_[w];
      ctl_.close_at(steady_now_s());
      wake_all();
    }
  }
}

void RealDriver::enqueue_commit(int w, const Notice& n, bool counted) {
  Worker& wk = *s_.workers[w];
  Stream& cm = wk.ctx().comm();
  // The mini-batch's work is done (its event has completed), so neither needs a
  // wait: the commit reads the scratch now, and the slot is free after it. The
  // accumulator is free too: the compute waited on the previous step's update,
  // which follows the update that zeroed this parity's accumulator.
  StreamBatch batch{cm};
  if (counted) optim::commit(cm, wk.slot(n.k).scratch.as<float>(), wk.accumulator(n.step), s_.P);
  cm.record(wk.slot(n.k).done);
}

// Counted or cancelled, decided under the lock once the mini-batch's compute and
// injected delay are done.
void RealDriver::notice(int w, Notice& n) {
  const int k = n.k, actual = n.actual;
  const int64_t step = n.step;
  const bool skipped = *n.skipped != 0;
  if (remote_) {
    // Rank 0 decides.
    send_words(0, kReqTag, {kDone, step, w, static_cast<int64_t>(n.mb.id), actual, skipped ? 1 : 0},
               "a mini-batch's completion");
    std::vector<unsigned char> buf;
    comm::ranks_recv(0, flag_reply_tag(w), buf, "a mini-batch's fate from rank 0");
    const std::vector<int64_t> r = words(buf);
    const bool counted = !r.empty() && r[0] == 1;
    std::lock_guard<std::mutex> g(m_);
    enqueue_commit(w, n, counted);
    if (counted) {
      last_counted_[w] = k;
      ++counted_in_step_[w];
    }
    --inflight_[w];
    wake_all();
    return;
  }
  // Its completion time: on the host backend, when its stream reached the event
  // (the next mini-batch may have begun since); on CUDA, the watcher's wake-up.
  Worker& wk = *s_.workers[w];
  const double own_t = wk.ctx().backend() == Backend::Host ? wk.slot(k).computed.host_timestamp() : steady_now_s();
  std::lock_guard<std::mutex> g(m_);
  // The controller takes completions in time order: two notices racing for the
  // lock keep the order in which they got it. (The trace keeps each one's own.)
  const double t = std::max(own_t, last_notice_t_);
  last_notice_t_ = t;
  const bool current = step_ == step;
  const std::optional<double> deadline_before = ctl_.deadline();
  // adaptive: every mini-batch that ran feeds the rate estimate with its service
  // time: from when its stream reached it (host backend; for a step's first one
  // that includes its wait for the previous update, which the timeline's begin
  // leaves out, so the estimate errs slow), or on CUDA from the worker's previous
  // completion (its stream runs them in order) but not before its own window
  // opened. Never from the current step's start: a
  // cancelled mini-batch of the last step that ends just after it would look
  // nearly free, the estimate would shrink the next deadline, more would be
  // cancelled, and the windows would close empty one after another.
  // A mini-batch cut at a kernel boundary (--cancel-at kernel) ran only in part: no
  // service time either.
  const bool cut = n.cut && *n.cut != 0;
  if (!skipped && !cut) ctl_.observe(w, *n.began >= 0 ? *n.began : std::max(last_done_t_[w], n.open), t, actual);
  last_done_t_[w] = t;
  const bool counted = current && ctl_.on_complete(w, t, actual);
  enqueue_commit(w, n, counted);
  if (counted) {
    q_commit(n.mb);
    last_counted_[w] = k;
  } else {
    q_give_back(std::move(n.mb));
    ++(skipped ? skipped_before_start_ : wasted_);
    if (cut) ++cut_minibatches_;
  }
  if (n.probe)
    record_span(w, step, *n.probe, own_t, actual,
                counted ? TraceSpan::Fate::Counted : skipped ? TraceSpan::Fate::Skipped : TraceSpan::Fate::Wasted);
  if (current) --pending_[w];
  --inflight_[w];
  if (current) announce_close(step);
  // Wake only who can proceed: this worker's issuer (a place in flight), and the
  // trainer and every issuer when the window closed, its deadline moved, or
  // nothing is left to decide. (One condition variable for all cost each
  // completion a wake-up of every thread: on 2 cores, CPU taken from the compute.)
  const bool decided = std::all_of(idle_.begin(), idle_.end(), [](bool b) { return b; }) &&
                       std::all_of(pending_.begin(), pending_.end(), [](int x) { return x <= 0; });
  if (ctl_.closed() || decided || ctl_.deadline() != deadline_before)
    wake_all();
  else
    issue_cv_[w].notify_one();
}

}  // namespace nbsgd::engine::real_clock
