// The delay kernel and the duty-cycle throttle on the GPU: the stream is held at
// least as long as asked, in both variants (the accuracy, how much longer, is
// bench_delay's: tests do not assert on how fast a machine is).
#include <gtest/gtest.h>

#include <cstdint>

#include "kernels/basic.h"
#include "kernels/throttle.h"
#include "runtime/device/buffer.h"
#include "support/backend_test.h"

namespace nbsgd::test {
namespace {

class DelayTest : public BackendTest {};

TEST_P(DelayTest, EachVariantHoldsAtLeastTheRequestedTime) {
  Stream s = stream();
  for (auto mode : {kernels::DelayMode::Idle, kernels::DelayMode::Busy}) {
    for (double req : {20e-6, 200e-6, 2e-3, 10e-3}) {
      Event a(backend(), 0, Timing::On), b(backend(), 0, Timing::On);
      s.record(a);
      kernels::delay(s, req, mode);
      s.record(b);
      s.synchronize();
      // Events are timed with about 0.5 us resolution.
      EXPECT_GE(Event::elapsed_s(a, b), req - 1e-6)
          << (mode == kernels::DelayMode::Idle ? "idle " : "busy ") << req;
    }
  }
}

// stamp, 3 ms of delay, throttle with factor 1: the throttle holds at least as long
// again as the work since the stamp, plus the extra.
TEST_P(DelayTest, ThrottleIsADutyCycle) {
  Stream s = stream();
  Buffer slot = device_buffer(sizeof(uint64_t));
  Event a(backend(), 0, Timing::On), b(backend(), 0, Timing::On);
  s.record(a);
  kernels::stamp(s, slot.as<uint64_t>());
  kernels::delay(s, 3e-3);
  kernels::throttle(s, slot.as<uint64_t>(), 1.0, 1e-3, kernels::DelayMode::Idle);
  s.record(b);
  s.synchronize();
  EXPECT_GE(Event::elapsed_s(a, b), 2 * 3e-3 + 1e-3 - 2e-6);
}

NBSGD_BACKEND_SUITE(DelayTest, Backend::Cuda);

}  // namespace
}  // namespace nbsgd::test
