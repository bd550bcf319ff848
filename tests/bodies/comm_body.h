// Communicators on every backend: all-reduce and gossip checked bit for bit with
// integer-valued data (and dyadic weights), whose sums are exact in fp32.
//   Host: host workers, in-process implementation.
//   CUDA: worker k on GPU k % (number of GPUs): NCCL when that gives N distinct
//         GPUs, the in-process device kernels (and peer copies) otherwise.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <future>
#include <memory>
#include <random>

#include "nets/optim/sgd.h"
#include "runtime/device/check.h"
#include "runtime/device/comm/comm.h"
#include "runtime/device/context.h"
#include "runtime/train/gossip/matcha.h"
#include "runtime/train/gossip/mixing.h"
#include "support/backend_test.h"

namespace nbsgd::test {

class CommTest : public BackendTest {
 protected:
  void make_workers(int n) {
    ctx_.clear();
    ptrs_.clear();
    DeviceList l = backend() == Backend::Cuda ? discover_devices() : host_devices(n, "test");
    for (int k = 0; k < n; ++k) {
      Device d = l.devices[static_cast<size_t>(k) % l.devices.size()];
      d.index = k;
      ctx_.push_back(std::make_unique<DeviceContext>(d, ClockKind::Real));
    }
    for (auto& c : ctx_) ptrs_.push_back(c.get());
  }
  Buffer worker_buffer(int k, size_t floats) {
    return Buffer(backend(), ctx_[k]->device().ordinal, std::max<size_t>(floats, 1) * sizeof(float));
  }
  void put(int k, Buffer& b, const std::vector<float>& v) {
    copy_async(ctx_[k]->copy(), b.data(), v.data(), v.size() * sizeof(float));
    ctx_[k]->copy().synchronize();
  }
  std::vector<float> get(int k, const Buffer& b, size_t n) {
    std::vector<float> v(n);
    copy_async(ctx_[k]->copy(), v.data(), b.data(), n * sizeof(float));
    ctx_[k]->copy().synchronize();
    return v;
  }
  // Ready events recorded on each worker's compute stream.
  std::vector<const Event*> ready_now() {
    ready_.clear();
    std::vector<const Event*> r;
    for (auto& c : ctx_) {
      ready_.push_back(c->event());
      c->compute().record(ready_.back());
    }
    for (auto& e : ready_) r.push_back(&e);
    return r;
  }
  void drain() {
    for (auto& c : ctx_) c->comm().synchronize();
  }
  // Integers in [-1000, 1000], different per worker and element.
  static std::vector<float> ints(size_t n, int worker, unsigned salt) {
    std::vector<float> v(n);
    for (size_t e = 0; e < n; ++e)
      v[e] = static_cast<float>(static_cast<int>((e * 2654435761u + unsigned(worker) * 40503u + salt) % 2001u) - 1000);
    return v;
  }
  static bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  }
  static comm::MixWeights ring(int n) {
    comm::MixWeights w(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      if (n == 2) {
        w[i] = {{0, 0.5}, {1, 0.5}};
        continue;
      }
      std::vector<std::pair<int, double>> l = {{(i + n - 1) % n, 0.25}, {i, 0.5}, {(i + 1) % n, 0.25}};
      std::sort(l.begin(), l.end());
      w[i] = l;
    }
    return w;
  }
  static comm::MixWeights complete(int n) {
    comm::MixWeights w(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) w[i].push_back({j, j == i ? 1.0 - (n - 1) / 8.0 : 0.125});
    return w;
  }
  std::vector<std::unique_ptr<DeviceContext>> ctx_;
  std::vector<DeviceContext*> ptrs_;
  std::vector<Event> ready_;
};

TEST_P(CommTest, AllReduceIsTheExactIntegerSumOnEveryWorker) {
  for (int n = 1; n <= 8; ++n) {
    make_workers(n);
    auto ar = comm::make_all_reduce(ptrs_);
    for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t(n + 1), size_t{1009}, size_t{1000003}}) {
      SCOPED_TRACE("N=" + std::to_string(n) + " count=" + std::to_string(count) + " " + ar->name());
      std::vector<Buffer> bufs;
      std::vector<float*> ptrs;
      std::vector<float> want(count, 0.0f);
      for (int k = 0; k < n; ++k) {
        std::vector<float> v = ints(count, k, unsigned(count));
        for (size_t e = 0; e < count; ++e) want[e] += v[e];
        bufs.push_back(worker_buffer(k, count));
        put(k, bufs.back(), v);
        ptrs.push_back(bufs.back().as<float>());
      }
      ar->all_reduce_sum(ptrs, count, ready_now());
      drain();
      for (int k = 0; k < n; ++k) ASSERT_TRUE(same_bits(get(k, bufs[k], count), want)) << "worker " << k;
      // Again on the result: the communicator's events and buffers are reusable.
      ar->all_reduce_sum(ptrs, count, ready_now());
      drain();
      for (auto& x : want) x *= static_cast<float>(n);
      for (int k = 0; k < n; ++k) ASSERT_TRUE(same_bits(get(k, bufs[k], count), want)) << "second call, worker " << k;
    }
  }
}

