// The shared epoch queue: order of hand-out, exactly-once per epoch under random
// and concurrent interleavings of take / give_back / commit, its debug checks, and
// save/restore.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "nets/data/epoch_queue.h"
#include "nets/data/rng.h"
#include "runtime/device/check.h"

namespace nbsgd::data {
namespace {

std::vector<int32_t> range(int32_t b, int32_t e) {
  std::vector<int32_t> v(static_cast<size_t>(e - b));
  std::iota(v.begin(), v.end(), b);
  return v;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(Rng, MatchesPublishedSplitmix64) {
  // First outputs of splitmix64 from state 0 (Vigna's reference implementation).
  uint64_t s = 0;
  EXPECT_EQ(splitmix64(s), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(splitmix64(s), 0x6E789E6AA1B965F4ULL);
}

TEST(EpochQueue, NoShuffleHandsOutInOrderAndNeverMixesEpochs) {
  EpochQueue q(10, 123, false);
  auto a = q.take(4), b = q.take(4), c = q.take(4), d = q.take(4);
  ASSERT_TRUE(a && b && c && d);
  EXPECT_EQ(a->indices, range(0, 4));
  EXPECT_EQ(b->indices, range(4, 8));
  EXPECT_EQ(c->indices, range(8, 10));  // the rest of epoch 0 only
  EXPECT_EQ(c->epoch, 0);
  EXPECT_EQ(d->indices, range(0, 4));
  EXPECT_EQ(d->epoch, 1);
  EXPECT_EQ(q.current_epoch(), 1);
  EXPECT_NE(a->id, b->id);
}

TEST(EpochQueue, ShuffleIsAPermutationPerEpochFromSeedAndEpoch) {
  const auto epoch_order = [](uint64_t seed, int64_t epoch) {
    EpochQueue q(50, seed, true);
    std::vector<int32_t> order;
    while (true) {
      auto b = q.take(7);
      if (b->epoch > epoch) break;
      if (b->epoch == epoch) order.insert(order.end(), b->indices.begin(), b->indices.end());
      q.commit(*b);
    }
    return order;
  };
  const auto e0 = epoch_order(1, 0), e1 = epoch_order(1, 1);
  auto sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, range(0, 50));
  sorted = e1;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, range(0, 50));
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, range(0, 50));
  EXPECT_EQ(e0, epoch_order(1, 0));
  EXPECT_NE(e0, epoch_order(2, 0));
}

TEST(EpochQueue, ReturnedBatchesComeFirstMostRecentFirst) {
  EpochQueue q(100, 0, false);
  auto a = *q.take(10), b = *q.take(10), c = *q.take(10);
  q.give_back(a);
  q.give_back(c);
  EXPECT_EQ(q.samples_returned(), 20);
  EXPECT_EQ(q.take(10)->indices, range(20, 30));  // c, returned last
  EXPECT_EQ(q.take(10)->indices, range(0, 10));   // then a
  EXPECT_EQ(q.take(10)->indices, range(30, 40));  // then the permutation
  EXPECT_EQ(q.samples_returned(), 0);
}

TEST(EpochQueue, ReturnedBatchIsSplitThenToppedUpFromTheSameEpoch) {
  EpochQueue q(100, 0, false);
  auto a = *q.take(10);
  q.give_back(a);
  EXPECT_EQ(q.take(4)->indices, range(0, 4));
  EXPECT_EQ(q.take(4)->indices, range(4, 8));
  EXPECT_EQ(q.take(4)->indices, concat(range(8, 10), range(10, 12)));
  // Two small returned batches of one epoch merge, front first.
  auto b = *q.take(3), c = *q.take(3);  // 12..14, 15..17
  q.give_back(b);
  q.give_back(c);
  EXPECT_EQ(q.take(8)->indices, concat(concat(range(15, 18), range(12, 15)), range(18, 20)));
}

TEST(EpochQueue, ReturnedBatchOfAnOldEpochIsNotMixedWithTheNewOne) {
  EpochQueue q(10, 0, false);
  auto a = *q.take(6), b = *q.take(6), c = *q.take(6);
  ASSERT_EQ(b.epoch, 0);
  ASSERT_EQ(c.epoch, 1);
  q.give_back(b);
  auto again = *q.take(6);
  EXPECT_EQ(again.epoch, 0);
  EXPECT_EQ(again.indices, range(6, 10));  // not topped up from epoch 1
  q.give_back(c);
  q.give_back(again);
  // Front is epoch 0 (returned last); epoch 1's batch waits behind it.
  auto x = *q.take(20);
  EXPECT_EQ(x.epoch, 0);
  EXPECT_EQ(x.indices, range(6, 10));
  auto y = *q.take(20);
  EXPECT_EQ(y.epoch, 1);
  EXPECT_EQ(y.indices, range(0, 10));  // returned 0..5, topped up with 6..9
  q.commit(a);
  q.commit(x);
  q.commit(y);
  EXPECT_TRUE(q.epoch_complete(0));
  EXPECT_TRUE(q.epoch_complete(1));
  EXPECT_FALSE(q.epoch_complete(2));
}

TEST(EpochQueue, MaxEpochsAndEmptyDataset) {
  EpochQueue empty(0, 0, true);
  EXPECT_FALSE(empty.take(5).has_value());
  EpochQueue q(5, 0, true, 2);
  std::vector<MiniBatch> got;
  while (auto b = q.take(3)) got.push_back(*b);
  ASSERT_EQ(got.size(), 4u);  // 3+2 per epoch, two epochs
  EXPECT_EQ(got.back().epoch, 1);
  q.give_back(got.back());
  auto again = q.take(3);  // returned samples are still handed out
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->indices, got.back().indices);
  EXPECT_FALSE(q.take(3).has_value());
}

