#include "bodies/runtime_body.h"

#include "kernels/basic.h"
#include "kernels/throttle.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/host/precise_sleep.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace nbsgd::test {

NBSGD_BACKEND_SUITE(RuntimeTest, Backend::Host);

// ---- host-only: the virtual clock and error propagation

Stream virtual_stream(const char* name) {
  StreamOptions o;
  o.name = name;
  o.clock = ClockKind::Virtual;
  return Stream::host(o);
}

TEST(VirtualClock, HoldAdvancesOnlyModelledTime) {
  Stream s = virtual_stream("v");
  Event a(Backend::Host, 0, Timing::On), b(Backend::Host, 0, Timing::On);
  s.record(a);
  s.hold(0.25);
  s.host_task([] { std::this_thread::sleep_for(std::chrono::milliseconds(5)); }, 0.125);
  s.record(b);
  s.synchronize();
  EXPECT_EQ(a.host_timestamp(), 0.0);
  EXPECT_EQ(b.host_timestamp(), 0.375);  // exact: real sleeping does not count
  EXPECT_EQ(Event::elapsed_s(a, b), 0.375);
  EXPECT_EQ(s.host_time(), 0.375);
}

TEST(VirtualClock, WaitTakesTheLaterOfTwoStreams) {
  Stream a = virtual_stream("a"), b = virtual_stream("b");
  Event ea(Backend::Host, 0), eb(Backend::Host, 0), eb2(Backend::Host, 0);
  a.hold(1.0);
  a.record(ea);
  b.hold(0.5);
  b.wait(ea);  // b is now at max(0.5, 1.0)
  b.hold(0.25);
  b.record(eb);
  b.wait(ea);  // already later than ea: no change
  b.record(eb2);
  b.synchronize();
  EXPECT_EQ(eb.host_timestamp(), 1.25);
  EXPECT_EQ(eb2.host_timestamp(), 1.25);
}

TEST(VirtualClock, ReRecordedEventKeepsTheGenerationAWaitSaw) {
  Stream a = virtual_stream("a"), b = virtual_stream("b");
  Event e(Backend::Host, 0), done(Backend::Host, 0);
  std::atomic<bool> release{false};
  a.hold(1.0);
  a.record(e);  // generation 1 at t=1
  b.wait(e);    // ordered after generation 1
  b.record(done);
  a.host_task([&] {
    while (!release.load()) std::this_thread::yield();
  });
  a.hold(5.0);
  a.record(e);  // generation 2 at t=6
  release = true;
  b.synchronize();
  a.synchronize();
  EXPECT_EQ(done.host_timestamp(), 1.0);
  EXPECT_EQ(e.host_timestamp(), 6.0);
}

TEST(VirtualClock, SameWorkGivesSameTimesTwice) {
  auto run = [] {
    Stream a = virtual_stream("a"), b = virtual_stream("b");
    Event e(Backend::Host, 0), f(Backend::Host, 0);
    for (int i = 0; i < 100; ++i) {
      a.host_task([] {}, 0.001 * (i % 7));
      if (i % 10 == 0) {
        a.record(e);
        b.wait(e);
      }
      b.hold(0.0003 * (i % 3));
    }
    b.record(f);
    b.synchronize();
    return f.host_timestamp();
  };
  EXPECT_EQ(run(), run());
}

// The issue counters (stream.h): every kind is counted as it is enqueued, a host
// twin as the device operation it stands for, bookkeeping not at all.
TEST(HostStream, CountsWhatIsEnqueuedByKind) {
  Stream s = Stream::host({});
  Stream other = Stream::host({});
  Buffer a(Backend::Host, 0, 64 * sizeof(float)), b(Backend::Host, 0, 64 * sizeof(float));
  kernels::fill(s, a.as<float>(), 1.0f, 64);                          // launch
  kernels::scale(s, a.as<float>(), 2.0f, 64);                         // launch
  copy_async(s, b.data(), a.data(), 64 * sizeof(float));              // copy
  s.device_task([] {}, Issue::Library);                               // library
  int ran = 0;
  s.host_task([&] { ++ran; });                                        // host function
  s.host_bookkeeping([&] { ++ran; });                                 // not counted
  Event e(Backend::Host, 0);
  other.record(e);                                                    // other's record
  s.wait(e);                                                          // wait
  s.record(e);                                                        // record
  s.synchronize();
  other.synchronize();
  EXPECT_EQ(ran, 2);
  EXPECT_EQ(b.as<float>()[63], 2.0f);
  const IssueCounts want{2, 1, 1, 1, 1, 1};
  EXPECT_EQ(s.counts(), want);
  EXPECT_EQ(other.counts(), (IssueCounts{0, 0, 0, 0, 1, 0}));
  EXPECT_EQ(s.counts() - other.counts(), (IssueCounts{2, 1, 1, 1, 0, 1}));
}

