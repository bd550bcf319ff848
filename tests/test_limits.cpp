// The shared bounds (runtime/train/limits.h): each refuses just past its limit and
// accepts the limit itself, with one line naming the flag.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "runtime/device/check.h"
#include "runtime/train/limits.h"
#include "runtime/train/window.h"

namespace nbsgd::engine {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(Limits, WorkersMatchTheExchanges) {
  EXPECT_EQ(kMaxWorkers, comm::kMaxSources);
  EXPECT_NO_THROW(check_workers(1, "--workers"));
  EXPECT_NO_THROW(check_workers(kMaxWorkers, "--workers"));
  EXPECT_EQ(error_of([] { check_workers(kMaxWorkers + 1, "--host-workers"); }).rfind("--host-workers 65: ", 0), 0u);
  EXPECT_NE(error_of([] { check_workers(0, "--workers"); }), "");
}

TEST(Limits, QuorumAboveNmAndLongDeadlinesAreRefused) {
  EXPECT_NO_THROW(validate_window(parse_window("quorum:16"), 2, 8));
  const std::string q = error_of([] { validate_window(parse_window("quorum:17"), 2, 8); });
  EXPECT_EQ(q.rfind("--window quorum:17: ", 0), 0u) << q;
  EXPECT_NE(q.find("2 workers x --split 8 = 16"), std::string::npos) << q;
  EXPECT_NO_THROW(parse_window("deadline:1e9"));  // exactly the bound
  EXPECT_NE(error_of([] { parse_window("deadline:1.0000001e9"); }).find("--window deadline:"), std::string::npos);
  EXPECT_NE(error_of([] { parse_window("deadline:1e308"); }).find("1e6 s"), std::string::npos);
  EXPECT_NE(error_of([] { parse_window("quorum:1e300"); }).find("--window quorum:1e300"), std::string::npos);
  EXPECT_NE(error_of([] { parse_cap("99999999999999999999", parse_window("fastest"), 8); }).find("--cap"),
            std::string::npos);
}

TEST(Limits, AStepHoldsBoundedMiniBatches) {
  const WindowSpec d = parse_window("deadline:1000");  // 1 s
  // 1 ms mini-batches, 4 workers, no cap: 4000 per step, fine.
  EXPECT_NO_THROW(check_window_size(d, -1, 4, 8, 1e-3));
  // 1 us mini-batches, 64 workers: 6.4e7, refused naming the flag and --cap.
  const std::string e = error_of([&] { check_window_size(d, -1, 64, 8, 1e-6, "--windows"); });
  EXPECT_EQ(e.rfind("--windows deadline:1000: ", 0), 0u) << e;
  EXPECT_NE(e.find("--cap"), std::string::npos) << e;
  // The same with a cap is bounded by it.
  EXPECT_NO_THROW(check_window_size(d, 8, 64, 8, 1e-6));
}

TEST(Limits, ClockArithmeticIsChecked) {
  EXPECT_EQ(duration_ns(1.5, "x"), 1'500'000'000);
  EXPECT_EQ(duration_ns(kMaxDurationS, "x"), int64_t{1'000'000} * 1'000'000'000);
  for (double bad : {-1.0, kMaxDurationS * 1.01, 1e300, std::nan(""), std::numeric_limits<double>::infinity()})
    EXPECT_EQ(error_of([&] { duration_ns(bad, "profile key delay.value_ms"); }).rfind("profile key delay.value_ms: ", 0),
              0u)
        << bad;
  EXPECT_EQ(add_clock_ns(kMaxClockNs - 5, 5, "step 3"), kMaxClockNs);
  EXPECT_EQ(error_of([] { add_clock_ns(kMaxClockNs - 5, 6, "step 3"); }).rfind("step 3: ", 0), 0u);
}

}  // namespace
}  // namespace nbsgd::engine
