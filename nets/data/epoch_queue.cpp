#include "nets/data/epoch_queue.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <utility>

#include <nlohmann/json.hpp>

#include "nets/data/rng.h"
#include "runtime/device/check.h"

namespace nbsgd::data {

EpochQueue::EpochQueue(int64_t dataset_size, uint64_t seed, bool shuffle, int64_t max_epochs)
    : n_(dataset_size), seed_(seed), shuffle_(shuffle), max_epochs_(max_epochs) {
  NBSGD_CHECK(dataset_size >= 0 && dataset_size <= std::numeric_limits<int32_t>::max(),
              "epoch queue: dataset size must fit int32 indices, got " + std::to_string(dataset_size));
  NBSGD_CHECK(max_epochs == -1 || max_epochs > 0, "epoch queue: max_epochs must be -1 or positive");
  perm_ = permutation(0);
}

EpochQueue::EpochQueue(EpochQueue&& other) noexcept {
  std::lock_guard lock(other.mu_);
  n_ = other.n_;
  seed_ = other.seed_;
  shuffle_ = other.shuffle_;
  max_epochs_ = other.max_epochs_;
  epoch_ = other.epoch_;
  cursor_ = other.cursor_;
  perm_ = std::move(other.perm_);
  next_id_ = other.next_id_;
  returned_ = std::move(other.returned_);
  outstanding_ = std::move(other.outstanding_);
  books_ = std::move(other.books_);
}

EpochQueue& EpochQueue::operator=(EpochQueue&& other) noexcept {
  if (this == &other) return *this;
  std::scoped_lock lock(mu_, other.mu_);
  n_ = other.n_;
  seed_ = other.seed_;
  shuffle_ = other.shuffle_;
  max_epochs_ = other.max_epochs_;
  epoch_ = other.epoch_;
  cursor_ = other.cursor_;
  perm_ = std::move(other.perm_);
  next_id_ = other.next_id_;
  returned_ = std::move(other.returned_);
  outstanding_ = std::move(other.outstanding_);
  books_ = std::move(other.books_);
  return *this;
}

std::vector<int32_t> EpochQueue::permutation(int64_t epoch) const {
  std::vector<int32_t> p(static_cast<size_t>(n_));
  std::iota(p.begin(), p.end(), 0);
  if (shuffle_) {
    Rng rng(derive_seed(seed_, static_cast<uint64_t>(epoch)));
    shuffle(p, rng);
  }
  return p;
}

void EpochQueue::start_epoch_locked(int64_t epoch) {
  epoch_ = epoch;
  cursor_ = 0;
  perm_ = permutation(epoch);
}

EpochQueue::EpochBook& EpochQueue::book_locked(int64_t epoch) {
  auto [it, inserted] = books_.try_emplace(epoch);
  if (inserted) it->second.state.assign(static_cast<size_t>(n_), kWaiting);
  return it->second;
}

const EpochQueue::EpochBook* EpochQueue::find_book_locked(int64_t epoch) const {
  auto it = books_.find(epoch);
  return it == books_.end() ? nullptr : &it->second;
}

std::optional<MiniBatch> EpochQueue::take(int64_t max_samples) {
  NBSGD_CHECK(max_samples > 0, "epoch queue: take() needs max_samples > 0");
  std::lock_guard lock(mu_);
  if (n_ == 0) return std::nullopt;
  MiniBatch b;
  const auto room = [&] { return max_samples - static_cast<int64_t>(b.indices.size()); };

  // 1. Returned samples, front first, of the front batch's epoch only.
  if (!returned_.empty()) {
    b.epoch = returned_.back().epoch;
    while (!returned_.empty() && returned_.back().epoch == b.epoch && room() > 0) {
      std::vector<int32_t>& front = returned_.back().indices;
      const int64_t count = std::min<int64_t>(room(), static_cast<int64_t>(front.size()));
      b.indices.insert(b.indices.end(), front.begin(), front.begin() + count);
      if (count == static_cast<int64_t>(front.size()))
        returned_.pop_back();
      else
        front.erase(front.begin(), front.begin() + count);
    }
  }

  // 2./3. The permutation: top up within the same epoch, or start a batch from it,
  // moving to the next epoch if this one is used up.
  if (b.indices.empty()) {
    if (cursor_ == n_) {
      if (max_epochs_ > 0 && epoch_ + 1 >= max_epochs_) return std::nullopt;
      start_epoch_locked(epoch_ + 1);
    }
    b.epoch = epoch_;
  }
  if (room() > 0 && b.epoch == epoch_ && cursor_ < n_) {
    const int64_t count = std::min(room(), n_ - cursor_);
    b.indices.insert(b.indices.end(), perm_.begin() + cursor_, perm_.begin() + cursor_ + count);
    cursor_ += count;
  }

  EpochBook& book = book_locked(b.epoch);
  for (int32_t i : b.indices) {
    NBSGD_CHECK(book.state[i] == kWaiting, "epoch queue: sample " + std::to_string(i) + " of epoch " +
                                               std::to_string(b.epoch) + " handed out twice");
    book.state[i] = kOut;
  }
  b.id = next_id_++;
  outstanding_.emplace(b.id, b);
  return b;
}

// The batch must be out, unchanged: it is the same object take() handed out.
static void check_is_outstanding(const std::map<uint64_t, MiniBatch>& outstanding, const MiniBatch& b,
                                 const char* action) {
  auto it = outstanding.find(b.id);
  if (it == outstanding.end())
    NBSGD_FAIL(std::string("epoch queue: mini-batch ") + std::to_string(b.id) + " " + action +
               " but it is not out (never handed out, or already committed or given back)");
  NBSGD_CHECK(it->second.epoch == b.epoch && it->second.indices == b.indices,
              std::string("epoch queue: mini-batch ") + std::to_string(b.id) + " " + action +
                  " with indices or epoch different from those handed out");
}

void EpochQueue::give_back(MiniBatch batch) {
  std::lock_guard lock(mu_);
  give_back_locked(std::move(batch));
}

void EpochQueue::give_back_locked(MiniBatch batch) {
  check_is_outstanding(outstanding_, batch, "given back");
  EpochBook& book = book_locked(batch.epoch);
  for (int32_t i : batch.indices) {
    NBSGD_CHECK(book.state[i] == kOut, "epoch queue: sample " + std::to_string(i) + " given back but not out");
    book.state[i] = kWaiting;
  }
  outstanding_.erase(batch.id);
  returned_.push_back(std::move(batch));
}

void EpochQueue::commit(const MiniBatch& batch) {
  std::lock_guard lock(mu_);
  check_is_outstanding(outstanding_, batch, "committed");
  EpochBook& book = book_locked(batch.epoch);
  for (int32_t i : batch.indices) {
    NBSGD_CHECK(book.state[i] != kCommitted, "epoch queue: sample " + std::to_string(i) + " of epoch " +
                                                 std::to_string(batch.epoch) + " committed twice");
    NBSGD_CHECK(book.state[i] == kOut, "epoch queue: sample " + std::to_string(i) + " of epoch " +
                                           std::to_string(batch.epoch) + " committed without being handed out");
    book.state[i] = kCommitted;
  }
  book.committed += static_cast<int64_t>(batch.indices.size());
  if (book.committed == n_) book.state = {};  // complete: keep only the counter
  outstanding_.erase(batch.id);
}

int64_t EpochQueue::current_epoch() const {
  std::lock_guard lock(mu_);
  return epoch_;
}

int64_t EpochQueue::samples_committed(int64_t epoch) const {
  std::lock_guard lock(mu_);
  const EpochBook* book = find_book_locked(epoch);
  return book ? book->committed : 0;
}

bool EpochQueue::epoch_complete(int64_t epoch) const {
  std::lock_guard lock(mu_);
  const EpochBook* book = find_book_locked(epoch);
  return (book ? book->committed : 0) == n_;
}

int64_t EpochQueue::samples_returned() const {
  std::lock_guard lock(mu_);
  int64_t total = 0;
  for (const MiniBatch& b : returned_) total += static_cast<int64_t>(b.indices.size());
  return total;
}

int64_t EpochQueue::batches_outstanding() const {
  std::lock_guard lock(mu_);
  return static_cast<int64_t>(outstanding_.size());
}

// ------------------------------------------------------------------ state

namespace {

constexpr const char* kFormat = "nbsgd-epoch-queue";
constexpr int kVersion = 1;

[[noreturn]] void bad_state(const std::string& what) { throw InputError("epoch queue state: " + what); }

template <typename T>
T get_field(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) bad_state(std::string("missing field '") + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    bad_state(std::string("field '") + key + "' has the wrong type");
  }
}

nlohmann::json get_array(const nlohmann::json& j, const char* key) {
  auto a = get_field<nlohmann::json>(j, key);
  if (!a.is_array()) bad_state(std::string("field '") + key + "' is not an array");
  return a;
}

}  // namespace