// A batch (stream.h): what one thread enqueues to an idle host stream between
// begin_batch and end_batch wakes the stream's thread once, at the end, and runs in
// order; a synchronize inside the batch releases it instead of waiting forever.
TEST(HostStream, ABatchWakesAnIdleStreamOnceAndKeepsTheOrder) {
  Stream s = Stream::host({});
  s.synchronize();
  std::vector<int> order;
  const int64_t before = s.wakeups();
  {
    StreamBatch batch{s};
    for (int i = 0; i < 8; ++i) {
      s.host_task([&order, i] { order.push_back(i); });
      // Unbatched, the thread would wake for each task: it has long gone idle again.
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  s.synchronize();
  EXPECT_EQ(s.wakeups() - before, 1);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  // Synchronize inside a batch runs what the batch holds back (the thread has gone
  // idle by then: without the release this would wait forever).
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  int ran = 0;
  {
    StreamBatch batch{s};
    s.host_task([&ran] { ++ran; });
    s.synchronize();
    EXPECT_EQ(ran, 1);
  }
}

// --cancel-at kernel (Stream::cancel_at_kernels): a unit that began looks at its close
// before each later task; from the first that sees it the rest is skipped, and what
// follows the unit (records, other tasks) still runs.
TEST(HostStream, AKernelGranularUnitStopsAtTheFirstTaskAfterTheClose) {
  Stream s = Stream::host({});
  std::atomic<bool> closed{false};
  std::vector<int> ran;  // the stream's thread only
  int cut = 0, skipped = 0;
  Event after(Backend::Host, 0);
  s.begin_cancellable([] { return false; }, &skipped);
  s.cancel_at_kernels([&closed] { return closed.load(); }, &cut);
  for (int i = 0; i < 6; ++i)
    s.device_task([&, i] {
      ran.push_back(i);
      if (i == 2) closed.store(true);  // the close, seen before task 3
    }, Issue::Launch);
  s.host_bookkeeping([&ran] { ran.push_back(50); });  // no kernel: never cut
  s.end_cancellable();
  s.record(after);
  s.host_task([&ran] { ran.push_back(100); });
  s.synchronize();
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 2, 50, 100}));
  EXPECT_EQ(cut, 1);
  EXPECT_EQ(skipped, 0);
  EXPECT_EQ(s.kernel_cuts(), 1);
  EXPECT_EQ(s.kernels_cut(), 3);
  EXPECT_TRUE(after.query());

  // Not closed: every task runs and nothing is cut. Closed before it began: the
  // first task's check skips it whole, which is no cut.
  for (bool before : {false, true}) {
    closed.store(before);
    ran.clear();
    cut = skipped = 0;
    s.begin_cancellable([&closed] { return closed.load(); }, &skipped);
    s.cancel_at_kernels([&closed] { return closed.load(); }, &cut);
    for (int i = 0; i < 4; ++i) s.device_task([&ran, i] { ran.push_back(i); }, Issue::Launch);
    s.end_cancellable();
    s.synchronize();
    EXPECT_EQ(ran, before ? std::vector<int>{} : (std::vector<int>{0, 1, 2, 3})) << before;
    EXPECT_EQ(cut, 0) << before;
    EXPECT_EQ(skipped, before ? 1 : 0) << before;
    EXPECT_EQ(s.kernel_cuts(), 1) << before;
  }
}

// The throttle of a kernel-granular unit (kernels::throttle inside it): the close
// seen while it holds the slowed device's compute ends it at that kernel's end (cut);
// seen in its additive delay, nothing is cut (an injected delay is never cut short).
// Each case waits for the unit's three 1 ms kernels to end (an event inside the
// unit), then closes and pokes 20 ms later. With factor 200 the slowed kernels end
// about 201, 402 and 603 ms after the stamp: the first is running, the rest is cut.
// With factor 1 the slowed compute ended about 6 ms after the stamp, and the close
// comes in the 1 s delay.
TEST(HostStream, AKernelGranularThrottleEndsWithTheSlowedKernelButNotInItsDelay) {
  struct Case {
    double factor, extra_s;
    int cut;
  };
  for (const Case& c : {Case{200.0, 0.0, 1}, Case{1.0, 1.0, 0}}) {
    Stream s = Stream::host({});
    std::atomic<bool> closed{false};
    int cut = 0;
    Buffer stamp(Backend::Host, 0, sizeof(uint64_t));
    Event computed(Backend::Host, 0);
    s.begin_cancellable([] { return false; });
    s.cancel_at_kernels([&closed] { return closed.load(); }, &cut);
    kernels::stamp(s, stamp.as<uint64_t>());
    for (int k = 0; k < 3; ++k)
      s.device_task([] { std::this_thread::sleep_for(std::chrono::milliseconds(1)); }, Issue::Launch);
    s.record(computed);
    kernels::throttle(s, stamp.as<uint64_t>(), c.factor, c.extra_s, kernels::DelayMode::Idle);
    s.end_cancellable();
    computed.synchronize();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    closed.store(true);
    s.poke();
    if (c.cut == 0) {
      // The delay would hold 1 s: give a wrong wake-up on the close time to show as a
      // cut, then end the hold (abandoning it is no cut).
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      s.abandon_holds();
    }
    s.synchronize();
    EXPECT_EQ(cut, c.cut) << c.factor;
    EXPECT_EQ(s.kernel_cuts(), c.cut) << c.factor;
  }
}

