// The fused optimizer against the plain PyTorch-formula reference, and the commit's
// all-or-nothing contract, on every backend.
#pragma once

#include <cmath>
#include <cstring>
#include <future>
#include <random>

#include "nets/optim/commit.h"
#include "nets/optim/schedule.h"
#include "nets/optim/sgd.h"
#include "support/backend_test.h"

namespace nbsgd::test {

class OptimTest : public BackendTest {
 protected:
  static std::vector<float> normal(size_t n, unsigned seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
  }
  static bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  }
};

struct SgdCase {
  const char* name;
  double momentum, weight_decay;
  bool nesterov;
  double lr_scale, count_ref;
};

// Six steps per case, with the scheduled rate changing every step and one step with
// n = 0. fp32 kernel against the double reference: |got - want| <= 1e-5 * (1 + |want|)
// (each step rounds once or twice in fp32; six steps stay far inside this).
TEST_P(OptimTest, FusedUpdateMatchesTheReferenceOverSeveralSteps) {
  const SgdCase cases[] = {
      {"plain", 0.0, 0.0, false, 1.0, 0.0},
      {"weight-decay", 0.0, 1e-2, false, 0.37, 0.0},
      {"momentum", 0.9, 0.0, false, 1.0, 0.0},
      {"momentum+wd", 0.9, 5e-4, false, 0.37, 0.0},
      {"nesterov+wd", 0.9, 5e-4, true, 1.0, 0.0},
      {"nesterov+linear-scaling", 0.8, 1e-3, true, 0.5, 512.0},
  };
  const size_t P = 4099;
  const optim::LrSchedule sched = optim::parse_lr_schedule("warmup:2+cosine:10", 0.2);
  Stream s = stream();
  for (const SgdCase& c : cases) {
    SCOPED_TRACE(c.name);
    optim::SgdConfig cfg{0.2, c.momentum, c.weight_decay, c.nesterov, c.count_ref};
    std::vector<float> params = normal(P, 7);
    Buffer dp = upload(s, params), dm = device_buffer(P * sizeof(float)), da = device_buffer((P + 2) * sizeof(float));
    optim::SgdReference ref(P);
    std::mt19937 rng(99);
    for (int step = 0; step < 6; ++step) {
      const float n = step == 3 ? 0.0f : static_cast<float>(1 + rng() % 300);
      std::vector<float> acc = normal(P + 2, 100 + step, 1.0f);
      for (size_t i = 0; i < P; ++i) acc[i] *= std::max(n, 1.0f);  // gradient SUMS
      acc[P] = n;
      acc[P + 1] = 12.5f;
      copy_async(s, da.data(), acc.data(), acc.size() * sizeof(float));
      s.synchronize();  // the host backend copies in a task; `acc` is reused below
      const double lr = sched.lr_at(step);
      optim::fused_sgd_update(s, dp.as<float>(), dm.as<float>(), da.as<float>(), P, static_cast<float>(lr), cfg,
                              static_cast<float>(c.lr_scale));
      ref.step(params, acc, lr, cfg, c.lr_scale);
      std::vector<float> got_p = download<float>(s, dp, P), got_m = download<float>(s, dm, P);
      std::vector<float> got_a = download<float>(s, da, P + 2);
      EXPECT_TRUE(same_bits(got_a, std::vector<float>(P + 2, 0.0f))) << "accumulator not zeroed, step " << step;
      for (size_t i = 0; i < P; ++i) {
        ASSERT_NEAR(got_p[i], params[i], 1e-5 * (1.0 + std::fabs(params[i]))) << "param " << i << " step " << step;
        if (c.momentum != 0.0) {
          ASSERT_NEAR(got_m[i], ref.momentum()[i], 1e-5 * (1.0 + std::fabs(ref.momentum()[i])))
              << "momentum " << i << " step " << step;
        }
      }
      params = got_p;  // keep the two paths on the same weights; errors do not compound
    }
  }
}

TEST_P(OptimTest, ZeroCountSkipsTheUpdateAndStillClearsTheAccumulator) {
  const size_t P = 1000;
  Stream s = stream();
  std::vector<float> params = normal(P, 1), mom = normal(P, 2), acc = normal(P + 2, 3);
  acc[P] = 0.0f;
  acc[P + 1] = 3.0f;
  Buffer dp = upload(s, params), dm = upload(s, mom), da = upload(s, acc);
  optim::fused_sgd_update(s, dp.as<float>(), dm.as<float>(), da.as<float>(), P, 0.1f,
                          optim::SgdConfig{0.1, 0.9, 5e-4, true, 0.0}, 1.0f);
  EXPECT_TRUE(same_bits(download<float>(s, dp, P), params));
  EXPECT_TRUE(same_bits(download<float>(s, dm, P), mom));
  EXPECT_TRUE(same_bits(download<float>(s, da, P + 2), std::vector<float>(P + 2, 0.0f)));
}

TEST_P(OptimTest, AMiniBatchThatNeverCommitsLeavesTheAccumulatorBitIdentical) {
  const size_t P = 777;
  Stream s = stream();
  std::vector<float> acc = normal(P + 2, 5), scratch = normal(P + 2, 6);
  acc[P] = 64.0f;
  scratch[P] = 32.0f;
  Buffer da = upload(s, acc), ds = device_buffer((P + 2) * sizeof(float));
  // The mini-batch writes its scratch (as its backward would) and is cut off: no commit.
  copy_async(s, ds.data(), scratch.data(), scratch.size() * sizeof(float));
  s.synchronize();
  EXPECT_TRUE(same_bits(download<float>(s, da, P + 2), acc));
  // A second one commits: every entry is exactly acc + scratch in fp32.
  optim::commit(s, ds.as<float>(), da.as<float>(), P);
  std::vector<float> want(P + 2);
  for (size_t i = 0; i < P + 2; ++i) want[i] = acc[i] + scratch[i];
  EXPECT_TRUE(same_bits(download<float>(s, da, P + 2), want));
  optim::zero(s, da.as<float>(), P);
  EXPECT_TRUE(same_bits(download<float>(s, da, P + 2), std::vector<float>(P + 2, 0.0f)));
}

// The commit waits behind a gate the test holds shut: until the event after it
// completes, no entry has changed; once it has, all P+2 have.
TEST_P(OptimTest, CommitIsAllOrNothing) {
  const size_t P = (1u << 20) + 5;
  Stream s = stream("commit"), gate = stream("gate"), reader = stream("reader");
  std::vector<float> acc = normal(P + 2, 8), scratch = normal(P + 2, 9);
  Buffer da = upload(reader, acc), ds = upload(reader, scratch);
  std::promise<void> open;
  std::shared_future<void> opened = open.get_future().share();
  Event gate_open(backend(), 0), committed(backend(), 0);
  gate.host_task([opened] { opened.wait(); });
  gate.record(gate_open);
  s.wait(gate_open);
  optim::commit(s, ds.as<float>(), da.as<float>(), P);
  s.record(committed);

  EXPECT_FALSE(committed.query());
  EXPECT_TRUE(same_bits(download<float>(reader, da, P + 2), acc)) << "entries changed before the commit ran";
  open.set_value();
  committed.synchronize();
  std::vector<float> want(P + 2);
  for (size_t i = 0; i < P + 2; ++i) want[i] = acc[i] + scratch[i];
  EXPECT_TRUE(same_bits(download<float>(reader, da, P + 2), want)) << "not every entry was committed";
}

}  // namespace nbsgd::test
