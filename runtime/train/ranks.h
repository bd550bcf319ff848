// A run whose workers are spread over the ranks of a launch (mpirun, srun; issue 15;
// runtime/device/comm/launch.h).
//
// On the virtual clock the schedule is a deterministic function of the flags and
// the seed (timeline.h), so every rank runs the same Timeline, the same epoch queue
// and the same exchange over all N workers' replicas; a rank computes the
// forward/backward passes and commits of its own workers only. After a step's
// window, share_accumulators() gives every rank every worker's accumulator
// [G_i, n_i, loss_i]: from then on each rank holds exactly the state one process
// holds, and the in-process exchange (sums in worker order 0..N-1, in_process.h)
// gives the same bits on every rank and in one process. What crosses processes per
// step is one all-gather of N x (P+2) floats.
//
// Rank r owns workers [r*n, (r+1)*n), n = --host-workers per rank (default 1).
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/device/stream.h"

namespace nbsgd::engine {

struct Setup;

struct RankSpan {
  int rank = 0, ranks = 1;
  int first = 0, count = -1;  // this rank's workers [first, first + count); count < 0: all
  bool spans() const { return ranks > 1; }
  bool owns(int w) const { return count < 0 || (w >= first && w < first + count); }
  bool agreed = false;  // share_accumulators checked that every rank runs the same run
  // This rank's signal flag, shared in every step's all-gather; stop_all is set on
  // every rank, after the same step, once any rank's flag was (the run loop reads
  // only stop_all, so that every rank stops at that step).
  const std::atomic<bool>* signal = nullptr;
  std::atomic<bool> stop_all{false};
  RankSpan() = default;
  RankSpan(const RankSpan& o) : rank(o.rank), ranks(o.ranks), first(o.first), count(o.count), agreed(o.agreed) {}
  RankSpan& operator=(const RankSpan& o) {
    rank = o.rank, ranks = o.ranks, first = o.first, count = o.count, agreed = o.agreed;
    return *this;
  }
};

// make_setup under a launch of several ranks, once the devices and the clock are
// known: refuses what does not run across processes yet (one line naming the
// flag), then makes N = ranks x --host-workers host workers and sets s.span.
void spread_over_ranks(Setup& s, DiscoverOptions& d);

// After step `step`'s counted commits (`ready`: per worker, its accumulator's last
// writer): every worker's accumulator on every rank. Collective: every rank calls it
// once per step, in step order. The first call also checks that every rank runs the
// same run (a fingerprint of the flags, the data and worker 0's weights): ranks
// that differ would sum accumulators of different runs, so they stop with one line.
// Every rank's signal flag travels with its block (RankSpan::stop_all).
// NBSGD_MPI_FAULT=R:S:kill|stop|term makes rank R kill (SIGKILL), stop (SIGSTOP) or
// signal (SIGTERM) itself here at step S: the failure tests' hook.
void share_accumulators(Setup& s, const std::vector<const Event*>& ready, int64_t step);

}  // namespace nbsgd::engine