// In-process: every element is summed in worker order 0..N-1, so even inexact
// (random) data gives the left-to-right fp32 sum on every worker.
TEST_P(CommTest, InProcessAllReduceSumsInWorkerOrder) {
  const int n = 5;
  const size_t count = 1001;
  make_workers(n);
  if (comm::nccl_applies(ptrs_)) GTEST_SKIP() << "NCCL chooses its own order";
  auto ar = comm::make_all_reduce(ptrs_);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<Buffer> bufs;
  std::vector<float*> ptrs;
  std::vector<std::vector<float>> x(n, std::vector<float>(count));
  for (int k = 0; k < n; ++k) {
    for (auto& v : x[k]) v = u(rng) * std::pow(10.0f, float(k - 2));
    bufs.push_back(worker_buffer(k, count));
    put(k, bufs.back(), x[k]);
    ptrs.push_back(bufs.back().as<float>());
  }
  std::vector<float> want(count);
  for (size_t e = 0; e < count; ++e) {
    float s = x[0][e];
    for (int k = 1; k < n; ++k) s += x[k][e];
    want[e] = s;
  }
  ar->all_reduce_sum(ptrs, count, ready_now());
  drain();
  for (int k = 0; k < n; ++k) EXPECT_TRUE(same_bits(get(k, bufs[k], count), want)) << "worker " << k;
}

// The comm streams wait for the ready events: data written late on a compute
// stream (behind a gate the test holds) is what gets summed.
TEST_P(CommTest, AllReduceWaitsForTheReadyEvents) {
  const int n = 3;
  const size_t count = 4097;
  make_workers(n);
  auto ar = comm::make_all_reduce(ptrs_);
  std::promise<void> open;
  std::shared_future<void> opened = open.get_future().share();
  std::vector<Buffer> bufs, staged;
  std::vector<float*> ptrs;
  std::vector<float> want(count, 0.0f);
  for (int k = 0; k < n; ++k) {
    std::vector<float> v = ints(count, k, 5);
    for (size_t e = 0; e < count; ++e) want[e] += v[e];
    bufs.push_back(worker_buffer(k, count));
    staged.push_back(Buffer::pinned(backend(), count * sizeof(float)));
    std::memcpy(staged.back().data(), v.data(), count * sizeof(float));
    ptrs.push_back(bufs.back().as<float>());
    if (k == n - 1) ctx_[k]->compute().host_task([opened] { opened.wait(); });
    copy_async(ctx_[k]->compute(), bufs.back().data(), staged.back().data(), count * sizeof(float));
  }
  ar->all_reduce_sum(ptrs, count, ready_now());
  open.set_value();
  drain();
  for (int k = 0; k < n; ++k) EXPECT_TRUE(same_bits(get(k, bufs[k], count), want)) << "worker " << k;
}

// x_i <- sum_j W_ij x_j with dyadic weights on integer data is exact; two rounds,
// so the second reads models the first wrote.
TEST_P(CommTest, GossipMixIsExactOnRingAndCompleteGraphs) {
  for (int n = 2; n <= 8; ++n) {
    make_workers(n);
    auto gx = comm::make_gossip_exchange(ptrs_);
    for (int graph = 0; graph < 2; ++graph) {
      const comm::MixWeights w = graph == 0 ? ring(n) : complete(n);
      for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1009}}) {
        SCOPED_TRACE(std::string(graph == 0 ? "ring" : "complete") + " N=" + std::to_string(n) +
                     " count=" + std::to_string(count) + " " + gx->name());
        std::vector<Buffer> bufs;
        std::vector<float*> ptrs;
        std::vector<std::vector<double>> want(n);
        for (int k = 0; k < n; ++k) {
          std::vector<float> v = ints(count, k, 17);
          want[k].assign(v.begin(), v.end());
          bufs.push_back(worker_buffer(k, count));
          put(k, bufs.back(), v);
          ptrs.push_back(bufs.back().as<float>());
        }
        for (int round = 0; round < 2; ++round) {
          std::vector<std::vector<double>> next(n, std::vector<double>(count, 0.0));
          for (int i = 0; i < n; ++i)
            for (auto [j, wij] : w[i])
              for (size_t e = 0; e < count; ++e) next[i][e] += wij * want[j][e];
          want = next;
          gx->mix(ptrs, count, w, ready_now());
          drain();
          for (int k = 0; k < n; ++k) {
            std::vector<float> wf(want[k].begin(), want[k].end());
            ASSERT_TRUE(same_bits(get(k, bufs[k], count), wf)) << "round " << round << " worker " << k;
          }
        }
      }
    }
  }
}

