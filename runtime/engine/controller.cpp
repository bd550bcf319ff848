#include "runtime/engine/controller.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/check.h"

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
  plan_.clear();
  if (cfg_.window.kind == WindowKind::Deadline) deadline_ = t0 + cfg_.window.deadline_s;
  if (cfg_.window.kind == WindowKind::Adaptive) make_adaptive_plan();
}

// LB-BSP's per-worker batch sizing: the step's N*B samples are shared in proportion
// to the measured rates (largest remainder, ties to the lower worker index), cut
// into mini-batches of b with a smaller last one, so that all workers are expected
// to finish together. Without estimates (the first step) every worker gets B, which
// is exactly the sync assignment.
void StepController::make_adaptive_plan() {
  const int n = cfg_.workers, b = cfg_.mini_batch();
  const int64_t total = int64_t(n) * cfg_.batch;
  std::vector<int64_t> share(n, cfg_.batch);
  const bool known = std::all_of(rate_.begin(), rate_.end(), [](double r) { return r > 0; });
  if (known) {
    const double sum = std::accumulate(rate_.begin(), rate_.end(), 0.0);
    std::vector<double> exact(n);
    int64_t given = 0;
    for (int i = 0; i < n; ++i) {
      exact[i] = total * rate_[i] / sum;
      share[i] = static_cast<int64_t>(std::floor(exact[i]));
      given += share[i];
    }
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int c) {
      return exact[a] - std::floor(exact[a]) > exact[c] - std::floor(exact[c]);
    });
    for (int k = 0; given < total; k = (k + 1) % n, ++given) ++share[order[k]];
  }
  plan_.assign(n, {});
  double predicted = 0.0;
  for (int i = 0; i < n; ++i) {
    for (int64_t left = share[i]; left > 0; left -= b) plan_[i].push_back(static_cast<int>(std::min<int64_t>(b, left)));
    if (known) predicted = std::max(predicted, share[i] / rate_[i]);
  }
  if (known) deadline_ = t0_ + cfg_.adaptive_guard * predicted;
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
