// AD-PSGD (Lian et al. 2018, "Asynchronous Decentralized Parallel Stochastic
// Gradient Descent") on the virtual clock.
//
// Each worker loops, with no step and no window:
//   iteration start  (t):  stall; take its batch (m mini-batches) from the shared
//                           queue; the gradient is computed at the model x_w it reads
//                           now (a neighbour may average into x_w meanwhile: the
//                           gradient is then stale, as in the paper);
//   gradient done   (t + stall + sum of the mini-batches' compute and delays):
//                           pick one neighbour j uniformly (worker w's own seeded
//                           stream) and reserve both models: the average starts when
//                           neither is being averaged with someone else;
//   average         (start): x_w = x_j = (x_w + x_j) / 2, then w applies its
//                           gradient (momentum and weight decay per worker);
//   next iteration  (start + gossip_s(model, 1) + update_s).
// Events run in virtual-time order, ties by type (gradient done < average <
// iteration start), worker, then insertion order; the math runs in that order, so
// the run is exact and reproducible. A reported step is a round of N iterations.
// --trace: the iteration's stall, mini-batches and injected delays on the worker's
// compute track, tagged with the round its iteration began in (where metrics.jsonl
// counts it in `finished`); the pairwise average and the update on its comm track.
#include <fmt/format.h>

#include <algorithm>
#include <queue>

#include "nets/optim/commit.h"
#include "runtime/device/check.h"
#include "kernels/launch.h"
#include "runtime/device/comm/ops.h"
#include "runtime/train/sim_event.h"
#include "runtime/train/trainer.h"
#include "runtime/train/timeline.h"

namespace nbsgd::engine {

namespace {

enum AdEventType { kGradDone = 0, kAverage = 1, kIterStart = 2 };

// Worker w's stream for picking neighbours (a purpose no straggler stream uses).
constexpr uint64_t kNeighbourStream = 0xAD95;

}  // namespace

namespace {

// The AD-PSGD event loop's state: per-worker iteration counters, the models'
// reservations (an average waits until neither model is being averaged), the
// neighbour-picking streams, and the round being accumulated for the log.
class AdpsgdLoop {
 public:
  explicit AdpsgdLoop(Engine::Impl& e)
      : e_(e), s_(*e.s), N_(e.n()), nb_(e.gossip->graph.neighbours()),
        avg_ns_(ns(s_.cfg.model.gossip_s(s_.P * sizeof(float), 1))), upd_ns_(ns(s_.cfg.model.update_s(s_.P))),
        iter_(N_, 0), lock_(N_, 0), next_round_(e.step) {
    for (int w = 0; w < N_; ++w) {
      pick_.push_back(straggler::device_stream(s_.cfg.seed, w, kNeighbourStream));
      grad_ready_.push_back(s_.workers[w]->ctx().event());
      q_.push({0, kIterStart, w, seq_++, 0, -1});
    }
    reset_round();
  }

  struct Round {
    StepRecord rec;
    double loss_sum = 0, n = 0;
  };
  // Runs events until a round of N iterations is complete; returns it.
  Round next_round() {
    for (;;) {
      NBSGD_CHECK(!q_.empty(), "AD-PSGD: no event left");
      const SimEvent ev = q_.top();
      q_.pop();
      if (ev.type == kIterStart) {
        start_iteration(ev);
      } else if (ev.type == kGradDone) {
        gradient_done(ev);
      } else if (average(ev)) {
        Round r{std::move(rec_), round_loss_, round_n_};
        reset_round();
        return r;
      }
    }
  }

 private:
  // Stall, then the batch's m mini-batches at the model read now.
  void start_iteration(const SimEvent& ev) {
    const int w = ev.worker;
    Worker& wk = *s_.workers[w];
    const auto& dev = s_.profile.devices[w];
    const int64_t it = iter_[w];
    straggler::Rng stall_rng = step_stream(s_.profile, w, it, straggler::RngPurpose::Stall);
    straggler::Rng delay_rng = step_stream(s_.profile, w, it, straggler::RngPurpose::Delay);
    straggler::Rng jitter_rng = step_stream(s_.profile, w, it, straggler::RngPurpose::Jitter);
    int64_t busy = ns(dev.draw_stall_s(stall_rng, it));
    rec_.delay_s[w] += s_of(busy);
    const bool traced = e_.trace && e_.trace->range().contains(rec_.step);
    if (traced && busy > 0)
      e_.trace->add({TraceSpan::Kind::Stall, TraceSpan::Fate::Counted, w, 0, s_of(ev.t), s_of(ev.t + busy), rec_.step});
    const int b = s_.cfg.batch / s_.cfg.split;
    for (int k = 0; k < s_.cfg.split; ++k) {
      auto mb = s_.queue->take(b);
      NBSGD_CHECK(mb.has_value(), "AD-PSGD: the epoch queue ran dry");
      const int size = static_cast<int>(mb->indices.size());
      const int64_t c =
          ns(s_.cfg.model.compute_s(s_.flops, size) * s_.cfg.model.jitter(jitter_rng) + s_.cfg.model.host_cpu_s);
      const int64_t injected = ns((dev.slowdown(it) - 1.0) * s_of(c)) + ns(dev.draw_delay_s(delay_rng, it));
      rec_.delay_s[w] += s_of(injected);
      if (traced) {
        const int64_t t0 = ev.t + busy;
        e_.trace->add({TraceSpan::Kind::MiniBatch, TraceSpan::Fate::Counted, w, size, s_of(t0), s_of(t0 + c), rec_.step});
        if (injected > 0)
          e_.trace->add(
              {TraceSpan::Kind::Throttle, TraceSpan::Fate::Counted, w, 0, s_of(t0 + c), s_of(t0 + c + injected), rec_.step});
      }
      busy += c + injected;
      const int slot = k % wk.slots();
      wk.stage_and_compute(slot, s_.data.train, mb->indices);
      optim::commit(wk.ctx().compute(), wk.slot(slot).scratch.as<float>(), wk.accumulator(), s_.P);
      wk.ctx().compute().record(wk.slot(slot).done);
      s_.queue->commit(*mb);
      ++rec_.finished[w];
    }
    wk.ctx().compute().record(grad_ready_[w]);
    q_.push({ev.t + busy, kGradDone, w, seq_++, it, -1});
  }

