// Gossip training on GPUs (label gpu): D-PSGD and MATCHA on the real clock, over
// NCCL send/recv when each worker owns a GPU, or through device memory when the
// workers are SM partitions of one GPU. Checked against the host backend: the same
// first step (same init, same data), the exact sample accounting of an epoch, and
// finite replicas. Skips, with the reason, without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "runtime/device/check.h"
#include "runtime/device/device.h"
#include "runtime/train/engine.h"
#include "runtime/train/exchange.h"
#include "support/backend_test.h"
#include "support/test_support.h"

namespace nbsgd::engine {
namespace {

TrainConfig gossip_config(const std::string& exchange, const std::string& window) {
  TrainConfig c;
  c.net = "lenet";
  c.data = "fashion-mnist";
  c.data_dir = test::fashion_mnist_dir();
  c.train_limit = 1024;
  c.test_limit = 256;
  c.exchange = exchange;
  c.window = window;
  c.batch = 32;
  c.split = 4;
  c.epochs = 1;
  c.seed = 5;
  c.quiet = true;
  return c;
}

class GossipGpu : public testing::Test {
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
    // Four workers: four GPUs when there are, else SM partitions of GPU 0.
    devices_ = gpus_.devices.size() >= 4 ? "0,1,2,3" : "0:0.25,0:0.25,0:0.25,0:0.25";
#endif
  }
  DeviceList gpus_;
  std::string devices_;
};

TEST_F(GossipGpu, BaselinesAndNonBlockingWindowsTrainOnGpus) {
  for (const char* exchange : {"dpsgd", "matcha"})
    for (const char* window : {"sync", "fastest"}) {
      TrainConfig c = gossip_config(exchange, window);
      c.devices = devices_;
      std::vector<StepRecord> steps;
      Engine e(c);
      ASSERT_FALSE(e.virtual_clock());
      RunSummary s = e.run([&](const StepRecord& r) { steps.push_back(r); });
      ASSERT_EQ(s.samples_per_epoch.size(), 1u) << exchange << "/" << window;
      EXPECT_EQ(s.samples_per_epoch[0], 1024) << exchange << "/" << window;
      for (const auto& x : e.replicas())
        for (float v : x) ASSERT_TRUE(std::isfinite(v)) << exchange << "/" << window;
      EXPECT_GT(s.test_accuracy, 0.2) << exchange << "/" << window;  // 10 classes: chance is 0.1

      // The first sync step: every worker starts from the same init on the same
      // data, so its loss equals the host backend's (cuDNN/cuBLAS against
      // oneDNN/OpenBLAS: float rounding only).
      if (std::string(window) == "sync") {
        TrainConfig h = gossip_config(exchange, window);
        h.host_workers = 4;
        h.clock = "virtual";
        h.steps = 1;
        std::vector<StepRecord> host_steps;
        Engine he(h);
        he.run([&](const StepRecord& r) { host_steps.push_back(r); });
        ASSERT_FALSE(steps.empty());
        ASSERT_EQ(host_steps.size(), 1u);
        EXPECT_EQ(steps[0].samples, host_steps[0].samples);
        EXPECT_NEAR(steps[0].loss, host_steps[0].loss, 1e-4 * std::abs(host_steps[0].loss)) << exchange;
      }
    }
}

}  // namespace
}  // namespace nbsgd::engine
