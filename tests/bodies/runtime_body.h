// Stream, event and buffer semantics, identical on every backend.
#pragma once

#include <atomic>
#include <mutex>
#include <numeric>
#include <random>
#include <type_traits>

#include "runtime/device/context.h"
#include "support/backend_test.h"

namespace nbsgd::test {

class RuntimeTest : public BackendTest {};

TEST_P(RuntimeTest, HostTasksRunInStreamOrder) {
  Stream s = stream();
  std::vector<int> seen;
  std::mutex m;
  for (int i = 0; i < 500; ++i)
    s.host_task([&, i] {
      std::lock_guard<std::mutex> lk(m);
      seen.push_back(i);
    });
  s.synchronize();
  std::vector<int> want(500);
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(seen, want);
}

TEST_P(RuntimeTest, EventQueryFollowsTheWorkBeforeIt) {
  Stream s = stream();
  Event e(backend(), 0);
  EXPECT_TRUE(e.query()) << "an event never recorded counts as complete";
  std::atomic<bool> release{false};
  s.host_task([&] {
    while (!release.load()) std::this_thread::yield();
  });
  s.record(e);
  EXPECT_FALSE(e.query());
  release = true;
  e.synchronize();
  EXPECT_TRUE(e.query());
  s.synchronize();
}

TEST_P(RuntimeTest, CrossStreamWaitOrdersWork) {
  Stream a = stream("a"), b = stream("b");
  Event e(backend(), 0);
  std::atomic<bool> release{false};
  std::atomic<int> order{0};
  int a_done_at = -1, b_ran_at = -1;
  a.host_task([&] {
    while (!release.load()) std::this_thread::yield();
    a_done_at = order++;
  });
  a.record(e);
  b.wait(e);
  b.host_task([&] { b_ran_at = order++; });
  // b must not run its task while a is gated.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(b_ran_at, -1);
  release = true;
  b.synchronize();
  EXPECT_EQ(a_done_at, 0);
  EXPECT_EQ(b_ran_at, 1);
}

TEST_P(RuntimeTest, ElapsedTimeIsOrderedAndNonNegative) {
  Stream s = stream();
  Event e0(backend(), 0, Timing::On), e1(backend(), 0, Timing::On);
  s.record(e0);
  s.host_task([] { std::this_thread::sleep_for(std::chrono::milliseconds(2)); });
  s.record(e1);
  s.synchronize();
  EXPECT_GE(Event::elapsed_s(e0, e1), 0.0);
  EXPECT_LE(Event::elapsed_s(e1, e0), 0.0);
}

TEST_P(RuntimeTest, CopiesRoundTripEveryDirection) {
  Stream s = stream();
  for (size_t n : {size_t(0), size_t(1), size_t(13), size_t(4099)}) {
    std::vector<float> src(n);
    std::mt19937 rng(7);
    for (auto& v : src) v = std::uniform_real_distribution<float>(-1, 1)(rng);
    Buffer d0 = upload(s, src);                        // h2d
    Buffer d1 = device_buffer(n * sizeof(float));
    copy_async(s, d1.data(), d0.data(), n * sizeof(float));  // d2d
    Buffer pinned = Buffer::pinned(backend(), n * sizeof(float));
    copy_async(s, pinned.data(), d1.data(), n * sizeof(float));  // d2h into pinned
    s.synchronize();
    std::vector<float> back(pinned.as<float>(), pinned.as<float>() + n);
    EXPECT_EQ(back, src) << "n=" << n;
  }
}

TEST_P(RuntimeTest, PeerCopyBetweenDevices) {
  int peer = backend() == Backend::Cuda ? (cuda_devices_ > 1 ? 1 : 0) : 1;
  Stream s = stream();
  std::vector<float> src(1000);
  std::iota(src.begin(), src.end(), 0.0f);
  Buffer a = upload(s, src, 0);
  Buffer b = device_buffer(src.size() * sizeof(float), peer);
  copy_peer_async(s, b.data(), peer, a.data(), 0, src.size() * sizeof(float));
  EXPECT_EQ(download<float>(s, b, src.size()), src);
}

TEST_P(RuntimeTest, DeviceContextOwnsItsStreams) {
  static_assert(!std::is_copy_constructible_v<DeviceContext>);
  static_assert(std::is_nothrow_move_constructible_v<DeviceContext>);
  DeviceList l = backend() == Backend::Cuda ? discover_devices() : host_devices(1, "test");
  DeviceContext ctx(l.devices[0], ClockKind::Real);
  DeviceContext moved = std::move(ctx);
  EXPECT_EQ(moved.compute().backend(), backend());
  EXPECT_NE(moved.compute().name(), moved.comm().name());
  int ran = 0;
  moved.compute().host_task([&] { ran = 1; });
  moved.compute().synchronize();
  EXPECT_EQ(ran, 1);
}

}  // namespace nbsgd::test
