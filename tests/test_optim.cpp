#include <string>

#include "bodies/optim_body.h"
#include "runtime/device/check.h"

namespace nbsgd::test {
NBSGD_BACKEND_SUITE(OptimTest, Backend::Host);

using optim::parse_lr_schedule;

TEST(LrSchedule, ConstantIsConstant) {
  auto s = parse_lr_schedule("constant", 0.1);
  EXPECT_EQ(s.lr_at(0), 0.1);
  EXPECT_EQ(s.lr_at(1'000'000), 0.1);
}

TEST(LrSchedule, StepDecaysExactlyAtItsBoundaries) {
  auto s = parse_lr_schedule("step:30:0.1", 0.5);
  EXPECT_EQ(s.lr_at(0), 0.5);
  EXPECT_EQ(s.lr_at(29), 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(30), 0.05);
  EXPECT_DOUBLE_EQ(s.lr_at(59), 0.05);
  EXPECT_DOUBLE_EQ(s.lr_at(60), 0.005);
}

TEST(LrSchedule, CosineRunsFromBaseToFloorAndStays) {
  auto s = parse_lr_schedule("cosine:100", 0.4);
  EXPECT_EQ(s.lr_at(0), 0.4);
  EXPECT_NEAR(s.lr_at(50), 0.2, 1e-15);
  EXPECT_EQ(s.lr_at(100), 0.0);
  EXPECT_EQ(s.lr_at(250), 0.0);
  EXPECT_GT(s.lr_at(99), 0.0);
  auto f = parse_lr_schedule("cosine:100:0.001", 0.4);
  EXPECT_DOUBLE_EQ(f.lr_at(100), 0.001);
  EXPECT_NEAR(f.lr_at(50), 0.001 + 0.399 / 2, 1e-15);
}

TEST(LrSchedule, WarmupRampsLinearlyThenStartsTheMainSchedule) {
  auto s = parse_lr_schedule("warmup:5+cosine:100", 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.2);
  EXPECT_DOUBLE_EQ(s.lr_at(2), 0.6);
  EXPECT_EQ(s.lr_at(4), 1.0);
  EXPECT_EQ(s.lr_at(5), 1.0);  // the cosine's t = 0
  EXPECT_EQ(s.lr_at(105), 0.0);
  auto st = parse_lr_schedule("warmup:10+step:3:0.5", 0.8);
  EXPECT_DOUBLE_EQ(st.lr_at(0), 0.08);
  EXPECT_EQ(st.lr_at(12), 0.8);
  EXPECT_EQ(st.lr_at(13), 0.4);
  auto c = parse_lr_schedule("warmup:4+constant", 0.1);
  EXPECT_DOUBLE_EQ(c.lr_at(1), 0.05);
  EXPECT_EQ(c.lr_at(4), 0.1);
}

TEST(LrSchedule, EpochCountsConvertWithStepsPerEpoch) {
  auto s = parse_lr_schedule("warmup:1e+step:2e:0.1", 1.0, 50);
  EXPECT_EQ(s.warmup, 50);
  EXPECT_EQ(s.period, 100);
  EXPECT_EQ(s.lr_at(149), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(150), 0.1);
}

TEST(LrSchedule, DescribeParsesBackToTheSameSchedule) {
  for (const char* spec : {"constant", "step:30:0.1", "cosine:90", "cosine:90:0.001", "warmup:5+cosine:90",
                           "warmup:3+step:7:0.5"}) {
    auto s = parse_lr_schedule(spec, 0.1);
    auto back = parse_lr_schedule(s.describe(), 0.1);
    for (int64_t t : {0, 1, 4, 5, 7, 30, 89, 95, 200}) EXPECT_EQ(back.lr_at(t), s.lr_at(t)) << spec << " at " << t;
  }
}

TEST(LrSchedule, BadSpecsNameTheFlag) {
  for (const char* spec : {"", "foo", "constant:1", "step:30", "step:0:0.1", "step:-3:0.1", "step:30:-1",
                           "step:30:abc", "step:3x:0.1", "cosine:", "cosine:abc", "cosine:10:5",
                           "cosine:10:-0.1", "warmup:5", "warmup:0+constant", "warmup:5+warmup:5+constant",
                           "warm:5+constant", "step:3e:0.1", "cosine:1:2:3"}) {
    try {
      parse_lr_schedule(spec, 0.1);
      ADD_FAILURE() << "accepted '" << spec << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--lr-schedule"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(parse_lr_schedule("constant", 0.0), InputError);
}

}  // namespace nbsgd::test
