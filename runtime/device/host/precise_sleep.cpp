#include "runtime/device/host/precise_sleep.h"

#include <algorithm>
#include <thread>

#if defined(__linux__)
#include <sys/prctl.h>
#endif

namespace nbsgd::host_timer {

namespace {
// The margin starts at 60 us (a VM waking from idle, measured) and follows an
// exponential average of the observed lateness, times 1.5, capped at 500 us.
constexpr double kStartUs = 60.0, kCapUs = 500.0, kWeight = 0.25, kHeadroom = 1.5;
thread_local double lateness_us = kStartUs / kHeadroom;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

void tighten_timer_slack() {
#if defined(__linux__)
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
}

Clock::duration margin() {
  const double us = std::min(kCapUs, kHeadroom * lateness_us);
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::micro>(us));
}

void observed(Clock::duration lateness) {
  const double us = std::max(0.0, std::chrono::duration<double, std::micro>(lateness).count());
  lateness_us = (1.0 - kWeight) * lateness_us + kWeight * std::min(us, kCapUs);
}

void spin_until(Clock::time_point deadline) {
  while (Clock::now() < deadline) cpu_relax();
}

void sleep_until(Clock::time_point deadline) {
  const Clock::time_point target = deadline - margin();
  if (Clock::now() < target) {
    std::this_thread::sleep_until(target);
    observed(Clock::now() - target);
  }
  spin_until(deadline);
}

}  // namespace nbsgd::host_timer
