// One AD-PSGD round on two workers against values computed here: the pairwise
// average (1/2, 1/2) of the two models, then each worker's own gradient step.
//
// Both workers take their batch at t = 0 (worker 0 first) and finish their
// gradients at the same instant; worker 0 averages with worker 1 first:
//   a = (x0 + x1) / 2;  x0 = x1 = a;  x0 -= lr g0          (g_i at the initial x_i)
// then worker 1, whose partner was busy, averages the new pair:
//   x0 = x1 = (x0 + x1) / 2 = a - lr g0 / 2;  x1 -= lr g1.
#include <gtest/gtest.h>

#include <cmath>

#include "nets/data/epoch_queue.h"
#include "nets/data/fashion_mnist.h"
#include "runtime/device/device.h"
#include "runtime/train/engine.h"
#include "runtime/train/worker.h"

namespace nbsgd::engine {
namespace {

// The gradient sum G, the count n of one batch at `params`, on a fresh host worker.
std::vector<float> gradient(const Device& dev, const data::Dataset& ds, const std::vector<float>& params,
                            const std::vector<int32_t>& indices) {
  Worker w(0, dev, ClockKind::Virtual, "mlp", static_cast<int>(indices.size()), 3, 5, 1);
  w.upload_params(params);
  w.stage_and_compute(0, ds, indices);
  w.ctx().compute().synchronize();
  const float* g = w.slot(0).scratch.as<float>();
  return std::vector<float>(g, g + w.P() + 2);
}

TEST(Adpsgd, OneRoundIsTheHalfHalfAverageThenTheOwnGradient) {
  TrainConfig c;
  c.net = "mlp";
  c.train_limit = 512;
  c.test_limit = 64;
  c.host_workers = 2;
  c.exchange = "adpsgd";
  c.topology = "ring";
  c.batch = 8;
  c.split = 1;
  c.steps = 1;
  c.lr = 0.1;
  c.momentum = 0;
  c.weight_decay = 0;
  c.lr_scaling = "none";
  c.seed = 5;
  c.quiet = true;
  Engine e(c);
  // Start the replicas apart, so that the average's weights show.
  auto x = e.replicas();
  for (size_t k = 0; k < x[1].size(); ++k) x[1][k] += 0.01f * static_cast<float>((k % 7) + 1);
  e.set_replica(1, x[1]);
  const RunSummary sum = e.run([](const StepRecord&) {});
  ASSERT_EQ(sum.steps, 1);
  const auto got = e.replicas();

  // The same batches: worker 0 takes first from the shared queue, then worker 1.
  const data::DataSplit d = data::load_fashion_mnist(c.data_dir, c.train_limit);
  data::EpochQueue q(d.train.n, c.seed, true, -1);
  const auto b0 = q.take(c.batch), b1 = q.take(c.batch);
  ASSERT_TRUE(b0 && b1);
  DiscoverOptions opt;
  opt.host_workers = 1;
  const Device dev = discover_devices(opt).devices[0];
  const auto G0 = gradient(dev, d.train, x[0], b0->indices), G1 = gradient(dev, d.train, x[1], b1->indices);
  const size_t P = x[0].size();
  ASSERT_EQ(G0[P], 8.0f);
  ASSERT_EQ(G1[P], 8.0f);
  const float lr = static_cast<float>(c.lr);
  double worst = 0;
  for (size_t k = 0; k < P; ++k) {
    const double a = 0.5 * x[0][k] + 0.5 * x[1][k];
    const double half = a - lr * G0[k] / G0[P] / 2;
    const double want0 = half, want1 = half - lr * G1[k] / G1[P];
    const double scale = 1e-5 * (1.0 + std::abs(want1));
    ASSERT_NEAR(got[0][k], want0, scale) << "x0[" << k << "]";
    ASSERT_NEAR(got[1][k], want1, scale) << "x1[" << k << "]";
    worst = std::max(worst, std::abs(got[1][k] - want1));
  }
  // The replicas moved: the test would not pass on an engine that did nothing.
  double moved = 0;
  for (size_t k = 0; k < P; ++k) moved = std::max(moved, double(std::abs(got[1][k] - x[1][k])));
  EXPECT_GT(moved, 1e-3);
}

}  // namespace
}  // namespace nbsgd::engine
