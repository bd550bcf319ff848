#include "kernels/throttle.h"

#include <chrono>

#include "runtime/device/check.h"
#include "runtime/device/host/precise_sleep.h"

namespace nbsgd::kernels {

#if NBSGD_HAVE_CUDA
namespace cuda {
void stamp(void* stream, int device, uint64_t* slot);
void throttle(void* stream, int device, const uint64_t* slot, double factor, double extra_s, DelayMode mode);
}  // namespace cuda
#endif

static uint64_t steady_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

void stamp(Stream& s, uint64_t* slot) {
  if (s.backend() == Backend::Cuda) {
#if NBSGD_HAVE_CUDA
    s.note(Issue::Launch);
    cuda::stamp(s.native(), s.device(), slot);
#endif
    return;
  }
  s.device_task([slot] { *slot = steady_ns(); }, Issue::Launch);
}

void throttle(Stream& s, const uint64_t* slot, double factor, double extra_s, DelayMode mode) {
  NBSGD_CHECK(factor >= 0 && extra_s >= 0, "negative throttle");
  if (factor == 0 && extra_s == 0) return;
  if (s.backend() == Backend::Cuda) {
#if NBSGD_HAVE_CUDA
    s.note(Issue::Launch);
    cuda::throttle(s.native(), s.device(), slot, factor, extra_s, mode);
#endif
    return;
  }
  // In a kernel-granular unit the stream holds it, so that a close can end it at
  // the slowed device's kernel boundary (Stream::cancel_at_kernels).
  if (s.impl()->granular_throttle(slot, factor, extra_s)) {
    s.note(Issue::Launch);
    return;
  }
  s.device_task(
      [slot, factor, extra_s] {
        // Until stamp + (1 + factor) x (now - stamp) + extra, to a few microseconds.
        const uint64_t now = steady_ns();
        const double hold = factor * double(now - *slot) * 1e-9 + extra_s;
        host_timer::sleep_until(host_timer::Clock::time_point(std::chrono::nanoseconds(now)) +
                                std::chrono::duration_cast<host_timer::Clock::duration>(std::chrono::duration<double>(hold)));
      },
      Issue::Launch);
}

}  // namespace nbsgd::kernels
