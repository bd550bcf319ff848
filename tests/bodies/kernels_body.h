// Every basic kernel against a plain loop, on random inputs of awkward sizes.
#pragma once

#include <cmath>
#include <random>

#include "kernels/basic.h"
#include "support/backend_test.h"

namespace nbsgd::test {

class KernelsTest : public BackendTest {
 protected:
  static std::vector<size_t> sizes() { return {0, 1, 2, 3, 7, 31, 127, 1021, 65537, (1u << 20) + 3}; }
  static std::vector<float> random(size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = u(rng);
    return v;
  }
  // fp32 element-wise: 1e-6 relative (FMA contraction on the GPU may differ by an ulp).
  static void expect_close(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], want[i], 1e-6f * (1.0f + std::fabs(want[i]))) << what << " at " << i << " of " << got.size();
  }
};

TEST_P(KernelsTest, FillScaleAxpyMatchPlainLoops) {
  Stream s = stream();
  for (size_t n : sizes()) {
    std::vector<float> x = random(n, 1 + unsigned(n)), y = random(n, 2 + unsigned(n));
    Buffer dx = upload(s, x), dy = upload(s, y);

    kernels::scale(s, dx.as<float>(), -0.75f, n);
    std::vector<float> want = x;
    for (auto& v : want) v *= -0.75f;
    expect_close(download<float>(s, dx, n), want, "scale");

    kernels::axpy(s, 0.5f, dx.as<float>(), dy.as<float>(), n);
    std::vector<float> want_y = y;
    for (size_t i = 0; i < n; ++i) want_y[i] += 0.5f * want[i];
    expect_close(download<float>(s, dy, n), want_y, "axpy");

    kernels::fill(s, dy.as<float>(), 3.25f, n);
    expect_close(download<float>(s, dy, n), std::vector<float>(n, 3.25f), "fill");
  }
}

TEST_P(KernelsTest, SumMatchesDoubleReference) {
  Stream s = stream();
  for (size_t n : sizes()) {
    std::vector<float> x = random(n, 11 + unsigned(n));
    Buffer dx = upload(s, x), out = device_buffer(sizeof(float));
    kernels::sum(s, dx.as<float>(), n, out.as<float>());
    double ref = 0, mag = 0;
    for (float v : x) {
      ref += v;
      mag += std::fabs(v);
    }
    float got = download<float>(s, out, 1)[0];
    // Reductions compare by normalised error: |got - ref| <= 1e-6 * sum|x| (+ tiny).
    EXPECT_NEAR(got, ref, 1e-6 * mag + 1e-6) << "n=" << n;
  }
}

TEST_P(KernelsTest, DelayHoldsTheStreamAtLeastAsLongAsAsked) {
  Stream s = stream();
  Event a(backend(), 0, Timing::On), b(backend(), 0, Timing::On);
  s.record(a);
  kernels::delay(s, 0.002, kernels::DelayMode::Idle);
  kernels::delay(s, 0.001, kernels::DelayMode::Busy);
  s.record(b);
  s.synchronize();
  EXPECT_GE(Event::elapsed_s(a, b), 0.003 * 0.999);
}

}  // namespace nbsgd::test
