#include "bodies/comm_body.h"

namespace nbsgd::test {
NBSGD_BACKEND_SUITE(CommTest, Backend::Host);

TEST(Comm, ChunksCoverTheBufferAndDifferByAtMostOne) {
  for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1000003}})
    for (int n = 1; n <= 8; ++n) {
      size_t next = 0, lo = count, hi = 0;
      for (int k = 0; k < n; ++k) {
        auto [b, e] = comm::chunk_range(count, n, k);
        EXPECT_EQ(b, next);
        next = e;
        lo = std::min(lo, e - b);
        hi = std::max(hi, e - b);
      }
      EXPECT_EQ(next, count);
      EXPECT_LE(hi - lo, 1u);
    }
}

TEST(Comm, HostWorkersUseTheInProcessCommunicators) {
  DeviceList l = host_devices(3, "test");
  std::vector<std::unique_ptr<DeviceContext>> ctx;
  std::vector<DeviceContext*> ptrs;
  for (auto& d : l.devices) ctx.push_back(std::make_unique<DeviceContext>(d, ClockKind::Real));
  for (auto& c : ctx) ptrs.push_back(c.get());
  EXPECT_FALSE(comm::nccl_applies(ptrs));
  EXPECT_STREQ(comm::make_all_reduce(ptrs)->name(), "in-process");
  EXPECT_STREQ(comm::make_gossip_exchange(ptrs)->name(), "in-process");
}

// On the virtual clock the exchange takes no modelled time of its own but carries
// the ready events' times: every comm stream ends at the latest worker's time.
TEST(Comm, VirtualClockTimeFollowsTheReadyEvents) {
  DeviceList l = host_devices(3, "test");
  std::vector<std::unique_ptr<DeviceContext>> ctx;
  std::vector<DeviceContext*> ptrs;
  for (auto& d : l.devices) ctx.push_back(std::make_unique<DeviceContext>(d, ClockKind::Virtual));
  for (auto& c : ctx) ptrs.push_back(c.get());
  auto ar = comm::make_all_reduce(ptrs);
  std::vector<Buffer> bufs;
  std::vector<float*> p;
  std::vector<Event> ready;
  std::vector<const Event*> rp;
  for (int k = 0; k < 3; ++k) {
    bufs.emplace_back(Backend::Host, k, 64 * sizeof(float));
    p.push_back(bufs.back().as<float>());
    ctx[k]->compute().hold(0.25 * (k + 1));
    ready.push_back(ctx[k]->event());
    ctx[k]->compute().record(ready.back());
  }
  for (auto& e : ready) rp.push_back(&e);
  ar->all_reduce_sum(p, 64, rp);
  for (auto& c : ctx) {
    c->comm().synchronize();
    EXPECT_EQ(c->comm().host_time(), 0.75);
  }
}
}  // namespace nbsgd::test
