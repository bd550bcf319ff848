#include "runtime/device/comm/in_process.h"

#include <algorithm>
#include <string>

#include "runtime/device/check.h"
#include "kernels/launch.h"
#include "runtime/device/comm/ops.h"

namespace nbsgd::comm {

namespace {

// Worker a can read worker b's device memory directly.
bool shares_memory(const DeviceContext& a, const DeviceContext& b) {
  return a.backend() == Backend::Host || a.device().ordinal == b.device().ordinal;
}

void copy_between(DeviceContext& on, float* dst, const DeviceContext& dst_w, const float* src,
                  const DeviceContext& src_w, size_t floats) {
  if (shares_memory(dst_w, src_w)) {
    copy_async(on.comm(), dst, src, floats * sizeof(float));
  } else {
    copy_peer_async(on.comm(), dst, dst_w.device().ordinal, src, src_w.device().ordinal, floats * sizeof(float));
  }
}

void check_workers(const std::vector<DeviceContext*>& w) {
  NBSGD_CHECK(!w.empty(), "a communicator needs at least one worker");
  // Front ends refuse more workers with an InputError naming the flag
  // (engine::check_workers, runtime/train/limits.h); reaching this is a bug.
  NBSGD_CHECK(static_cast<int>(w.size()) <= kMaxSources,
              "at most " + std::to_string(kMaxSources) + " workers per communicator (engine::kMaxWorkers)");
  for (auto* c : w) NBSGD_CHECK(c != nullptr, "null worker context");
  for (auto* c : w)
    NBSGD_CHECK(c->backend() == w[0]->backend(), "a communicator's workers must all be on one backend");
}

void check_ready(const std::vector<const Event*>& ready, size_t n) {
  NBSGD_CHECK(ready.empty() || ready.size() == n, "ready: one event (or null) per worker");
}

const Event* ready_of(const std::vector<const Event*>& ready, int j) {
  return ready.empty() ? nullptr : ready[static_cast<size_t>(j)];
}

// Grows a per-worker buffer to `floats` on the worker's device. Growing frees the old
// buffer, which queued work may still use: wait for the comm streams first (rare:
// only when a larger exchange than any before comes along).
void ensure(std::vector<Buffer>& bufs, const std::vector<DeviceContext*>& w, size_t i, size_t floats) {
  if (bufs[i].bytes() >= floats * sizeof(float)) return;
  for (auto* c : w) c->comm().synchronize();
  bufs[i] = Buffer(w[i]->backend(), w[i]->device().ordinal, floats * sizeof(float));
}

}  // namespace

// ---------------------------------------------------------------- all-reduce
InProcessAllReduce::InProcessAllReduce(std::vector<DeviceContext*> workers) : w_(std::move(workers)) {
  check_workers(w_);
  for (auto* c : w_) {
    phase1_.push_back(c->event());
    phase2_.push_back(c->event());
  }
  staging_.resize(w_.size());
}

InProcessAllReduce::~InProcessAllReduce() {
  // Staging buffers may still be read by queued copies and kernels.
  for (auto* c : w_) {
    try {
      c->comm().synchronize();
    } catch (const std::exception& e) {
      log_error(__FILE__, __LINE__, c->device().index, "~InProcessAllReduce", e.what());
    }
  }
}

void InProcessAllReduce::all_reduce_sum(const std::vector<float*>& buffers, size_t count,
                                        const std::vector<const Event*>& ready) {
  const int n = size();
  NBSGD_CHECK(buffers.size() == w_.size(), "all_reduce_sum: one buffer per worker");
  check_ready(ready, w_.size());
  const size_t max_chunk = chunk_range(count, n, 0).second;  // chunk 0 is a longest one
  if (n > 1 && count > 0)
    for (int k = 0; k < n; ++k)
      for (int j = 0; j < n; ++j)
        if (!shares_memory(*w_[k], *w_[j])) {
          ensure(staging_, w_, static_cast<size_t>(k), max_chunk * static_cast<size_t>(n));
          break;
        }
  // Phase 1 reads every worker's buffer, so every comm stream waits for every worker.
  for (auto* c : w_)
    for (int j = 0; j < n; ++j)
      if (const Event* e = ready_of(ready, j)) c->comm().wait(*e);
  if (n == 1 || count == 0) return;

  // Phase 1, reduce-scatter: chunk k of every worker, summed 0..N-1, into worker k.
  for (int k = 0; k < n; ++k) {
    DeviceContext& me = *w_[k];
    auto [b, e] = chunk_range(count, n, k);
    if (e > b) {
      ChunkSumOp op{};
      op.n = n;
      op.dst = buffers[k] + b;
      for (int j = 0; j < n; ++j) {
        if (shares_memory(me, *w_[j])) {
          op.src[j] = buffers[j] + b;
        } else {
          float* slot = staging_[k].as<float>() + static_cast<size_t>(j) * max_chunk;
          copy_between(me, slot, me, buffers[j] + b, *w_[j], e - b);
          op.src[j] = slot;
        }
      }
      kernels::launch_1d(me.comm(), e - b, op);
    }
    me.comm().record(phase1_[k]);
  }
  for (int k = 0; k < n; ++k)
    for (int j = 0; j < n; ++j)
      if (j != k) w_[k]->comm().wait(phase1_[j]);

  // Phase 2, all-gather: worker k pulls every other chunk j from its owner j.
  for (int k = 0; k < n; ++k) {
    for (int j = 0; j < n; ++j) {
      if (j == k) continue;
      auto [b, e] = chunk_range(count, n, j);
      if (e > b) copy_between(*w_[k], buffers[k] + b, *w_[k], buffers[j] + b, *w_[j], e - b);
    }
    w_[k]->comm().record(phase2_[k]);
  }
  for (int k = 0; k < n; ++k)
    for (int j = 0; j < n; ++j)
      if (j != k) w_[k]->comm().wait(phase2_[j]);
}

// ---------------------------------------------------------------- gossip
InProcessGossip::InProcessGossip(std::vector<DeviceContext*> workers) : w_(std::move(workers)) {
  check_workers(w_);
  for (auto* c : w_) read_done_.push_back(c->event());
  tmp_.resize(w_.size());
  staging_.resize(w_.size());
}

InProcessGossip::~InProcessGossip() {
  for (auto* c : w_) {
    try {
      c->comm().synchronize();
    } catch (const std::exception& e) {
      log_error(__FILE__, __LINE__, c->device().index, "~InProcessGossip", e.what());
    }
  }
}

std::vector<std::vector<int>> InProcessGossip::prepare(size_t nbuf, size_t count, size_t slot,
                                                       const MixWeights& w,
                                                       const std::vector<const Event*>& ready,
                                                       int slots_per_source) {
  const int n = size();
  NBSGD_CHECK(nbuf == w_.size(), "gossip: one buffer per worker");
  check_ready(ready, w_.size());
  std::vector<std::vector<int>> readers = check_weights(w, n);
  // Size the private buffers before enqueuing anything (growing one drains the comm
  // streams).
  if (count > 0)
    for (int i = 0; i < n; ++i) {
      ensure(tmp_, w_, static_cast<size_t>(i), count);
      size_t remote = 0;
      for (auto [j, wij] : w[static_cast<size_t>(i)])
        if (!shares_memory(*w_[i], *w_[j])) ++remote;
      if (remote > 0)
        ensure(staging_, w_, static_cast<size_t>(i), remote * slot * static_cast<size_t>(slots_per_source));
    }
  for (int i = 0; i < n; ++i)
    for (auto [j, wij] : w[static_cast<size_t>(i)])
      if (const Event* e = ready_of(ready, j)) w_[i]->comm().wait(*e);
  return readers;
}

const float* InProcessGossip::source(int i, int j, const float* src, size_t floats, size_t slot,
                                     int& slot_index) {
  if (shares_memory(*w_[i], *w_[j])) return src;
  float* dst = staging_[i].as<float>() + static_cast<size_t>(slot_index++) * slot;
  copy_between(*w_[i], dst, *w_[i], src, *w_[j], floats);
  return dst;
}

void InProcessGossip::mix(const std::vector<float*>& x, size_t count, const MixWeights& w,
                          const std::vector<const Event*>& ready) {
  const int n = size();
  std::vector<std::vector<int>> readers = prepare(x.size(), count, count, w, ready, 1);
  if (count == 0) return;
  for (int i = 0; i < n; ++i) {
    const auto& list = w[static_cast<size_t>(i)];
    WeightedSumOp op{};
    op.n = static_cast<int>(list.size());
    op.dst = tmp_[i].as<float>();
    int slot_index = 0;
    for (size_t s = 0; s < list.size(); ++s) {
      op.src[s] = source(i, list[s].first, x[static_cast<size_t>(list[s].first)], count, count, slot_index);
      op.w[s] = static_cast<float>(list[s].second);
    }
    kernels::launch_1d(w_[i]->comm(), count, op);
    w_[i]->comm().record(read_done_[i]);
  }
  for (int i = 0; i < n; ++i) {
    for (int r : readers[static_cast<size_t>(i)]) w_[i]->comm().wait(read_done_[r]);
    copy_async(w_[i]->comm(), x[static_cast<size_t>(i)], tmp_[i].data(), count * sizeof(float));
  }
}

void InProcessGossip::fused_gossip_sgd(const std::vector<float*>& x, const std::vector<float*>& acc, size_t P,
                                       const GossipStep& step, const MixWeights& w,
                                       const std::vector<const Event*>& ready) {
  const int n = size();
  NBSGD_CHECK(acc.size() == x.size(), "fused_gossip_sgd: one accumulator per worker");
  // A remote neighbour costs two staging slots: its model and its accumulator.
  std::vector<std::vector<int>> readers = prepare(x.size(), P, P + 2, w, ready, 2);
  for (int i = 0; i < n; ++i) {
    const auto& list = w[static_cast<size_t>(i)];
    if (P > 0) {
      GossipSgdOp op{};
      op.n = static_cast<int>(list.size());
      op.P = P;
      op.lr = step.lr;
      op.wd = step.weight_decay;
      op.dst = tmp_[i].as<float>();
      int slot_index = 0;
      for (size_t s = 0; s < list.size(); ++s) {
        const auto j = static_cast<size_t>(list[s].first);
        op.x[s] = source(i, list[s].first, x[j], P, P + 2, slot_index);
        op.acc[s] = source(i, list[s].first, acc[j], P + 2, P + 2, slot_index);
        op.w[s] = static_cast<float>(list[s].second);
      }
      kernels::launch_1d(w_[i]->comm(), P, op);
    }
    w_[i]->comm().record(read_done_[i]);
  }
  for (int i = 0; i < n; ++i) {
    for (int r : readers[static_cast<size_t>(i)]) w_[i]->comm().wait(read_done_[r]);
    kernels::launch_1d(w_[i]->comm(), P + 2,
                     GossipFinishOp{P > 0 ? tmp_[i].as<float>() : nullptr, x[static_cast<size_t>(i)],
                                    acc[static_cast<size_t>(i)], P});
  }
}

}  // namespace nbsgd::comm