  // Pick one neighbour and reserve both models.
  void gradient_done(const SimEvent& ev) {
    const int w = ev.worker;
    const auto& mine = nb_[static_cast<size_t>(w)];
    int j = -1;
    int64_t start = std::max(ev.t, lock_[w]);
    if (!mine.empty()) {
      j = mine[static_cast<size_t>(pick_[w].next_u64() % mine.size())];
      start = std::max(start, lock_[j]);
      lock_[j] = start + avg_ns_;
    }
    lock_[w] = start + (j >= 0 ? avg_ns_ : 0);
    q_.push({start, kAverage, w, seq_++, ev.step, j});
  }

  // Atomic pairwise average, then w's own gradient step, on w's comm stream after
  // both workers' queued gradient work (which reads their models). True when the
  // round is complete.
  bool average(const SimEvent& ev) {
    const int w = ev.worker, j = ev.aux;
    Worker& wk = *s_.workers[w];
    Stream& cs = wk.ctx().comm();
    cs.wait(grad_ready_[w]);
    if (j >= 0) {
      cs.wait(grad_ready_[j]);
      comm::WeightedSumOp op{};
      op.n = 2;
      op.src[0] = std::min(w, j) == w ? wk.params() : s_.workers[j]->params();
      op.src[1] = std::min(w, j) == w ? s_.workers[j]->params() : wk.params();
      op.w[0] = op.w[1] = 0.5f;
      op.dst = wk.params();
      kernels::launch_1d(cs, s_.P, op);
      copy_async(cs, s_.workers[j]->params(), wk.params(), s_.P * sizeof(float));
    }
    float* tail = e_.readback.as<float>() + 2 * w;
    copy_async(cs, tail, wk.accumulator() + s_.P, 2 * sizeof(float));
    const double lr = s_.schedule.lr_at(e_.step);
    optim::fused_sgd_update(cs, wk.params(), wk.momentum(), wk.accumulator(), s_.P, static_cast<float>(lr), s_.sgd,
                            1.0f);
    cs.record(wk.update_done);
    // Later reads of x_w and x_j are enqueued after this point; finishing here
    // keeps every read after the write it follows in virtual time.
    cs.synchronize();
    round_n_ += tail[0];
    round_loss_ += tail[1];
    const int64_t t_end = ev.t + (j >= 0 ? avg_ns_ : 0) + upd_ns_;
    if (e_.trace && e_.trace->range().contains(rec_.step)) {
      const int64_t mid = ev.t + (j >= 0 ? avg_ns_ : 0);
      if (j >= 0)
        e_.trace->add({TraceSpan::Kind::Exchange, TraceSpan::Fate::Counted, w, 0, s_of(ev.t), s_of(mid), rec_.step});
      e_.trace->add({TraceSpan::Kind::Update, TraceSpan::Fate::Counted, w, 0, s_of(mid), s_of(t_end), rec_.step});
    }
    ++iter_[w];
    q_.push({t_end, kIterStart, w, seq_++, iter_[w], -1});
    if (++in_round_ < N_) return false;
    rec_.lr = lr;
    rec_.t = s_of(t_end);
    rec_.samples = static_cast<int64_t>(round_n_);
    rec_.loss = round_n_ > 0 ? round_loss_ / round_n_ : std::nan("");
    rec_.skipped = round_n_ == 0;
    rec_.window_s = 0;
    return true;
  }

  void reset_round() {
    rec_ = StepRecord();
    // Not e_.step: the next round is reset before the trainer counts this one.
    rec_.step = next_round_++;
    rec_.epoch = s_.queue->current_epoch();
    rec_.finished.assign(N_, 0);
    rec_.delay_s.assign(N_, 0.0);
    in_round_ = 0;
    round_loss_ = round_n_ = 0;
  }

 private:
  Engine::Impl& e_;
  Setup& s_;
  const int N_;
  const std::vector<std::vector<int>> nb_;
  const int64_t avg_ns_, upd_ns_;
  std::vector<int64_t> iter_, lock_;
  std::vector<straggler::Rng> pick_;
  std::vector<Event> grad_ready_;
  SimQueue q_;
  int64_t seq_ = 0;
  StepRecord rec_;
  int in_round_ = 0;
  int64_t next_round_ = 0;
  double round_loss_ = 0, round_n_ = 0;
};

}  // namespace

void Engine::Impl::run_adpsgd(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop,
                              RunSummary& sum) {
  if (stop_now(stop, sum)) return;
  AdpsgdLoop loop(*this);
  for (;;) {
    AdpsgdLoop::Round r = loop.next_round();
    StepRecord& rec = r.rec;
    for (auto& w : s->workers) w->ctx().compute().synchronize();
    rec.consensus = consensus();
    adpsgd_clock = std::max(adpsgd_clock, rec.t);
    losses.add(r.loss_sum, r.n);
    samples_total += rec.samples;
    ++step;
    after_step(rec, on_step);
    if (stop_now(stop, sum)) break;
    periodic(stop);
  }
}

}  // namespace nbsgd::engine
