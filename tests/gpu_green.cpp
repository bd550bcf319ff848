// Virtual devices on one GPU: green-context SM partitions (runtime/device/cuda/
// green_context.h), their streams, DeviceContexts of kind cuda-partition, and a
// short training run on two partitions that exchange through device memory.
// Skips, with the reason, without a GPU or without green contexts.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/basic.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"
#include "runtime/device/device.h"
#include "runtime/device/stream.h"
#include "support/test_support.h"
#if NBSGD_HAVE_CUDA
#include "runtime/device/cuda/green_context.h"
#endif

namespace nbsgd::test {
namespace {

class GreenTest : public testing::Test {
 protected:
  void SetUp() override {
#if !NBSGD_HAVE_CUDA
    GTEST_SKIP() << "built without the CUDA backend";
#else
    gpus_ = discover_devices();
    if (gpus_.backend != Backend::Cuda) GTEST_SKIP() << "no GPU: " << gpus_.fallback_reason;
#endif
  }
  bool green_available() {
#if NBSGD_HAVE_CUDA
    return cuda_backend::green_contexts_available(0, why_);
#else
    return false;
#endif
  }
  std::vector<float> fill_and_read(Stream& s, float value, size_t n) {
    Buffer b(Backend::Cuda, s.device(), n * sizeof(float));
    kernels::fill(s, b.as<float>(), value, n);
    std::vector<float> host(n);
    copy_async(s, host.data(), b.data(), n * sizeof(float));
    s.synchronize();
    return host;
  }
  DeviceList gpus_;
  std::string why_;
};

#if NBSGD_HAVE_CUDA
TEST_F(GreenTest, PartitionStreamRunsAKernel) {
  if (!green_available()) GTEST_SKIP() << "no green contexts: " << why_;
  auto p = cuda_backend::GreenPartition::create(0, 0.5);
  EXPECT_GT(p->sm_count(), 0);
  EXPECT_LE(p->sm_count(), p->device_sm_count());
  StreamOptions o;
  o.name = "green";
  Stream s = Stream::adopt_cuda(0, p->create_stream(), true, o);
  const auto v = fill_and_read(s, 3.5f, 1 << 20);
  for (size_t i = 0; i < v.size(); i += 4099) ASSERT_EQ(v[i], 3.5f) << i;
}

TEST_F(GreenTest, PartitionsAreDisjointAndRoughlyProportional) {
  if (!green_available()) GTEST_SKIP() << "no green contexts: " << why_;
  auto a = cuda_backend::GreenPartition::create(0, 0.5);
  auto b = cuda_backend::GreenPartition::create(0, 0.25);
  const int total = a->device_sm_count();
  EXPECT_LE(a->sm_count() + b->sm_count(), total);
  EXPECT_GT(a->sm_count(), b->sm_count());
  // Rounding to the SM granularity (8 on sm_90) moves a share by at most one step.
  EXPECT_NEAR(a->sm_count(), 0.5 * total, 8.5);
  EXPECT_NEAR(b->sm_count(), 0.25 * total, 8.5);
  // Asking for more than is left fails with a reason instead of overlapping.
  EXPECT_THROW(cuda_backend::GreenPartition::create(0, 1.0), Error);
}
#endif

TEST_F(GreenTest, PartitionContextsRunAndExchangeThroughDeviceMemory) {
  DeviceList parts = select_devices(gpus_, "0:0.5,0:0.25");
  ASSERT_EQ(parts.devices.size(), 2u);
  DeviceContext a(parts.devices[0], ClockKind::Real), b(parts.devices[1], ClockKind::Real);
  for (DeviceContext* c : {&a, &b}) {
    EXPECT_EQ(c->device().kind, "cuda-partition");
    if (c->partition_sms() > 0) {
      EXPECT_EQ(c->fallback_slowdown(), 1.0);
    } else {
      EXPECT_DOUBLE_EQ(c->fallback_slowdown(), 1.0 / c->device().sm_fraction);
    }
  }
  // a writes, b waits on a's event and reads a's buffer on the same GPU.
  const size_t n = 1 << 16;
  Buffer src(Backend::Cuda, 0, n * sizeof(float)), dst(Backend::Cuda, 0, n * sizeof(float));
  kernels::fill(a.compute(), src.as<float>(), 7.0f, n);
  Event e = a.event();
  a.compute().record(e);
  b.compute().wait(e);
  copy_async(b.compute(), dst.data(), src.data(), n * sizeof(float));
  kernels::scale(b.compute(), dst.as<float>(), 2.0f, n);
  std::vector<float> host(n);
  copy_async(b.compute(), host.data(), dst.data(), n * sizeof(float));
  b.compute().synchronize();
  for (size_t i = 0; i < n; i += 997) ASSERT_EQ(host[i], 14.0f) << i;
}

TEST_F(GreenTest, TrainsOnTwoPartitions) {
  const std::string dir = make_temp_dir("green");
  auto r = run_nbsgd("train --devices 0:0.5,0:0.5 --clock real --steps 5 --train-limit 2048 --test-limit 256 "
                     "--batch 64 --split 4 --quiet --out " + dir + "/run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace nbsgd::test