// Local step then mix, fused: x_i <- sum_j W_ij (x_j - lr (G_j/n_j + wd x_j)), with
// n_j = 0 meaning no step for j. Dyadic lr, wd, weights and counts keep it exact.
TEST_P(CommTest, FusedGossipSgdStepsThenMixesExactly) {
  const float lr = 0.5f, wd = 0.25f;
  for (int n : {2, 3, 5, 8}) {
    make_workers(n);
    auto gx = comm::make_gossip_exchange(ptrs_);
    for (int graph = 0; graph < 2; ++graph) {
      const comm::MixWeights w = graph == 0 ? ring(n) : complete(n);
      const size_t P = 523;
      SCOPED_TRACE(std::string(graph == 0 ? "ring" : "complete") + " N=" + std::to_string(n) + " " + gx->name());
      std::vector<Buffer> xs, accs;
      std::vector<float*> xp, ap;
      std::vector<std::vector<double>> stepped(n);
      for (int k = 0; k < n; ++k) {
        std::vector<float> x = ints(P, k, 3), acc = ints(P + 2, k + 100, 4);
        const float cnt = k == 1 ? 0.0f : float(2 << (k % 3));  // 2, 4, 8; worker 1 finished nothing
        acc[P] = cnt;
        acc[P + 1] = 7.0f;
        stepped[k].resize(P);
        for (size_t e = 0; e < P; ++e)
          stepped[k][e] = cnt == 0.0f ? x[e] : x[e] - lr * (acc[e] / double(cnt) + wd * x[e]);
        xs.push_back(worker_buffer(k, P));
        accs.push_back(worker_buffer(k, P + 2));
        put(k, xs.back(), x);
        put(k, accs.back(), acc);
        xp.push_back(xs.back().as<float>());
        ap.push_back(accs.back().as<float>());
      }
      gx->fused_gossip_sgd(xp, ap, P, comm::GossipStep{lr, wd}, w, ready_now());
      drain();
      for (int i = 0; i < n; ++i) {
        std::vector<float> want(P);
        for (size_t e = 0; e < P; ++e) {
          double s = 0;
          for (auto [j, wij] : w[i]) s += wij * stepped[j][e];
          want[e] = static_cast<float>(s);
        }
        ASSERT_TRUE(same_bits(get(i, xs[i], P), want)) << "worker " << i;
        ASSERT_TRUE(same_bits(get(i, accs[i], P + 2), std::vector<float>(P + 2, 0.0f))) << "accumulator " << i;
      }
    }
  }
}

