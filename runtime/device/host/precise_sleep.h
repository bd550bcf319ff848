// The host backend's timer for real-clock holds and throttles: the host twin of the
// delay kernel's %globaltimer loop, exact to a few microseconds.
//
// A plain sleep on Linux wakes late: the default timer slack is 50 us, and a VM's
// wake-up from idle adds more. Measured on the 2-core VM of issue 11, a 1.5 ms
// std::this_thread::sleep_for lasted 92 us too long (median), so `--slowdown 1,4`
// made a worker 4.2x slower, not 4x. Here the thread sleeps (no CPU) until a margin
// before the deadline, with its timer slack at 1 ns, and spins out the rest. The
// margin follows the thread's own observed lateness, so the spin stays a few
// microseconds long on a quiet machine and grows only where wake-ups are slow.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace nbsgd::host_timer {

using Clock = std::chrono::steady_clock;

// Once per thread that holds (a host stream's): timer slack to 1 ns (Linux; a no-op
// elsewhere).
void tighten_timer_slack();

// Sleeps until `deadline`, returning no earlier (and, on a quiet machine, a few
// microseconds later at most).
void sleep_until(Clock::time_point deadline);

// The same under `lk`, woken early when `stop()` holds (checked under the lock as a
// condition variable's predicate). Returns true when stopped early.
template <class Pred>
bool sleep_until(std::unique_lock<std::mutex>& lk, std::condition_variable& cv, Clock::time_point deadline, Pred stop);

// ---- internals
Clock::duration margin();                  // this thread's current wake-up margin
void observed(Clock::duration lateness);   // a timed sleep woke this late past its target
void spin_until(Clock::time_point deadline);

template <class Pred>
bool sleep_until(std::unique_lock<std::mutex>& lk, std::condition_variable& cv, Clock::time_point deadline, Pred stop) {
  const Clock::time_point target = deadline - margin();
  if (Clock::now() < target) {
    if (cv.wait_until(lk, target, stop)) return true;
    observed(Clock::now() - target);
  }
  if (stop()) return true;
  lk.unlock();
  spin_until(deadline);
  lk.lock();
  return stop();
}

}  // namespace nbsgd::host_timer
