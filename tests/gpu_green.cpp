// Virtual devices on one GPU: green-context SM partitions (runtime/device/cuda/
// green_context.h), their streams, DeviceContexts of kind cuda-partition, and a
// short training run on two partitions that exchange through device memory.
// Skips, with the reason, without a GPU or without green contexts.
#include <gtest/gtest.h>

#include <memory>
#include <utility>
#include <vector>

#include "kernels/basic.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"
#include "runtime/device/device.h"
#include "runtime/device/stream.h"
#include "runtime/device/sm_split.h"
#include "support/backend_test.h"
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
    NBSGD_SKIP_WITHOUT_GPU("built without the CUDA backend");
#else
    try {
      gpus_ = discover_devices();  // throws for a broken GPU set-up and under NBSGD_REQUIRE_GPU=1
    } catch (const Error& e) {
      GTEST_FAIL() << e.what();
    }
    if (gpus_.backend != Backend::Cuda) NBSGD_SKIP_WITHOUT_GPU("no GPU: " + gpus_.fallback_reason);
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
  if (!green_available()) NBSGD_SKIP_WITHOUT_GPU("no green contexts: " + why_);
  auto p = cuda_backend::GreenPartition::create(0, {0.5}, 0);
  EXPECT_GT(p->sm_count(), 0);
  EXPECT_LE(p->sm_count(), p->device_sm_count());
  StreamOptions o;
  o.name = "green";
  Stream s = Stream::adopt_cuda(0, p->create_stream(), true, o);
  const auto v = fill_and_read(s, 3.5f, 1 << 20);
  for (size_t i = 0; i < v.size(); i += 4099) ASSERT_EQ(v[i], 3.5f) << i;
}

TEST_F(GreenTest, PartitionsAreDisjointAndRoundedDown) {
  if (!green_available()) NBSGD_SKIP_WITHOUT_GPU("no green contexts: " + why_);
  const std::vector<double> shares{0.5, 0.25, 0.25};
  auto a = cuda_backend::GreenPartition::create(0, shares, 0);
  auto b = cuda_backend::GreenPartition::create(0, shares, 1);
  auto c = cuda_backend::GreenPartition::create(0, shares, 2);
  const int total = a->device_sm_count();
  EXPECT_LE(a->sm_count() + b->sm_count() + c->sm_count(), total);
  EXPECT_EQ(b->sm_count(), c->sm_count());
  EXPECT_GE(a->sm_count(), 2 * b->sm_count());
  // Rounded down: never above the share, and at most one step below it.
  const int step = sm_split_step(sm_geometry_guideline(gpus_.devices[0].cc_major, total));
  for (auto [p, f] : {std::pair{a.get(), 0.5}, std::pair{b.get(), 0.25}}) {
    EXPECT_LE(p->sm_count(), f * total) << f;
    EXPECT_GT(p->sm_count(), f * total - step) << f;
  }
  // The same share twice, or another plan while these live, is an error naming it.
  EXPECT_THROW(cuda_backend::GreenPartition::create(0, shares, 1), Error);
  EXPECT_THROW(cuda_backend::GreenPartition::create(0, {1.0}, 0), Error);
}

// The four quarter partitions that used to over-subscribe (4 x 28 of 108 SMs on an
// A100, 4 x 32 of 114 on an H100 PCIe): all four are made, within the GPU.
TEST_F(GreenTest, FourQuartersFitTheGpu) {
  if (!green_available()) NBSGD_SKIP_WITHOUT_GPU("no green contexts: " + why_);
  const std::vector<double> q(4, 0.25);
  std::vector<std::shared_ptr<cuda_backend::GreenPartition>> parts;
  int sum = 0;
  for (int k = 0; k < 4; ++k) {
    parts.push_back(cuda_backend::GreenPartition::create(0, q, k));
    sum += parts.back()->sm_count();
    EXPECT_EQ(parts.back()->sm_count(), parts[0]->sm_count());
  }
  EXPECT_LE(sum, parts[0]->device_sm_count());
}

#endif

TEST_F(GreenTest, PartitionContextsRunAndExchangeThroughDeviceMemory) {
  DeviceList parts = select_devices(gpus_, "0:0.5,0:0.25");
  ASSERT_EQ(parts.devices.size(), 2u);
  DeviceContext a(parts.devices[0], ClockKind::Real), b(parts.devices[1], ClockKind::Real);
  for (DeviceContext* c : {&a, &b}) {
    EXPECT_EQ(c->device().kind, "cuda-partition");
    EXPECT_GT(c->partition_sms(), 0);  // a green context, or the constructor threw
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
                     "--batch 64 --split 4 --quiet --data-dir " + fashion_mnist_dir() + " --out " + dir + "/run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace nbsgd::test
