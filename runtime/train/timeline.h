// Timeline: the engine on the virtual clock, for every exchange and both window
// scopes, as one discrete-event simulation of what the real engine issues and what
// the devices then do (METHOD.md, "Honest timing"; real_driver.cpp is the engine it
// models). The engine runs the math afterwards for what this says counted; `nbsgd
// predict` runs it alone.
//
// Per worker w and step t:
//   - Its window opens at O(w,t): when the previous window closed (the real engine's
//     trainer opens step t right after it enqueued step t-1's exchange). Step 0
//     opens at 0. Global scope: one window per step over all workers; `--window-scope
//     neighbors` (gossip): one window per worker over its closed neighbourhood,
//     quorum:K scaled to ceil(K * |neighbourhood| / N).
//   - Its issuer keeps at most `inflight` mini-batches in flight (taken from the
//     shared queue and not yet noticed, a cancelled one still running included).
//     It takes one whenever the window is open, the depth allows and the window's
//     rules give a size; --window sync instead hands out each step's mini-batches at
//     once, round-robin (mini-batch k of every worker, worker 0 first).
//   - Its stream runs, in order: the step's injected stall (after E(w,t-1)), then
//     each taken mini-batch. When the stream reaches a queued mini-batch it looks at
//     the window: closed, the mini-batch is skipped (no work, no time, its samples
//     go back); open, it runs: it begins its compute after E(w,t-1), and its end is
//     compute + the injected throttle and random delay (before the commit, as the
//     delay kernel does). A running mini-batch is never cut short: one still running
//     at the close is wasted, its samples go back when it ends, and the update waits
//     for it (it reads the weights).
//   - The window's clock starts at S(t), when the first of its workers has ended its
//     previous step (the earliest moment one of its mini-batches can begin; 0 for
//     step 0): deadline:T closes it at S + T, the adaptive guard counts from S, and
//     the window's length (window_s) is C - S.
//   - The window's rules are StepController's. A mini-batch counts if it completes
//     by the close (ties count). A window that nothing can change any more (every
//     issuer idle, nothing in flight) closes at that moment. An issuer that finds
//     the queue dry (the last epoch) while work is in flight anywhere waits for
//     samples to come back rather than giving up.
//   - The exchange (E(w,t): the step's model is ready):
//       sum of accumulators (ring), into the step's own accumulator (steps use two
//         in turn): it starts when the window closed, the previous sum ended (the
//         comm streams) and, for every worker j that counted nothing in step t, its
//         update of step t-2 ended (the last reader of that accumulator); it lasts
//         the exchange's modelled time X. Then w's update, on its update stream,
//         after the sum, its running mini-batch and its previous update:
//         Sum(t) = max(C, Sum(t-1), max_{j: k_j(t)=0} E(j,t-2)) + X,
//         E(w,t) = max(Sum(t), R(w,t), E(w,t-1)) + update.
//         A worker still running a cancelled mini-batch holds only its own update
//         (and its next mini-batches), not the next step's sum.
//       mixing of models (gossip): w's local step, after its running mini-batch and
//         its previous mix: L(w,t) = max(C(w,t), R(w,t), E(w,t-1)) + update; then the
//         mix waits only for the neighbours it reads:
//         E(w,t) = max(L(w,t), max_{j active neighbour} L(j,t)) + X(w,t).
//     So gossip workers drift apart, by at most their graph distance in steps.
//
// Times are on the 1 ns grid of sim_event.h. Ties: time, then completions <
// deadlines < step ends < stream checks < hand-outs < window opens < the opened
// windows' first hand-outs (in turns: every worker's first, then every second), then worker,
// then insertion order. The simulation never looks at the models' values.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "runtime/train/controller.h"
#include "runtime/train/duration_model.h"
#include "runtime/train/sim_event.h"
#include "runtime/train/straggler/profile.h"

