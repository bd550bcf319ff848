#include "bodies/gather_body.h"
#include "bodies/kernels_body.h"

namespace nbsgd::test {
NBSGD_BACKEND_SUITE(KernelsTest, Backend::Host);
NBSGD_BACKEND_SUITE(GatherTest, Backend::Host);

TEST(KernelsVirtual, DelayIsExactModelledTime) {
  StreamOptions o;
  o.clock = ClockKind::Virtual;
  Stream s = Stream::host(o);
  Event a(Backend::Host, 0, Timing::On), b(Backend::Host, 0, Timing::On);
  s.record(a);
  kernels::delay(s, 0.0125);
  kernels::delay(s, 0.5, kernels::DelayMode::Busy);
  s.record(b);
  s.synchronize();
  EXPECT_EQ(Event::elapsed_s(a, b), 0.5125);
}
}  // namespace nbsgd::test
