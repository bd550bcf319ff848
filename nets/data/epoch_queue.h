// The one shared epoch queue that every worker takes mini-batches from (METHOD.md,
// "What happens to unfinished work"). A fast worker simply takes more often (work
// stealing); a cancelled mini-batch is handed back and its samples are handed out
// again before anything new, so each epoch still uses every sample exactly once.
//
// Hand-out order for take(max):
//   1. returned samples, front first: the most recently returned batch is at the
//      front (LIFO at the front). Consecutive returned batches of the same epoch are
//      merged up to max; a returned batch larger than max is split and the rest
//      stays at the front.
//   2. then the current epoch's permutation, topping the batch up only when it is
//      the same epoch as the returned samples already in it (a mini-batch never
//      mixes two epochs);
//   3. when the permutation is used up, the next epoch's permutation starts. The
//      previous epoch may still have batches out; they finish or come back later.
//
// Every call is under one mutex, so the order of calls alone decides the batches:
// the same sequence of take/give_back/commit gives the same batches.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace nbsgd::data {

struct MiniBatch {
  uint64_t id = 0;    // unique per hand-out, also across save/restore
  int64_t epoch = 0;  // all indices belong to this epoch
  std::vector<int32_t> indices;
};

class EpochQueue {
 public:
  // shuffle = false hands out 0..n-1 in order every epoch. The permutation of epoch
  // e depends only on (seed, e). max_epochs > 0 stops handing out new samples once
  // epoch max_epochs would start (take() then returns nullopt when nothing is left
  // to hand out); -1 runs forever.
  EpochQueue(int64_t dataset_size, uint64_t seed, bool shuffle, int64_t max_epochs = -1);

  EpochQueue(EpochQueue&& other) noexcept;
  EpochQueue& operator=(EpochQueue&& other) noexcept;
  EpochQueue(const EpochQueue&) = delete;
  EpochQueue& operator=(const EpochQueue&) = delete;

  // Up to max_samples (> 0) indices, never more than one epoch's; nullopt only when
  // the dataset is empty or max_epochs is reached and nothing was handed back.
  std::optional<MiniBatch> take(int64_t max_samples);
  // Cancelled: the samples return to the front of the queue.
  void give_back(MiniBatch batch);
  // Finished: the samples count as used for their epoch.
  void commit(const MiniBatch& batch);

  int64_t dataset_size() const { return n_; }
  // The epoch whose permutation is being handed out.
  int64_t current_epoch() const;
  int64_t samples_committed(int64_t epoch) const;
  // Every sample of the epoch committed exactly once.
  bool epoch_complete(int64_t epoch) const;
  // Samples handed back and waiting at the front.
  int64_t samples_returned() const;
  // Batches handed out and neither committed nor given back.
  int64_t batches_outstanding() const;

  // JSON text: seed, shuffle, epoch, cursor, returned and outstanding batches, and
  // per-epoch counters. restore() treats outstanding batches as given back (in
  // hand-out order, so the last one handed out is at the front) and throws
  // InputError("epoch queue state: ...") for text it cannot trust.
  std::string save_state() const;
  static EpochQueue restore(const std::string& state_json);

 private:
  // Per-sample state within one epoch, kept while the epoch is not complete; the
  // debug check that nothing is committed twice or without being handed out.
  enum SampleState : uint8_t { kWaiting = 0, kOut = 1, kCommitted = 2 };
  struct EpochBook {
    int64_t committed = 0;
    std::vector<uint8_t> state;  // size n_ while incomplete, empty once complete
  };

  void start_epoch_locked(int64_t epoch);
  EpochBook& book_locked(int64_t epoch);
  const EpochBook* find_book_locked(int64_t epoch) const;
  void give_back_locked(MiniBatch batch);
  std::vector<int32_t> permutation(int64_t epoch) const;

  mutable std::mutex mu_;
  int64_t n_ = 0;
  uint64_t seed_ = 0;
  bool shuffle_ = true;
  int64_t max_epochs_ = -1;
  int64_t epoch_ = 0;          // epoch of perm_
  int64_t cursor_ = 0;         // next position in perm_
  std::vector<int32_t> perm_;  // permutation of epoch_
  uint64_t next_id_ = 0;
  std::vector<MiniBatch> returned_;             // back() is the front of the queue
  std::map<uint64_t, MiniBatch> outstanding_;   // by id
  std::map<int64_t, EpochBook> books_;          // epochs with any activity
};

}  // namespace nbsgd::data
