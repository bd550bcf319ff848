// Integration run (label slow): one host worker trains LeNet on the real
// Fashion-MNIST (the dataset-fashion-mnist package, installed by scripts/setup.sh)
// for 2 epochs through `nbsgd train`, as a user would, and must reach at least 85%
// test accuracy on the 10,000 test images.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace nbsgd::test {
namespace {

TEST(SlowLenet, TwoEpochsOnFashionMnistReach85Percent) {
  ASSERT_TRUE(std::filesystem::exists("/usr/share/datasets/fashion-mnist"))
      << "Fashion-MNIST is missing: run scripts/setup.sh (package dataset-fashion-mnist)";
  const std::string dir = make_temp_dir("slow-lenet");
  CommandResult r = run_nbsgd("train --host-workers 1 --net lenet --data fashion-mnist --epochs 2 --batch 64 --split 1 "
                              "--lr 0.05 --momentum 0.9 --seed 1 --quiet --out " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream f(dir + "/summary.json");
  const auto s = nlohmann::json::parse(f);
  // Both epochs used the whole training set, exactly once each.
  ASSERT_EQ(s["samples_per_epoch"].size(), 2u) << s.dump();
  EXPECT_EQ(s["samples_per_epoch"][0], 60000);
  EXPECT_EQ(s["samples_per_epoch"][1], 60000);
  ASSERT_TRUE(s["test_accuracy"].is_number()) << s.dump();
  EXPECT_GE(s["test_accuracy"].get<double>(), 0.85) << s.dump();
  EXPECT_LT(s["test_loss"].get<double>(), 0.5) << s.dump();
}

}  // namespace
}  // namespace nbsgd::test
