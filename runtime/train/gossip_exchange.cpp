// GossipExchange: D-PSGD and MATCHA (METHOD.md, "Aggregation", gossip variants).
// Worker i: g_i = G_i / n_i (no local step if n_i = 0), x_i <- x_i - lr g_i, then
// x_i <- sum_j W_ij(t) x_j over the neighbours W(t) names. MATCHA draws the step's
// active matchings from a stream every worker shares (same seed), so W(t) is known
// everywhere without communication.
#include <fmt/format.h>

#include <cmath>
#include <map>

#include "nets/optim/commit.h"
#include "runtime/device/check.h"
#include "runtime/device/comm/comm.h"
#include "runtime/device/nvtx.h"
#include "runtime/train/exchange.h"
#include "runtime/train/gossip/matcha.h"

namespace nbsgd::engine {

bool is_gossip_exchange(const std::string& e) { return e == "dpsgd" || e == "matcha" || e == "adpsgd"; }

GossipPlanInfo make_gossip_plan(const TrainConfig& cfg, int workers) {
  GossipPlanInfo g;
  g.graph = gossip::parse_topology(cfg.topology, workers);
  g.plan = cfg.exchange == "matcha" ? gossip::make_matcha_plan(g.graph, cfg.budget) : gossip::make_dpsgd_plan(g.graph);
  return g;
}

namespace {

class GossipExchange final : public Exchange {
 public:
  GossipExchange(const TrainConfig& cfg, std::vector<std::unique_ptr<Worker>>& workers, const optim::SgdConfig& sgd,
                 const DurationModel& model)
      : workers_(workers), sgd_(sgd), P_(workers[0]->P()), seed_(cfg.seed), model_(model), cfg_(cfg) {
    info_ = make_gossip_plan(cfg, static_cast<int>(workers.size()));
    std::vector<DeviceContext*> ctxs;
    for (auto& w : workers) ctxs.push_back(&w->ctx());
    comm_ = comm::make_gossip_exchange(ctxs);
    // Plain SGD fuses the local step into the mix; momentum does not (each buffer
    // must advance exactly once, by its owner), nor does linear lr scaling (n_i/B).
    fused_ = cfg.momentum == 0.0 && sgd.count_ref == 0.0;
    for (auto& w : workers) local_done_.push_back(w->ctx().event());
  }

  std::string describe() const override {
    return fmt::format("{} over {} ({} edges; {}), alpha {:.4g}, lambda_2 {:.4g}, rho {:.4g}, "
                       "expected edges per step {:.3g}{}",
                       cfg_.exchange, cfg_.topology, info_.graph.edges.size(), comm_->name(), info_.plan.alpha,
                       info_.plan.lambda2, info_.plan.rho, gossip::expected_edges_per_step(info_.plan),
                       cfg_.exchange == "matcha" ? fmt::format(" (budget {})", cfg_.budget) : std::string());
  }
  bool replicated() const override { return false; }
  const std::vector<int>& waits_for(int64_t step, int w) const override {
    return neighbours(step)[static_cast<size_t>(w)];
  }
  double modelled_s(int64_t step, int w) const override {
    return model_.gossip_s(P_ * sizeof(float), static_cast<int>(waits_for(step, w).size()));
  }
  size_t readback_floats() const override { return 2 * workers_.size(); }

