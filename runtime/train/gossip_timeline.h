// GossipTimeline: D-PSGD and MATCHA (blocking and non-blocking) on the virtual clock,
// as one discrete-event simulation with a clock per worker (METHOD.md, "Aggregation",
// gossip variants; "Baselines must be faithful").
//
// There is no global barrier. Worker w's step t:
//   - starts when w's own step t-1 exchange and update are done (E(w,t-1)), then its
//     stall, and when its GPU is free (a cancelled mini-batch still runs to its end);
//   - runs mini-batches from the shared queue while its window allows;
//   - its window closes at C(w,t) (rules below); its step-t model is then ready;
//   - its exchange waits only for the neighbours it mixes with in step t:
//       E(w,t) = max(C(w,t), max_{j active neighbour} C(j,t))
//                + gossip_s(model bytes, active neighbours) + update_s(P).
// So workers drift apart, by at most their graph distance in steps.
//
// Which window a worker's step has (StepController's rules, fed in time order):
//   --window sync:     its own m mini-batches (scope plays no part: a blocking worker
//                      waits for its neighbours' models, never for their windows);
//   scope global:      one window per step over all workers (one controller);
//   scope neighbors:   one window per worker over its closed neighbourhood of the
//                      step; quorum:K is scaled to ceil(K * |neighbourhood| / N).
// A worker's mini-batch counts if it completes inside the worker's own window;
// counted completions also feed the windows of the neighbourhoods it belongs to.
// A window that closes before its owner began the step closes at the owner's start
// (the owner contributes nothing, and does no local step).
//
// Times are on the 1 ns grid of sim_event.h. Ties: time, then completions <
// deadlines < exchange ends < hand-outs, then worker, then insertion order. The simulation never looks at the model's values, so
// the engine runs the math step by step afterwards, for what counted.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <vector>

#include "runtime/train/controller.h"
#include "runtime/train/duration_model.h"
#include "runtime/train/sim_event.h"
#include "runtime/train/straggler/profile.h"

namespace nbsgd::engine {

struct GossipMiniBatch {
  int size = 0;
  int64_t handle = -1;
  double start = 0, commit = 0;
  bool counted = false;
};

struct GossipWorkerStep {
  double start = -1, close = 0, end = 0;  // E(w,t-1), C(w,t), E(w,t)
  double delay_s = 0;                     // injected: stall + throttle + random delays
  std::vector<GossipMiniBatch> minibatches;  // hand-out order
  int finished = 0, samples = 0;             // counted: k_i, n_i
  std::vector<int> neighbours;               // active in this step, ascending, without w
  bool closed = false, exchange_scheduled = false, ended = false;
};

struct GossipStepOutcome {
  int64_t step = 0;
  std::vector<GossipWorkerStep> workers;
  double end() const;  // the last worker's E(w,t)
};

struct GossipTimelineConfig {
  ControllerConfig controller;  // workers = N, window, batch, split, cap, guard
  bool neighbors_scope = false;
  DurationModel model;
  double flops_per_sample = 0;
  size_t params = 0;
  // Worker w's exchange in a step on the virtual clock (Exchange::modelled_s).
  std::function<double(int64_t step, int w)> exchange_s;
};

class GossipTimeline {
 public:
  // Active neighbours of every worker in a step (symmetric, ascending, without self).
  using NeighboursFn = std::function<const std::vector<std::vector<int>>&(int64_t step)>;
  // As VirtualTimeline::TakeFn: a handle and the actual size (0: no data).
  using TakeFn = std::function<int64_t(int w, int size, int& actual)>;
  using GiveBackFn = std::function<void(int64_t handle)>;

  GossipTimeline(const GossipTimelineConfig& cfg, const straggler::ResolvedProfile& profile, NeighboursFn neighbours,
                 TakeFn take, GiveBackFn give_back);
  ~GossipTimeline();

  // Simulates until every worker has ended step `step` (called for 0, 1, 2, ...),
  // then returns that step and forgets it. Mini-batches of later steps may already
  // be handed out; wasted ones are given back when they complete.
  GossipStepOutcome finish_step(int64_t step);

 private:
  struct Group;
  struct WorkerState {
    int64_t step = 0;
    bool busy = false;
    double free_at = 0;
    int64_t free_token = -1;
    int64_t running_step = -1;
    int running_index = -1;
    GossipMiniBatch running;
    straggler::Rng delay_rng;
  };

  void push(double t, int type, int w, int64_t step, int group = -1, int64_t* token = nullptr);
  GossipWorkerStep& rec(int64_t step, int w);
  Group& group(int64_t step, int owner_key, double t0);
  Group* find_group(int64_t step, int owner_key);
  int own_key(int w) const;
  void begin_step(int w, int64_t step, double t);
  void try_start(int w, double t);
  void on_complete(int w, double t);
  void handle_close(Group& g);
  void try_exchange(int w, int64_t step);
  void feed(Group& g, int w, double t, int size);

  GossipTimelineConfig cfg_;
  straggler::ResolvedProfile profile_;
  NeighboursFn neighbours_;
  TakeFn take_;
  GiveBackFn give_back_;
  int n_;
  SimQueue q_;
  int64_t seq_ = 0;
  int64_t first_live_ = 0;  // steps before it are returned and forgotten
  std::map<int64_t, std::vector<GossipWorkerStep>> steps_;
  std::map<std::pair<int64_t, int>, std::unique_ptr<Group>> groups_;
  // Counted completions of members for a neighbourhood window not yet begun.
  std::map<std::pair<int64_t, int>, std::vector<std::tuple<int, double, int>>> early_;
  std::vector<WorkerState> ws_;
  StepController rates_;  // only its rate estimates (adaptive), fed every completion
};

}  // namespace nbsgd::engine
