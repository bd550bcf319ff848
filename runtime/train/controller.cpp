#include "runtime/train/controller.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/device/check.h"

namespace nbsgd::engine {

StepController::StepController(const ControllerConfig& cfg) : cfg_(cfg) {
  NBSGD_CHECK(cfg.workers > 0 && cfg.split > 0 && cfg.batch % cfg.split == 0, "bad controller config");
  if (cfg_.window.kind == WindowKind::Sync) cfg_.cap = cfg_.split;
  rate_.assign(cfg.workers, 0.0);
}

void StepController::begin_step(double t0) {
  t0_ = t0;
  closed_ = false;
  close_t_ = 0.0;
  started_.assign(cfg_.workers, 0);
  finished_.assign(cfg_.workers, 0);
  samples_.assign(cfg_.workers, 0);
  total_ = 0;
  deadline_.reset();
  predicted_ = 0;
  plan_.clear();
  if (cfg_.window.kind == WindowKind::Deadline) deadline_ = t0 + cfg_.window.deadline_s;
  if (cfg_.window.kind == WindowKind::Adaptive) make_adaptive_plan();
}

// LB-BSP's per-worker batch sizing at mini-batch granularity. A mini-batch's cost
// is dominated by a per-mini-batch part on small nets (launches), so shares are
// handed out in whole mini-batches of b: each of the step's N*m mini-batches goes
// to the worker that would finish it first given its measured time per mini-batch
// (b / rate; ties to the lower index). All workers are then expected to finish
// within one mini-batch of each other, and the step still holds the whole global
// batch N*B. Without estimates (the first step) every worker gets m, which is
// exactly the sync assignment; with equal rates the greedy also gives m each.
void StepController::make_adaptive_plan() {
  const int n = cfg_.workers, b = cfg_.mini_batch();
  plan_.assign(n, {});
  const bool known = std::all_of(rate_.begin(), rate_.end(), [](double r) { return r > 0; });
  if (!known) {
    for (auto& p : plan_) p.assign(cfg_.split, b);
    return;
  }
  std::vector<double> per_mb(n);
  for (int i = 0; i < n; ++i) per_mb[i] = b / rate_[i];
  std::vector<int> k(n, 0);
  for (int j = 0; j < n * cfg_.split; ++j) {
    int best = 0;
    for (int i = 1; i < n; ++i)
      if ((k[i] + 1) * per_mb[i] < (k[best] + 1) * per_mb[best]) best = i;
    ++k[best];
  }
  double predicted = 0.0;
  for (int i = 0; i < n; ++i) {
    plan_[i].assign(k[i], b);
    predicted = std::max(predicted, k[i] * per_mb[i]);
  }
  predicted_ = predicted;
  deadline_ = t0_ + cfg_.adaptive_guard * predicted;
}

void StepController::restart_clock(double t0) {
  t0_ = t0;
  if (closed_) return;
  if (cfg_.window.kind == WindowKind::Deadline) deadline_ = t0 + cfg_.window.deadline_s;
  if (cfg_.window.kind == WindowKind::Adaptive && predicted_ > 0) deadline_ = t0 + cfg_.adaptive_guard * predicted_;
}

int StepController::next_size(int w) const {
  if (closed_) return 0;
  if (cfg_.window.kind == WindowKind::Adaptive) {
    return started_[w] < static_cast<int>(plan_[w].size()) ? plan_[w][started_[w]] : 0;
  }
  if (cfg_.cap >= 0 && started_[w] >= cfg_.cap) return 0;
  return cfg_.mini_batch();
}

void StepController::on_start(int w, int) { ++started_[w]; }

bool StepController::policy_closes() const {
  const int n = cfg_.workers, m = cfg_.split;
  switch (cfg_.window.kind) {
    case WindowKind::Sync:
      return std::all_of(finished_.begin(), finished_.end(), [&](int k) { return k >= m; });
    case WindowKind::Fastest:
      return std::any_of(finished_.begin(), finished_.end(), [&](int k) { return k >= m; });
    case WindowKind::Quorum:
      return total_ >= cfg_.window.quorum_k;
    case WindowKind::Adaptive:
      for (int i = 0; i < n; ++i)
        if (finished_[i] < static_cast<int>(plan_[i].size())) return false;
      return true;
    case WindowKind::Deadline:
      break;
  }
  // Nothing more can happen once every worker has finished its cap.
  if (cfg_.cap < 0) return false;
  return std::all_of(finished_.begin(), finished_.end(), [&](int k) { return k >= cfg_.cap; });
}

bool StepController::on_complete(int w, double t, int size) {
  if (closed_ && t > close_t_) return false;
  ++finished_[w];
  samples_[w] += size;
  ++total_;
  if (!closed_ && policy_closes()) {
    closed_ = true;
    close_t_ = t;
  }
  return true;
}

std::optional<double> StepController::deadline() const { return closed_ ? std::nullopt : deadline_; }

void StepController::close_at(double t) {
  if (closed_) return;
  closed_ = true;
  close_t_ = t;
}

void StepController::observe(int w, double start, double end, int size) {
  if (end <= start || size <= 0) return;
  const double r = size / (end - start);
  rate_[w] = rate_[w] > 0 ? 0.7 * rate_[w] + 0.3 * r : r;
}

}  // namespace nbsgd::engine