TEST(EpochQueue, DebugChecksThrow) {
  EpochQueue q(20, 0, true);
  auto a = *q.take(5);
  q.commit(a);
  EXPECT_THROW(q.commit(a), Error);     // committed twice
  EXPECT_THROW(q.give_back(a), Error);  // returned after commit
  MiniBatch forged{999, 0, {1, 2}};
  EXPECT_THROW(q.commit(forged), Error);  // never handed out
  auto b = *q.take(5);
  MiniBatch changed = b;
  changed.indices[0] = a.indices[0];
  EXPECT_THROW(q.commit(changed), Error);  // indices not the ones handed out
  q.commit(b);
  EXPECT_EQ(q.samples_committed(0), 10);
  EXPECT_THROW(q.take(0), Error);
}

// A seeded random interleaving of take / give_back / commit, as a single thread
// would see it from several workers. Returns every batch handed out, in order.
struct Driver {
  Rng rng;
  std::vector<MiniBatch> out;  // outstanding, in hand-out order
  std::vector<std::vector<int>> committed_count;  // [epoch][index]
  int64_t n;

  Driver(uint64_t seed, int64_t n) : rng(seed), n(n) {}

  std::vector<MiniBatch> run(EpochQueue& q, int steps) {
    std::vector<MiniBatch> handed;
    for (int s = 0; s < steps; ++s) {
      const uint64_t op = rng.below(10);
      if (op < 5 || out.empty()) {
        auto b = q.take(1 + static_cast<int64_t>(rng.below(16)));
        if (!b) continue;
        handed.push_back(*b);
        out.push_back(*b);
      } else {
        const size_t k = static_cast<size_t>(rng.below(out.size()));
        MiniBatch b = out[k];
        out.erase(out.begin() + static_cast<std::ptrdiff_t>(k));
        if (op < 7) {
          q.give_back(b);
        } else {
          q.commit(b);
          if (committed_count.size() <= static_cast<size_t>(b.epoch))
            committed_count.resize(static_cast<size_t>(b.epoch) + 1, std::vector<int>(static_cast<size_t>(n), 0));
          for (int32_t i : b.indices) ++committed_count[b.epoch][i];
        }
      }
    }
    return handed;
  }
};

TEST(EpochQueue, RandomInterleavingsUseEverySampleOncePerEpoch) {
  for (uint64_t seed : {1, 2, 3, 4, 5}) {
    const int64_t n = 97;  // odd, and not a multiple of any batch size
    EpochQueue q(n, seed, true);
    Driver d(seed * 7919, n);
    const auto handed = d.run(q, 3000);
    for (const MiniBatch& b : handed) {
      ASSERT_FALSE(b.indices.empty());
      ASSERT_LE(b.indices.size(), 16u);
    }
    // Finish what is out, then check every completed epoch.
    for (const MiniBatch& b : d.out) q.give_back(b);
    d.out.clear();
    const int64_t last = q.current_epoch();
    ASSERT_GE(last, 3) << "seed " << seed;  // the run went through several epochs
    for (int64_t e = 0; e < last; ++e) {
      int64_t total = 0;
      for (int c : d.committed_count.at(e)) {
        ASSERT_LE(c, 1) << "epoch " << e;
        total += c;
      }
      EXPECT_EQ(total, q.samples_committed(e));
    }
    // Drain: commit everything up to the current epoch; every epoch before it ends complete.
    while (q.samples_returned() > 0) {
      auto b = q.take(16);
      q.commit(*b);
    }
    for (int64_t e = 0; e < last; ++e) {
      EXPECT_TRUE(q.epoch_complete(e)) << "seed " << seed << " epoch " << e;
      EXPECT_EQ(q.samples_committed(e), n);
    }
  }
}