namespace nbsgd::engine {

struct TimelineMiniBatch {
  enum class Fate { Pending, Counted, Wasted, Skipped };
  int size = 0;
  int64_t handle = -1;  // what the take callback returned
  double take = 0;      // handed out
  double begin = -1;    // its compute began (-1: it never ran)
  double compute_s = 0, injected_s = 0;
  double slowed_s = 0;  // its compute on the slowed device: compute_s + the throttle's share of injected_s
  double end = -1;  // its completion (commit, or cancelled end)
  bool cut = false;  // --cancel-at kernel: it ran at the close and stopped at a kernel boundary
  Fate fate = Fate::Pending;
};

struct TimelineWorkerStep {
  double open = -1, close = -1;  // O(w,t), C(w,t)
  double start = -1;             // S(w,t): the window's clock (see the header)
  double stall_begin = -1, stall_s = 0;
  double exchange_begin = -1, exchange_end = -1, update_begin = -1, update_end = -1;
  double end = -1;         // E(w,t)
  double running_end = -1;  // R(w,t): a mini-batch still running at the close ends then
  double delay_s = 0;      // injected: stall + throttle + random delays of what ran
  std::vector<TimelineMiniBatch> minibatches;  // hand-out order
  int finished = 0, samples = 0;               // counted: k_i, n_i
  std::vector<int> neighbours;                 // those its exchange waits for (without w)
  // Simulation state.
  bool closed = false, running = false, running_known = true, scheduled = false, ended = false;
  bool idle = false;  // its issuer can hand out nothing more in this step
  // notice_latency_s > 0: at the close its stream was about to reach a queued
  // mini-batch of this step before the close is seen; its first look decides
  // whether it runs (running_known stays false until then).
  bool check_due = false;
  int pending = 0;    // handed out, not yet noticed
};

struct TimelineStep {
  int64_t step = 0;
  std::vector<TimelineWorkerStep> workers;
  double end() const;  // the last worker's E(w,t)
  int64_t total_samples() const;
  int64_t wasted() const;   // ran and did not count
  int64_t skipped() const;  // handed out, cancelled before they began
  int64_t cut() const;      // wasted, and stopped at a kernel boundary (--cancel-at kernel)
};

struct TimelineConfig {
  ControllerConfig controller;  // workers = N, window, batch, split, cap, guard
  bool neighbors_scope = false;
  int inflight = 2;
  DurationModel model;
  double flops_per_sample = 0;
  size_t params = 0;  // for the update's cost
  // The exchange mixes the models (gossip): the local step comes first. Otherwise it
  // sums accumulators (ring) and the update follows it.
  bool mixes_models = false;
  // Worker w's exchange in a step on the virtual clock (Exchange::modelled_s), and
  // whom it waits for (Exchange::waits_for: symmetric, without w).
  std::function<double(int64_t step, int w)> exchange_s;
  std::function<const std::vector<int>&(int64_t step, int w)> waits_for;
};

class Timeline {
 public:
  // Hands out a mini-batch of at most `size` samples to worker w: returns a handle
  // and the actual size (0 when no data is left).
  using TakeFn = std::function<int64_t(int w, int size, int& actual)>;
  // A handed-out mini-batch that did not count: its samples go back to the queue.
  using GiveBackFn = std::function<void(int64_t handle)>;

  Timeline(const TimelineConfig& cfg, const straggler::ResolvedProfile& profile, TakeFn take, GiveBackFn give_back);
  ~Timeline();

  // Simulates until every worker has ended step `step` (called for 0, 1, 2, ...),
  // then returns that step and forgets it. Later steps' mini-batches may already be
  // handed out; a pending one of this step is skipped later (its fate says so).
  TimelineStep finish_step(int64_t step);
  // The latest E(w,t) of the steps returned so far.
  double now() const { return now_; }

