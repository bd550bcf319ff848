#include "runtime/device/host/host_stream.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "runtime/device/check.h"
#include "runtime/device/host/precise_sleep.h"
#include "runtime/device/nvtx.h"

namespace nbsgd {

// ---------------------------------------------------------------- events
uint64_t HostEventState::arm() {
  std::lock_guard<std::mutex> lk(m);
  return ++recorded;
}

void HostEventState::complete(uint64_t gen, double t) {
  {
    std::lock_guard<std::mutex> lk(m);
    completed = std::max(completed, gen);
    times[gen % times.size()] = t;
  }
  cv.notify_all();
}

double HostEventState::wait_for(uint64_t gen) {
  std::unique_lock<std::mutex> lk(m);
  cv.wait(lk, [&] { return completed >= gen; });
  return times[gen % times.size()];
}

bool HostEventImpl::query() const {
  std::lock_guard<std::mutex> lk(state_->m);
  return state_->completed >= state_->recorded;
}

void HostEventImpl::synchronize() const {
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lk(state_->m);
    gen = state_->recorded;
  }
  if (gen > 0) state_->wait_for(gen);
}

double HostEventImpl::host_timestamp() const {
  std::lock_guard<std::mutex> lk(state_->m);
  NBSGD_CHECK(state_->recorded > 0 && state_->completed >= state_->recorded,
              "host_timestamp of an event that is not recorded or not complete");
  return state_->times[state_->recorded % state_->times.size()];
}

// ---------------------------------------------------------------- streams
static int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(host_timer::Clock::now().time_since_epoch()).count();
}

HostStreamImpl::HostStreamImpl(std::string name, ClockKind clock)
    : name_(std::move(name)), clock_(clock) {
  worker_ = std::thread([this] { run(); });
}

HostStreamImpl::~HostStreamImpl() {
  {
    std::unique_lock<std::mutex> lk(m_);
    cv_idle_.wait(lk, [&] { return pending_ == 0; });
    stop_ = true;
  }
  cv_work_.notify_all();
  worker_.join();
  if (error_) {
    try {
      std::rethrow_exception(error_);
    } catch (const std::exception& e) {
      log_error(__FILE__, __LINE__, -1, "~HostStream(" + name_ + ")",
                std::string("unreported task error: ") + e.what());
    }
  }
}

void HostStreamImpl::run() {
  std::string tname = name_.substr(0, 15);  // pthread names are at most 15 chars
  pthread_setname_np(pthread_self(), tname.c_str());
  nvtx::name_thread(name_.c_str());
  host_timer::tighten_timer_slack();
  for (;;) {
    Task t;
    {
      std::unique_lock<std::mutex> lk(m_);
      if (queue_.empty() && !stop_) {
        cv_work_.wait(lk, [&] { return stop_ || !queue_.empty(); });
        ++wakeups_;
      }
      if (queue_.empty()) return;  // stop_ and drained
      t = std::move(queue_.front());
      queue_.pop_front();
    }
    std::exception_ptr err;
    bool skipped = false;
    if (t.unit) {
      Unit& u = *t.unit;
      if (!u.decided) {
        u.decided = true;
        u.skip = u.cancelled && u.cancelled();
        if (u.skip && u.skipped) *u.skipped = 1;
      } else if (u.closed && !u.skip && !u.cut && !t.stamp && !t.bookkeeping && u.closed()) {
        // Kernel-granular: the close is seen at this boundary; the rest is cut.
        u.cut = true;
        u.cut_seen_ns = steady_ns();
        if (u.cut_flag) *u.cut_flag = 1;
        std::lock_guard<std::mutex> lk(m_);
        ++kernel_cuts_;
      }
      const bool kernel = !t.stamp && !t.bookkeeping;
      skipped = u.skip || (u.cut && kernel);
      if (u.cut && !u.skip && kernel) {
        std::lock_guard<std::mutex> lk(m_);
        ++kernels_cut_;
      }
    }
    if (skipped) {
      // Costs only the check: no work and, on the virtual clock, no time.
      t.modelled_s = 0;
    } else if (t.stamp) {
      run_throttle(t, *t.unit);
    } else if (t.hold_s >= 0) {
      // A real-clock hold (an injected stall or delay) sleeps until its time is up,
      // to a few microseconds (precise_sleep.h), or until abandon_holds() ends the run.
      const auto deadline = host_timer::Clock::now() + std::chrono::duration_cast<host_timer::Clock::duration>(
                                                           std::chrono::duration<double>(t.hold_s));
      std::unique_lock<std::mutex> lk(m_);
      if (host_timer::sleep_until(lk, cv_abandon_, deadline, [&] { return abandoned_; })) ++cut_;
    } else if (t.fn) {
      try {
        t.fn();
      } catch (...) {
        err = std::current_exception();
      }
    }
    if (t.unit && t.unit->closed && !skipped && !t.bookkeeping) t.unit->ends_ns.push_back(steady_ns());
    {
      std::lock_guard<std::mutex> lk(m_);
      if (clock_ == ClockKind::Virtual) vtime_ += t.modelled_s;
      if (err && !error_) error_ = err;
      --pending_;
    }
    cv_idle_.notify_all();
  }
}