TEST(EpochQueue, SameCallSequenceGivesSameBatches) {
  EpochQueue q1(64, 9, true), q2(64, 9, true);
  Driver d1(77, 64), d2(77, 64);
  const auto h1 = d1.run(q1, 2000), h2 = d2.run(q2, 2000);
  ASSERT_EQ(h1.size(), h2.size());
  for (size_t i = 0; i < h1.size(); ++i) {
    EXPECT_EQ(h1[i].id, h2[i].id);
    EXPECT_EQ(h1[i].epoch, h2[i].epoch);
    EXPECT_EQ(h1[i].indices, h2[i].indices);
  }
}

TEST(EpochQueue, SaveRestoreContinuesIdentically) {
  EpochQueue q(61, 11, true);
  Driver d(5, 61);
  d.run(q, 700);
  ASSERT_FALSE(d.out.empty());  // the state includes outstanding batches
  const std::string state = q.save_state();

  // Reference: the running queue, with the outstanding batches cancelled in
  // hand-out order, which is what restore() assumes happened.
  for (const MiniBatch& b : d.out) q.give_back(b);
  Driver d_ref = d;  // same op stream from here on for both
  d_ref.out.clear();
  EpochQueue r = EpochQueue::restore(state);
  Driver d_res = d_ref;
  EXPECT_EQ(r.current_epoch(), q.current_epoch());
  EXPECT_EQ(r.samples_returned(), q.samples_returned());
  EXPECT_EQ(r.batches_outstanding(), 0);
  for (int64_t e = 0; e <= q.current_epoch(); ++e) EXPECT_EQ(r.samples_committed(e), q.samples_committed(e));

  const auto h_ref = d_ref.run(q, 1500), h_res = d_res.run(r, 1500);
  ASSERT_EQ(h_ref.size(), h_res.size());
  for (size_t i = 0; i < h_ref.size(); ++i) {
    EXPECT_EQ(h_ref[i].id, h_res[i].id);
    EXPECT_EQ(h_ref[i].epoch, h_res[i].epoch);
    ASSERT_EQ(h_ref[i].indices, h_res[i].indices) << i;
  }
  EXPECT_EQ(q.save_state(), r.save_state());
}

TEST(EpochQueue, RestoreRejectsBadState) {
  EpochQueue q(10, 3, false);
  auto a = *q.take(4);
  q.commit(a);
  auto b = *q.take(3);
  q.give_back(b);
  const std::string good = q.save_state();
  EXPECT_NO_THROW(EpochQueue::restore(good));
  const auto expect_bad = [](const std::string& text) {
    try {
      EpochQueue::restore(text);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const InputError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("epoch queue state: ", 0), 0u) << e.what();
    }
  };
  const auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };
  expect_bad("not json");
  expect_bad("[1,2]");
  expect_bad(replace("\"format\":\"nbsgd-epoch-queue\"", "\"format\":\"other\""));
  expect_bad(replace("\"indices\":[4,5,6]", "\"indices\":[4,5,60]"));   // index out of range
  expect_bad(replace("\"indices\":[4,5,6]", "\"indices\":[4,5,7]"));    // 7 not yet handed out
  expect_bad(replace("\"committed\":4", "\"committed\":5"));           // counter disagrees
  expect_bad(replace("\"cursor\":7", "\"cursor\":70"));
}

TEST(EpochQueue, ConcurrentWorkersUseEverySampleOncePerEpoch) {
  constexpr int64_t n = 1000, epochs = 3;
  EpochQueue q(n, 17, true, epochs);
  std::mutex mu;
  std::vector<std::vector<int>> count(epochs, std::vector<int>(n, 0));
  std::atomic<bool> failed{false};
  const auto worker = [&](uint64_t seed) {
    Rng rng(seed);
    try {
      while (true) {
        auto b = q.take(1 + static_cast<int64_t>(rng.below(32)));
        if (!b) {
          bool all = true;
          for (int64_t e = 0; e < epochs; ++e) all = all && q.epoch_complete(e);
          if (all) return;
          std::this_thread::yield();  // another worker may still give some back
          continue;
        }
        if (rng.below(4) == 0) {
          q.give_back(std::move(*b));  // cancelled by the window
        } else {
          {
            std::lock_guard lock(mu);
            for (int32_t i : b->indices) ++count[b->epoch][i];
          }
          q.commit(*b);
        }
      }
    } catch (const std::exception& e) {
      failed = true;
      ADD_FAILURE() << e.what();
    }
  };
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; ++t) threads.emplace_back(worker, 100 + t);
  for (auto& t : threads) t.join();
  ASSERT_FALSE(failed);
  for (int64_t e = 0; e < epochs; ++e) {
    EXPECT_TRUE(q.epoch_complete(e));
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(count[e][i], 1) << "epoch " << e << " sample " << i;
  }
}

}  // namespace
}  // namespace nbsgd::data