 private:
  // Event types, in their tie order at equal times (see above).
  enum EventType { kComplete = 0, kDeadline = 1, kStepEnd = 2, kCheck = 3, kTake = 4, kOpen = 5, kRound = 6 };
  struct Group;
  struct Item {  // one entry of a worker's stream
    bool stall = false;
    int64_t step = 0;
    int index = -1;  // into the step's minibatches
    int64_t handle = -1;
    double ready = 0;  // the earliest its stream reaches it (hand-out + issue_latency_s)
  };
  struct WorkerState {
    int64_t issue_step = -1;  // the window it hands out into
    int inflight = 0;
    std::deque<Item> fifo;
    bool busy = false;         // an item runs (or waits for E(w,t-1) after its check)
    bool check_queued = false;  // a stream check is on the event queue
    bool waiting_gate = false;  // the current item waits for E(w,t-1), not yet known
    bool starved = false;       // its take found the queue dry while work was in flight
    Item current;
    double reached = 0;  // when the stream reached the current item
    straggler::Rng delay_rng;
    straggler::Rng jitter_rng;  // the duration model's J, per (worker, step)
    int gen = 0;  // its current mini-batch's completion event (a cut one is re-pushed)
  };

  void push(double t, int type, int w, int64_t step, int aux = -1);
  TimelineWorkerStep& rec(int64_t step, int w);
  bool live(int64_t step) const { return step >= first_live_; }
  double end_of(int64_t step, int w);  // E(w,step) if scheduled, else -1 (0 before step 0)
  int own_key(int w) const;
  Group& group(int64_t step, int key, double t0);
  void start_clock(Group& g, double now);
  int group_key(const Group& g) const;
  Group* find_group(int64_t step, int key);
  void open(int64_t step, int key, double t);
  void open_worker(int w, int64_t step, double t, Group& g);
  void plan_sync(int64_t step);
  void add_minibatch(int w, int64_t step, int64_t handle, int size, double t);
  bool take_one(int w, double t);
  void take(int w, double t);
  void take_round(double t);
  void advance(int w, double t);
  void check(int w, double t);
  void start_current(int w);
  // --cancel-at kernel: the running mini-batch of worker w sees its window's close
  // at `seen` and stops at the first boundary after it (a no-op in its delay).
  void cut_running(int w, TimelineMiniBatch& mb, double seen);
  void on_complete(int w, double t);
  void notice(int w, int64_t step, double t, bool returned);
  void handle_close(Group& g);
  void maybe_idle_close(Group& g, double t);
  void try_exchange(int64_t step);
  void schedule_end(int w, int64_t step, double t);
  void feed(Group& g, int w, double t, int size);

  TimelineConfig cfg_;
  straggler::ResolvedProfile profile_;
  TakeFn take_;
  GiveBackFn give_back_;
  int n_;
  bool sync_;
  SimQueue q_;
  int64_t seq_ = 0;
  int64_t first_live_ = 0;  // steps before it are returned and forgotten
  int64_t in_flight_ = 0;   // handed out and undecided, over all workers
  bool exhausted_ = false;  // a bounded queue ran dry with nothing in flight: no more windows
  double now_ = 0;
  double now_sim_ = 0;  // the time of the event being handled
  std::map<int64_t, std::vector<TimelineWorkerStep>> steps_;
  std::map<std::pair<int64_t, int>, std::unique_ptr<Group>> groups_;
  // Counted completions of members for a neighbourhood window not yet open.
  std::map<std::pair<int64_t, int>, std::vector<std::tuple<int, double, int>>> early_;
  // --window sync: each step's hand-out, per worker (made when the step first opens).
  std::map<int64_t, std::vector<std::vector<std::pair<int64_t, int>>>> plans_;
  std::vector<WorkerState> ws_;
  std::vector<int> round_;  // workers whose window opened at this instant, to hand out in turns
  std::vector<std::map<int64_t, double>> ends_;  // per worker: E(w,t), kept while its stream needs it
  std::map<int64_t, double> sum_end_;             // ring: the end of step t's sum
  std::map<std::pair<int64_t, int>, double> stall_of_;  // stalls of forgotten steps not yet begun
  StepController rates_;  // only its rate estimates (adaptive), fed every mini-batch that ran
};

// Per-step, per-device random streams: derived from (seed, step), so a resumed run
// draws exactly what the uninterrupted one drew.
straggler::Rng step_stream(const straggler::ResolvedProfile& p, int device, int64_t step, straggler::RngPurpose purpose);

}  // namespace nbsgd::engine