std::string EpochQueue::save_state() const {
  std::lock_guard lock(mu_);
  nlohmann::json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["dataset_size"] = n_;
  j["seed"] = seed_;
  j["shuffle"] = shuffle_;
  j["max_epochs"] = max_epochs_;
  j["epoch"] = epoch_;
  j["cursor"] = cursor_;
  j["next_id"] = next_id_;
  // Front of the queue first.
  nlohmann::json returned = nlohmann::json::array();
  for (auto it = returned_.rbegin(); it != returned_.rend(); ++it)
    returned.push_back({{"epoch", it->epoch}, {"indices", it->indices}});
  j["returned"] = std::move(returned);
  nlohmann::json outstanding = nlohmann::json::array();
  for (const auto& [id, b] : outstanding_)
    outstanding.push_back({{"id", id}, {"epoch", b.epoch}, {"indices", b.indices}});
  j["outstanding"] = std::move(outstanding);
  nlohmann::json committed = nlohmann::json::array();
  for (const auto& [epoch, book] : books_) committed.push_back({{"epoch", epoch}, {"committed", book.committed}});
  j["committed"] = std::move(committed);
  return j.dump();
}

EpochQueue EpochQueue::restore(const std::string& state_json) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(state_json);
  } catch (const nlohmann::json::parse_error& e) {
    bad_state(std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) bad_state("not a JSON object");
  if (get_field<std::string>(j, "format") != kFormat) bad_state("not an epoch queue state");
  if (get_field<int>(j, "version") != kVersion) bad_state("unsupported version");
  const auto n = get_field<int64_t>(j, "dataset_size");
  const auto max_epochs = get_field<int64_t>(j, "max_epochs");
  if (n < 0 || n > std::numeric_limits<int32_t>::max()) bad_state("dataset_size out of range");
  if (max_epochs != -1 && max_epochs <= 0) bad_state("max_epochs out of range");
  EpochQueue q(n, get_field<uint64_t>(j, "seed"), get_field<bool>(j, "shuffle"), max_epochs);
  const auto epoch = get_field<int64_t>(j, "epoch");
  const auto cursor = get_field<int64_t>(j, "cursor");
  if (epoch < 0 || cursor < 0 || cursor > n) bad_state("epoch or cursor out of range");
  q.start_epoch_locked(epoch);  // q is not shared yet: no lock needed
  q.cursor_ = cursor;
  q.next_id_ = get_field<uint64_t>(j, "next_id");

  // Per-epoch counters first: an epoch with batches back or out must have a book.
  for (const auto& e : get_array(j, "committed")) {
    const auto ep = get_field<int64_t>(e, "epoch");
    const auto count = get_field<int64_t>(e, "committed");
    if (ep < 0 || ep > epoch || count < 0 || count > n) bad_state("per-epoch counter out of range");
    if (!q.books_.emplace(ep, EpochBook{count, {}}).second) bad_state("epoch " + std::to_string(ep) + " listed twice");
  }
  // Rebuild the per-sample states of incomplete epochs: everything committed except
  // what is back, out, or (current epoch) not yet handed out.
  for (auto& [ep, book] : q.books_)
    if (book.committed < n) book.state.assign(static_cast<size_t>(n), kCommitted);
  const auto mark_waiting = [&](int64_t ep, const std::vector<int32_t>& indices) {
    auto it = q.books_.find(ep);
    if (it == q.books_.end() || it->second.state.empty())
      bad_state("batch of epoch " + std::to_string(ep) + " which has no incomplete counter");
    for (int32_t i : indices) {
      if (i < 0 || i >= n) bad_state("sample index " + std::to_string(i) + " out of range");
      if (it->second.state[i] != kCommitted)
        bad_state("sample " + std::to_string(i) + " of epoch " + std::to_string(ep) + " listed twice");
      it->second.state[i] = kWaiting;
    }
  };
  const auto read_batch = [&](const nlohmann::json& e) {
    MiniBatch b;
    b.epoch = get_field<int64_t>(e, "epoch");
    b.indices = get_field<std::vector<int32_t>>(e, "indices");
    if (b.epoch < 0 || b.epoch > epoch || b.indices.empty()) bad_state("returned or outstanding batch out of range");
    mark_waiting(b.epoch, b.indices);
    return b;
  };
  if (cursor < n) {
    if (cursor > 0 || q.books_.count(epoch)) {
      std::vector<int32_t> rest(q.perm_.begin() + cursor, q.perm_.end());
      mark_waiting(epoch, rest);
    }
  }
  const auto returned = get_array(j, "returned");
  for (auto it = returned.rbegin(); it != returned.rend(); ++it) q.returned_.push_back(read_batch(*it));
  // Outstanding batches were lost with the run that held them: back to the front,
  // in hand-out order, as if each had been cancelled.
  std::map<uint64_t, MiniBatch> outstanding;
  for (const auto& e : get_array(j, "outstanding")) {
    MiniBatch b = read_batch(e);
    b.id = get_field<uint64_t>(e, "id");
    if (b.id >= q.next_id_) bad_state("outstanding batch id beyond next_id");
    if (!outstanding.emplace(b.id, std::move(b)).second) bad_state("outstanding batch id listed twice");
  }
  for (auto& [id, b] : outstanding) q.returned_.push_back(std::move(b));
  // The counters must agree with the rebuilt states.
  for (auto& [ep, book] : q.books_) {
    if (book.state.empty()) continue;
    const auto committed = static_cast<int64_t>(std::count(book.state.begin(), book.state.end(), kCommitted));
    if (committed != book.committed)
      bad_state("epoch " + std::to_string(ep) + " counter says " + std::to_string(book.committed) +
                " committed but the batches imply " + std::to_string(committed));
  }
  return q;
}

}  // namespace nbsgd::data