  // Per worker, on its comm stream after its last counted commit: read [n_i, loss_i]
  // back, the local step (unless the mix fuses it); then the mix, in which each
  // worker waits only for the neighbours it reads.
  void enqueue(int64_t step, double lr, const std::vector<const Event*>& ready,
               const std::vector<const Event*>& running, float* readback) override {
    NBSGD_NVTX_RANGE("gossip exchange", nvtx::kExchange);
    std::vector<float*> x, acc;
    std::vector<const Event*> local;
    for (size_t i = 0; i < workers_.size(); ++i) {
      Worker& w = *workers_[i];
      Stream& cm = w.ctx().comm();
      if (ready[i]) cm.wait(*ready[i]);
      // A cancelled mini-batch may still be running and reading x_i: the local step
      // and the mix that writes x_i wait for it. (The neighbours that read x_i then
      // wait too: they need its updated model.)
      if (i < running.size() && running[i]) cm.wait(*running[i]);
      copy_async(cm, readback + 2 * i, w.accumulator(step) + P_, 2 * sizeof(float));
      if (!fused_) {
        NBSGD_NVTX_RANGE("update", nvtx::kUpdate);
        optim::fused_sgd_update(cm, w.params(), w.momentum(), w.accumulator(step), P_, static_cast<float>(lr), sgd_,
                                1.0f);
      }
      cm.record(local_done_[i]);
      local.push_back(&local_done_[i]);
      x.push_back(w.params());
      acc.push_back(w.accumulator(step));
    }
    const comm::MixWeights& W = weights(step);
    if (fused_) {
      comm::GossipStep gs;
      gs.lr = static_cast<float>(lr);
      gs.weight_decay = static_cast<float>(cfg_.weight_decay);
      comm_->fused_gossip_sgd(x, acc, P_, gs, W, local);
    } else {
      comm_->mix(x, P_, W, local);
    }
    for (auto& w : workers_) {
      w->ctx().comm().record(w->update_done);
      w->ctx().comm().record(w->update_done_of[step & 1]);
    }
  }
  Totals totals(const float* rb) const override {
    double n = 0, loss = 0;
    for (size_t i = 0; i < workers_.size(); ++i) {
      n += rb[2 * i];
      loss += rb[2 * i + 1];
    }
    return {n, loss, n > 0 ? loss / n : std::nan("")};
  }
  void forget_before(int64_t step) override {
    weights_.erase(weights_.begin(), weights_.lower_bound(step));
    neighbours_.erase(neighbours_.begin(), neighbours_.lower_bound(step));
  }

 private:
  const comm::MixWeights& weights(int64_t s) const {
    auto it = weights_.find(s);
    if (it != weights_.end()) return it->second;
    return weights_.emplace(s, gossip::step_weights(info_.plan, gossip::active_matchings(info_.plan, seed_, s)))
        .first->second;
  }
  const std::vector<std::vector<int>>& neighbours(int64_t s) const {
    auto it = neighbours_.find(s);
    if (it != neighbours_.end()) return it->second;
    std::vector<std::vector<int>> nb(workers_.size());
    const auto& w = weights(s);
    for (size_t i = 0; i < nb.size(); ++i)
      for (auto [j, wij] : w[i])
        if (j != static_cast<int>(i)) nb[i].push_back(j);
    return neighbours_.emplace(s, std::move(nb)).first->second;
  }

  std::vector<std::unique_ptr<Worker>>& workers_;
  optim::SgdConfig sgd_;
  size_t P_;
  uint64_t seed_;
  DurationModel model_;
  TrainConfig cfg_;
  GossipPlanInfo info_;
  std::unique_ptr<comm::GossipExchange> comm_;
  bool fused_ = false;
  std::vector<Event> local_done_;
  mutable std::map<int64_t, comm::MixWeights> weights_;
  mutable std::map<int64_t, std::vector<std::vector<int>>> neighbours_;
};

}  // namespace

std::unique_ptr<Exchange> make_allreduce_exchange(std::vector<std::unique_ptr<Worker>>& workers,
                                                  const optim::SgdConfig& sgd, const DurationModel& model);

std::unique_ptr<Exchange> make_exchange(const TrainConfig& cfg, std::vector<std::unique_ptr<Worker>>& workers,
                                        const optim::SgdConfig& sgd, const DurationModel& model) {
  if (cfg.exchange == "ring") return make_allreduce_exchange(workers, sgd, model);
  if (cfg.exchange == "dpsgd" || cfg.exchange == "matcha") return std::make_unique<GossipExchange>(cfg, workers, sgd, model);
  throw InputError("--exchange " + cfg.exchange + ": expected ring, dpsgd, matcha or adpsgd");
}

}  // namespace nbsgd::engine
