// nbsgd predict across nodes (issue 15): the node link bounds a flat ring that
// crosses nodes, and the coordinator's decision latency adds to every step's close.
#include <gtest/gtest.h>

#include "runtime/apps/predict/predict.h"
#include "runtime/device/check.h"

namespace nbsgd::predict {
namespace {

PredictConfig small() {
  PredictConfig c;
  c.net = "mlp";
  c.workers = 8;
  c.windows = {"sync"};
  c.steps = 20;
  c.trials = 100;
  return c;
}

TEST(PredictNodes, NodeLinkAndDecisionLatencyAddToTheExchange) {
  const Prediction one = run_prediction(small());
  PredictConfig c = small();
  c.nodes = 2;
  c.node_link_gbps = 1.0;  // slower than the in-node link (20 GB/s): it bounds the ring
  const Prediction two = run_prediction(c);
  EXPECT_GT(two.after_close_s, one.after_close_s);
  c.decision_s = 1e-3;
  const Prediction coord = run_prediction(c);
  EXPECT_NEAR(coord.after_close_s - two.after_close_s, 1e-3, 1e-12);
  EXPECT_LT(coord.windows[0].sim.samples_per_s(), two.windows[0].sim.samples_per_s());
  // A faster node link than the in-node one changes nothing but the latency bound.
  c = small();
  c.nodes = 2;
  c.node_link_gbps = 1e3;
  c.node_link_latency_s = 0;
  EXPECT_DOUBLE_EQ(run_prediction(c).after_close_s, one.after_close_s);
}

TEST(PredictNodes, NodesMustDivideTheWorkers) {
  PredictConfig c = small();
  c.nodes = 3;
  try {
    run_prediction(c);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--nodes 3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nbsgd::predict