// The fused kernel against the unfused path on random data: optim::fused_sgd_update
// (momentum 0) on each worker, then mix(). The same fp32 expressions in the same
// order: bitwise on the host; 1e-6 relative on CUDA (FMA contraction may differ).
TEST_P(CommTest, FusedGossipSgdEqualsTheOptimizerStepThenMix) {
  const int n = 4;
  const size_t P = 3001;
  const float lr = 0.05f, wd = 1e-3f;
  make_workers(n);
  auto gx = comm::make_gossip_exchange(ptrs_);
  const comm::MixWeights w = ring(n);
  std::mt19937 rng(11);
  std::normal_distribution<float> d;
  std::vector<Buffer> xa, xb, aa, ab;
  std::vector<float*> pxa, pxb, paa, pab;
  for (int k = 0; k < n; ++k) {
    std::vector<float> x(P), acc(P + 2);
    for (auto& v : x) v = d(rng);
    for (auto& v : acc) v = d(rng) * 10.0f;
    acc[P] = k == 2 ? 0.0f : float(7 + 3 * k);
    for (auto* set : {&xa, &xb}) set->push_back(worker_buffer(k, P)), put(k, set->back(), x);
    for (auto* set : {&aa, &ab}) set->push_back(worker_buffer(k, P + 2)), put(k, set->back(), acc);
    pxa.push_back(xa.back().as<float>());
    pxb.push_back(xb.back().as<float>());
    paa.push_back(aa.back().as<float>());
    pab.push_back(ab.back().as<float>());
  }
  gx->fused_gossip_sgd(pxa, paa, P, comm::GossipStep{lr, wd}, w, ready_now());
  drain();
  const optim::SgdConfig cfg{lr, 0.0, wd, false, 0.0};
  std::vector<Event> stepped;
  std::vector<const Event*> sp;
  for (int k = 0; k < n; ++k) {
    optim::fused_sgd_update(ctx_[k]->compute(), pxb[k], nullptr, pab[k], P, lr, cfg, 1.0f);
    stepped.push_back(ctx_[k]->event());
    ctx_[k]->compute().record(stepped.back());
  }
  for (auto& e : stepped) sp.push_back(&e);
  gx->mix(pxb, P, w, sp);
  drain();
  for (int k = 0; k < n; ++k) {
    std::vector<float> fused = get(k, xa[k], P), unfused = get(k, xb[k], P);
    if (backend() == Backend::Host) {
      EXPECT_TRUE(same_bits(fused, unfused)) << "worker " << k;
    } else {
      for (size_t e = 0; e < P; ++e)
        ASSERT_NEAR(fused[e], unfused[e], 1e-6f * (1.0f + std::fabs(unfused[e]))) << "worker " << k << " at " << e;
    }
    EXPECT_TRUE(same_bits(get(k, aa[k], P + 2), get(k, ab[k], P + 2)));
  }
}

// MATCHA's per-step weights (runtime/gossip) drive the exchange: the result equals
// the dense W of that step times the stacked models (fp32 sums of doubles rounded to
// float: 1e-6 relative).
TEST_P(CommTest, MatchaStepWeightsMixLikeTheDenseMatrix) {
  const int n = 6;
  const size_t count = 257;
  make_workers(n);
  auto gx = comm::make_gossip_exchange(ptrs_);
  gossip::MixingPlan plan = gossip::make_matcha_plan(gossip::erdos_renyi(n, 0.6, 5), 0.5);
  for (int64_t step = 0; step < 4; ++step) {
    std::vector<bool> active = gossip::active_matchings(plan, 42, step);
    comm::MixWeights w = gossip::step_weights(plan, active);
    Eigen::MatrixXd W = gossip::mixing_matrix(plan, active);
    std::vector<Buffer> bufs;
    std::vector<float*> ptrs;
    std::vector<std::vector<float>> x(n);
    for (int k = 0; k < n; ++k) {
      x[k] = ints(count, k, unsigned(step));
      bufs.push_back(worker_buffer(k, count));
      put(k, bufs.back(), x[k]);
      ptrs.push_back(bufs.back().as<float>());
    }
    gx->mix(ptrs, count, w, ready_now());
    drain();
    for (int i = 0; i < n; ++i) {
      std::vector<float> got = get(i, bufs[i], count);
      for (size_t e = 0; e < count; ++e) {
        double want = 0;
        for (int j = 0; j < n; ++j) want += W(i, j) * x[j][e];
        ASSERT_NEAR(got[e], want, 1e-6 * (1000.0 + std::fabs(want))) << "step " << step << " worker " << i;
      }
    }
  }
}

TEST_P(CommTest, MalformedMixingWeightsAreRefused) {
  make_workers(3);
  auto gx = comm::make_gossip_exchange(ptrs_);
  std::vector<Buffer> bufs;
  std::vector<float*> ptrs;
  for (int k = 0; k < 3; ++k) {
    bufs.push_back(worker_buffer(k, 4));
    ptrs.push_back(bufs.back().as<float>());
  }
  comm::MixWeights no_self = {{{1, 1.0}}, {{1, 1.0}}, {{2, 1.0}}};
  comm::MixWeights descending = {{{1, 0.5}, {0, 0.5}}, {{0, 0.5}, {1, 0.5}}, {{2, 1.0}}};
  comm::MixWeights out_of_range = {{{0, 1.0}}, {{1, 0.5}, {3, 0.5}}, {{2, 1.0}}};
  EXPECT_THROW(gx->mix(ptrs, 4, no_self, {}), Error);
  EXPECT_THROW(gx->mix(ptrs, 4, descending, {}), Error);
  EXPECT_THROW(gx->mix(ptrs, 4, out_of_range, {}), Error);
  EXPECT_THROW(gx->mix(ptrs, 4, comm::MixWeights(2), {}), Error);
}

}  // namespace nbsgd::test