void HostStreamImpl::enqueue(Task t) {
  bool wake;
  {
    std::lock_guard<std::mutex> lk(m_);
    queue_.push_back(std::move(t));
    ++pending_;
    wake = batch_ == 0;
  }
  if (wake) cv_work_.notify_one();
}

void HostStreamImpl::begin_batch() {
  std::lock_guard<std::mutex> lk(m_);
  ++batch_;
}

void HostStreamImpl::end_batch() {
  {
    std::lock_guard<std::mutex> lk(m_);
    NBSGD_CHECK(batch_ > 0, "end_batch without begin_batch on stream " + name_);
    if (--batch_ > 0 || queue_.empty()) return;
  }
  cv_work_.notify_one();
}

double HostStreamImpl::now_locked() const {
  return clock_ == ClockKind::Virtual ? vtime_ : steady_now_s();
}

void HostStreamImpl::host_bookkeeping(std::function<void()> fn) {
  Task t;
  t.fn = std::move(fn);
  t.unit = current_unit();
  t.bookkeeping = true;
  enqueue(std::move(t));
}

void HostStreamImpl::host_task(std::function<void()> fn, double modelled_s) {
  enqueue({std::move(fn), clock_ == ClockKind::Virtual ? modelled_s : 0.0, current_unit(), -1});
}

void HostStreamImpl::hold(double seconds) {
  if (clock_ == ClockKind::Virtual) {
    enqueue({nullptr, seconds, current_unit(), -1});
  } else {
    enqueue({nullptr, 0.0, current_unit(), seconds});
  }
}

std::shared_ptr<HostStreamImpl::Unit> HostStreamImpl::current_unit() const {
  std::lock_guard<std::mutex> lk(m_);
  return unit_;
}

void HostStreamImpl::begin_cancellable(std::function<bool()> cancelled, int* skipped) {
  auto u = std::make_shared<Unit>();
  u->cancelled = std::move(cancelled);
  u->skipped = skipped;
  std::lock_guard<std::mutex> lk(m_);
  unit_ = std::move(u);
}

void HostStreamImpl::cancel_at_kernels(std::function<bool()> closed, int* cut) {
  std::lock_guard<std::mutex> lk(m_);
  NBSGD_CHECK(unit_ != nullptr, "cancel_at_kernels outside a cancellable unit on stream " + name_);
  NBSGD_CHECK(clock_ == ClockKind::Real, "kernel-granular cancel is for the real clock (stream " + name_ + ")");
  unit_->closed = std::move(closed);
  unit_->cut_flag = cut;
}

bool HostStreamImpl::granular_throttle(const uint64_t* stamp, double factor, double extra_s) {
  std::shared_ptr<Unit> u = current_unit();
  if (!u || !u->closed) return false;
  Task t;
  t.unit = std::move(u);
  t.stamp = stamp;
  t.factor = factor;
  t.extra_s = extra_s;
  enqueue(std::move(t));
  return true;
}

void HostStreamImpl::poke() {
  { std::lock_guard<std::mutex> lk(m_); }
  cv_abandon_.notify_all();
}

int64_t HostStreamImpl::kernel_cuts() const {
  std::lock_guard<std::mutex> lk(m_);
  return kernel_cuts_;
}
int64_t HostStreamImpl::kernels_cut() const {
  std::lock_guard<std::mutex> lk(m_);
  return kernels_cut_;
}