// The host timer sleeps to a margin before the deadline and spins the rest: it never
// returns before the deadline, whatever the margin (a bound, not a speed).
TEST(HostTimer, SleepUntilNeverReturnsEarly) {
  std::thread([] {
    host_timer::tighten_timer_slack();
    using namespace std::chrono;
    for (int rep = 0; rep < 3; ++rep)
      for (auto d : {microseconds(0), microseconds(5), microseconds(80), microseconds(700), microseconds(3000)}) {
        const auto deadline = host_timer::Clock::now() + d;
        host_timer::sleep_until(deadline);
        EXPECT_GE(host_timer::Clock::now(), deadline) << d.count() << " us";
      }
    // The abandonable form: not stopped, it too returns no earlier; stopped, at once.
    std::mutex m;
    std::condition_variable cv;
    std::unique_lock<std::mutex> lk(m);
    const auto deadline = host_timer::Clock::now() + milliseconds(2);
    EXPECT_FALSE(host_timer::sleep_until(lk, cv, deadline, [] { return false; }));
    EXPECT_GE(host_timer::Clock::now(), deadline);
    EXPECT_TRUE(host_timer::sleep_until(lk, cv, host_timer::Clock::now() + seconds(60), [] { return true; }));
  }).join();
}

// The margin follows the thread's observed lateness (1.5x its running average,
// capped at 500 us), so slow wake-ups sleep shorter and quick ones spin little.
TEST(HostTimer, MarginFollowsTheObservedLateness) {
  std::thread([] {
    using namespace std::chrono;
    auto us = [] { return duration<double, std::micro>(host_timer::margin()).count(); };
    EXPECT_NEAR(us(), 60.0, 1e-6);  // a fresh thread's starting margin
    for (int i = 0; i < 60; ++i) host_timer::observed(microseconds(200));
    EXPECT_NEAR(us(), 300.0, 0.5);
    for (int i = 0; i < 60; ++i) host_timer::observed(milliseconds(5));  // each counted as at most 500 us
    EXPECT_NEAR(us(), 500.0, 1e-6);
    for (int i = 0; i < 80; ++i) host_timer::observed(microseconds(0));
    EXPECT_LT(us(), 1.0);
    host_timer::observed(-microseconds(50));  // an early wake-up counts as none
    EXPECT_GE(us(), 0.0);
  }).join();
}

TEST(HostStream, TaskErrorSurfacesAtSynchronize) {
  Stream s = Stream::host({});
  s.host_task([] { throw Error("boom"); });
  int after = 0;
  s.host_task([&] { after = 1; });
  EXPECT_THROW(s.synchronize(), Error);
  EXPECT_EQ(after, 1);
  EXPECT_NO_THROW(s.synchronize());  // reported once
}

TEST(Devices, BadDeviceIndexNamesTheFlag) {
  DeviceList l = host_devices(4, "test");
  try {
    select_devices(l, "0,7");
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("--devices"), std::string::npos) << m;
    EXPECT_NE(m.find("device 7 does not exist"), std::string::npos) << m;
  }
  EXPECT_THROW(select_devices(l, "x"), InputError);
  EXPECT_THROW(select_devices(l, "0:1.5"), InputError);
  DeviceList two = select_devices(l, "3,1");
  ASSERT_EQ(two.devices.size(), 2u);
  EXPECT_EQ(two.devices[0].ordinal, 3);
  EXPECT_EQ(two.devices[1].index, 1);
}

TEST(Devices, VirtualClockOnCudaDeviceIsRefused) {
  Device d;
  d.backend = Backend::Cuda;
  EXPECT_THROW(DeviceContext(d, ClockKind::Virtual), InputError);
}

}  // namespace nbsgd::test
