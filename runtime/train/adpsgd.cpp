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
#include <fmt/format.h>

#include <algorithm>
#include <queue>

#include "nets/optim/commit.h"
#include "runtime/device/check.h"
#include "runtime/device/comm/device_launch.h"
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

void Engine::Impl::run_adpsgd(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop,
                              RunSummary& sum) {
  if (stop_now(stop, sum)) return;
  const TrainConfig& cfg = s->cfg;
  const auto& workers = s->workers;
  const size_t P = s->P;
  auto& queue = s->queue;
  const int N = n();
  const int b = cfg.batch / cfg.split;
  const auto nb = gossip->graph.neighbours();
  const int64_t avg_ns = ns(cfg.model.gossip_s(P * sizeof(float), 1));
  const int64_t upd_ns = ns(cfg.model.update_s(P));
  std::vector<int64_t> iter(N, 0);
  std::vector<int64_t> lock(N, 0);
  std::vector<straggler::Rng> pick;
  std::vector<Event> grad_ready;
  for (int w = 0; w < N; ++w) {
    pick.push_back(straggler::device_stream(cfg.seed, w, kNeighbourStream));
    grad_ready.push_back(workers[w]->ctx().event());
  }
  SimQueue q;
  int64_t seq = 0;
  for (int w = 0; w < N; ++w) q.push({0, kIterStart, w, seq++, 0, -1});

  // The round being accumulated.
  StepRecord rec;
  int in_round = 0;
  double round_loss = 0, round_n = 0;
  auto reset_round = [&] {
    rec = StepRecord();
    rec.step = step;
    rec.epoch = queue->current_epoch();
    rec.finished.assign(N, 0);
    rec.delay_s.assign(N, 0.0);
    in_round = 0;
    round_loss = round_n = 0;
  };
  reset_round();

  for (;;) {
    NBSGD_CHECK(!q.empty(), "AD-PSGD: no event left");
    const SimEvent e = q.top();
    q.pop();
    const int w = e.worker;
    Worker& wk = *workers[w];
    const auto& dev = s->profile.devices[w];
    if (e.type == kIterStart) {
      const int64_t it = iter[w];
      straggler::Rng stall_rng = step_stream(s->profile, w, it, straggler::RngPurpose::Stall);
      straggler::Rng delay_rng = step_stream(s->profile, w, it, straggler::RngPurpose::Delay);
      int64_t busy = ns(dev.draw_stall_s(stall_rng, it));
      rec.delay_s[w] += s_of(busy);
      for (int k = 0; k < cfg.split; ++k) {
        auto mb = queue->take(b);
        NBSGD_CHECK(mb.has_value(), "AD-PSGD: the epoch queue ran dry");
        const int size = static_cast<int>(mb->indices.size());
        const int64_t c = ns(cfg.model.compute_s(s->flops, size));
        const int64_t injected = ns((dev.slowdown(it) - 1.0) * s_of(c)) + ns(dev.draw_delay_s(delay_rng, it));
        rec.delay_s[w] += s_of(injected);
        busy += c + injected;
        const int slot = k % wk.slots();
        wk.stage_and_compute(slot, s->data.train, mb->indices);
        optim::commit(wk.ctx().compute(), wk.slot(slot).scratch.as<float>(), wk.accumulator(), P);
        wk.ctx().compute().record(wk.slot(slot).done);
        queue->commit(*mb);
        ++rec.finished[w];
      }
      wk.ctx().compute().record(grad_ready[w]);
      q.push({e.t + busy, kGradDone, w, seq++, it, -1});
    } else if (e.type == kGradDone) {
      const auto& mine = nb[static_cast<size_t>(w)];
      int j = -1;
      int64_t start = std::max(e.t, lock[w]);
      if (!mine.empty()) {
        j = mine[static_cast<size_t>(pick[w].next_u64() % mine.size())];
        start = std::max(start, lock[j]);
        lock[j] = start + avg_ns;
      }
      lock[w] = start + (j >= 0 ? avg_ns : 0);
      q.push({start, kAverage, w, seq++, e.step, j});
    } else {
      // Atomic pairwise average, then w's own gradient step, on w's comm stream
      // after both workers' queued gradient work (which reads their models).
      Stream& cs = wk.ctx().comm();
      cs.wait(grad_ready[w]);
      const int j = e.aux;
      if (j >= 0) {
        cs.wait(grad_ready[j]);
        comm::WeightedSumOp op{};
        op.n = 2;
        op.src[0] = std::min(w, j) == w ? wk.params() : workers[j]->params();
        op.src[1] = std::min(w, j) == w ? workers[j]->params() : wk.params();
        op.w[0] = op.w[1] = 0.5f;
        op.dst = wk.params();
        comm::launch_on_device(cs, P, op);
        copy_async(cs, workers[j]->params(), wk.params(), P * sizeof(float));
      }
      float* tail = readback.as<float>() + 2 * w;
      copy_async(cs, tail, wk.accumulator() + P, 2 * sizeof(float));
      const double lr = s->schedule.lr_at(step);
      optim::fused_sgd_update(cs, wk.params(), wk.momentum(), wk.accumulator(), P, static_cast<float>(lr), s->sgd, 1.0f);
      cs.record(wk.update_done);
      // Later reads of x_w and x_j are enqueued after this point; finishing here
      // keeps every read after the write it follows in virtual time.
      cs.synchronize();
      round_n += tail[0];
      round_loss += tail[1];
      const int64_t t_end = e.t + (j >= 0 ? avg_ns : 0) + upd_ns;
      ++iter[w];
      q.push({t_end, kIterStart, w, seq++, iter[w], -1});
      if (++in_round == N) {
        rec.lr = lr;
        rec.t = s_of(t_end);
        rec.samples = static_cast<int64_t>(round_n);
        rec.loss = round_n > 0 ? round_loss / round_n : std::nan("");
        rec.skipped = round_n == 0;
        rec.window_s = 0;
        for (auto& wp : workers) wp->ctx().compute().synchronize();
        rec.consensus = consensus();
        adpsgd_clock = std::max(adpsgd_clock, rec.t);
        losses.add(round_loss, round_n);
        samples_total += rec.samples;
        ++step;
        after_step(rec, on_step);
        if (stop_now(stop, sum)) break;
        periodic();
        reset_round();
      }
    }
  }
}

}  // namespace nbsgd::engine