// The slowed device of a kernel-granular unit. The unit's tasks ran at the host's
// speed from the stamp t0; on a device s = 1 + factor times slower, the task that
// ended at T would end at t0 + s (T - t0). The throttle holds the stream to the
// last of those, then the additive delay. When the close is seen first (a task's
// check cut the unit, or poke() while this holds), it holds only to the first
// slowed end at or after that moment: the kernel the slowed device was running
// then runs to its end, and nothing after it. The delay, once reached, is never
// cut short; abandon_holds() ends any of it.
void HostStreamImpl::run_throttle(const Task& t, Unit& u) {
  const int64_t t0 = static_cast<int64_t>(*t.stamp);
  const double s = 1.0 + t.factor;
  auto slowed = [&](int64_t T) { return t0 + static_cast<int64_t>(std::llround(s * double(T - t0))); };
  auto at = [](int64_t ns) { return host_timer::Clock::time_point(std::chrono::nanoseconds(ns)); };
  // The first slowed end at or after `seen` (the last one if none is later).
  auto boundary = [&](int64_t seen) {
    for (int64_t T : u.ends_ns)
      if (slowed(T) >= seen) return slowed(T);
    return u.ends_ns.empty() ? seen : slowed(u.ends_ns.back());
  };
  std::unique_lock<std::mutex> lk(m_);
  auto abandoned = [&] { return abandoned_; };
  if (u.cut) {
    if (host_timer::sleep_until(lk, cv_abandon_, at(boundary(u.cut_seen_ns)), abandoned)) ++cut_;
    return;
  }
  const int64_t full = slowed(steady_ns());
  auto closed = [&] { return abandoned_ || u.closed(); };
  if (host_timer::sleep_until(lk, cv_abandon_, at(full), closed)) {
    if (abandoned_) {
      ++cut_;
      return;
    }
    const int64_t b = boundary(steady_ns());
    if (b < full) {
      u.cut = true;
      if (u.cut_flag) *u.cut_flag = 1;
      ++kernel_cuts_;
      if (host_timer::sleep_until(lk, cv_abandon_, at(b), abandoned)) ++cut_;
      return;
    }
    // Seen in the last slowed kernel: it ends at `full`, then the delay.
    if (host_timer::sleep_until(lk, cv_abandon_, at(full), abandoned)) {
      ++cut_;
      return;
    }
  }
  if (t.extra_s > 0) {
    const int64_t until = full + static_cast<int64_t>(std::llround(t.extra_s * 1e9));
    if (host_timer::sleep_until(lk, cv_abandon_, at(until), abandoned)) ++cut_;
  }
}

void HostStreamImpl::end_cancellable() {
  std::lock_guard<std::mutex> lk(m_);
  unit_.reset();
}

int HostStreamImpl::abandon_holds() {
  int cut;
  {
    std::lock_guard<std::mutex> lk(m_);
    abandoned_ = true;
    cut = cut_;
  }
  cv_abandon_.notify_all();
  return cut;
}

void HostStreamImpl::record(EventImpl& e) {
  auto& he = dynamic_cast<HostEventImpl&>(e);
  std::shared_ptr<HostEventState> st = he.state();
  uint64_t gen = st->arm();
  enqueue({[this, st, gen] {
             double t;
             {
               std::lock_guard<std::mutex> lk(m_);
               t = now_locked();
             }
             st->complete(gen, t);
           },
           0.0, nullptr, -1});
}

void HostStreamImpl::wait(const EventImpl& e) {
  const auto& he = dynamic_cast<const HostEventImpl&>(e);
  std::shared_ptr<HostEventState> st = he.state();
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lk(st->m);
    gen = st->recorded;
  }
  if (gen == 0) return;  // never recorded: nothing to wait for (as in CUDA)
  enqueue({[this, st, gen] {
             double t = st->wait_for(gen);
             if (clock_ == ClockKind::Virtual) {
               std::lock_guard<std::mutex> lk(m_);
               vtime_ = std::max(vtime_, t);
             }
           },
           0.0, nullptr, -1});
}

void HostStreamImpl::synchronize() {
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lk(m_);
    if (batch_ > 0) cv_work_.notify_one();  // what a batch holds back runs now
    cv_idle_.wait(lk, [&] { return pending_ == 0; });
    std::swap(err, error_);
  }
  if (err) std::rethrow_exception(err);
}

bool HostStreamImpl::query() {
  std::lock_guard<std::mutex> lk(m_);
  return pending_ == 0;
}

int64_t HostStreamImpl::wakeups() const {
  std::lock_guard<std::mutex> lk(m_);
  return wakeups_;
}

double HostStreamImpl::host_time() const {
  std::lock_guard<std::mutex> lk(m_);
  return now_locked();
}

}  // namespace nbsgd
