// Closed forms for S_ik = o_i + k e_i + Erlang(k, theta_i).
//
// With U the finish time of a worker's m-th mini-batch, and all workers independent:
//   sync     E[T] = int_0^inf (1 - prod_j P(S_jm <= t)) dt
//   fastest  E[T] = int_0^inf prod_j P(S_jm > t) dt
//            P(mini-batch k of worker i counts) = P(S_ik <= min_j S_jm)
//                                               = P(S_ik <= V_i),  V_i = min_{j != i} S_jm,
//            because S_ik <= S_im always; = int f_ik(t) prod_{j!=i} P(S_jm >= t) dt,
//            or prod_{j!=i} P(S_jm >= s_ik) when worker i is deterministic.
//   deadline E[samples] = b sum_i sum_k P(S_ik <= T).
// The integrands are smooth between the points where some S_jk's support starts
// (and the deterministic jumps there), so the integrals are split at those points
// and at a few quantiles of each Erlang, and each piece is integrated by
// composite 10-point Gauss-Legendre.
#include "runtime/apps/predict/erlang_closed_form.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>

namespace nbsgd::straggler::detail {

namespace {

constexpr int kGaussPoints = 10;
constexpr int kPanelsPerPiece = 4;
// Beyond this many (worker, mini-batch) pairs the quadrature is slower than a
// good Monte Carlo estimate; leave those models to Monte Carlo.
constexpr int64_t kMaxPairs = 1024;  // 8 workers x m = 128: well under a second
constexpr int64_t kMaxDeadlineTerms = 5'000'000;

struct GaussLegendre {
  std::array<double, kGaussPoints> x{}, w{};
  GaussLegendre() {
    const int n = kGaussPoints;
    for (int i = 0; i < n; ++i) {
      double z = std::cos(std::numbers::pi * (i + 0.75) / (n + 0.5));
      double dp = 0;
      for (int it = 0; it < 100; ++it) {
        double p0 = 1, p1 = z;
        for (int k = 2; k <= n; ++k) {
          const double p2 = ((2.0 * k - 1) * z * p1 - (k - 1.0) * p0) / k;
          p0 = p1;
          p1 = p2;
        }
        dp = n * (z * p1 - p0) / (z * z - 1);
        const double dz = p1 / dp;
        z -= dz;
        if (std::abs(dz) < 1e-16) break;
      }
      // Ascending order, so the nodes of consecutive panels form one sorted list.
      x[n - 1 - i] = z;
      w[n - 1 - i] = 2 / ((1 - z * z) * dp * dp);
    }
  }
};

const GaussLegendre& gauss() {
  static const GaussLegendre g;
  return g;
}

// Relative tolerance for deterministic ties, as in runtime_model.cpp.
bool at_or_before(double s, double t) { return s <= t + 1e-12 * std::abs(t); }

struct Model {
  const std::vector<ErlangWorker>& w;
  int64_t m;

  double start(size_t j, int64_t k) const { return w[j].offset_s + static_cast<double>(k) * w[j].step_s; }
  // P(S_jk > t); for a deterministic worker this is the indicator t < s_jk.
  double sf(size_t j, int64_t k, double t) const {
    const double a = start(j, k);
    if (w[j].theta_s <= 0) return t < a ? 1.0 : 0.0;
    return t <= a ? 1.0 : erlang_sf(k, (t - a) / w[j].theta_s);
  }
  // P(S_jk >= t), with deterministic ties counted as >=.
  double sf_ge(size_t j, int64_t k, double t) const {
    if (w[j].theta_s <= 0) return at_or_before(t, start(j, k)) ? 1.0 : 0.0;
    return sf(j, k, t);
  }
  double pdf(size_t i, int64_t k, double t) const {
    const double th = w[i].theta_s;
    return erlang_pdf(k, (t - start(i, k)) / th) / th;
  }
  // Erlang(k, 1) quantile-ish points beyond which the tail is negligible.
  static double far_tail(int64_t k) { return static_cast<double>(k) + 12 * std::sqrt(static_cast<double>(k)) + 45; }
  double upper() const {
    double hi = 0;
    for (size_t j = 0; j < w.size(); ++j) hi = std::max(hi, start(j, m) + w[j].theta_s * far_tail(m));
    return hi;
  }
  // Quadrature nodes and weights over [0, hi], split where integrands bend.
  void nodes(std::vector<double>& t, std::vector<double>& wt) const {
    const double hi = upper();
    std::vector<double> cuts{0.0, hi};
    for (size_t j = 0; j < w.size(); ++j) {
      for (int64_t k = 1; k <= m; ++k) {
        const double s = start(j, k);
        cuts.push_back(s);
        const double th = w[j].theta_s;
        if (th <= 0) continue;
        const double kd = static_cast<double>(k), sd = std::sqrt(kd);
        for (double q : {std::max(0.0, kd - 4 * sd), kd, kd + 4 * sd, kd + 10 * sd + 20}) cuts.push_back(s + th * q);
      }
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end(),
                           [hi](double a, double b) { return b - a <= 1e-15 * hi; }),
               cuts.end());
    const auto& g = gauss();
    t.clear();
    wt.clear();
    for (size_t c = 0; c + 1 < cuts.size(); ++c) {
      const double lo = cuts[c], up = std::min(cuts[c + 1], hi);
      if (!(up > lo)) continue;
      const double h = (up - lo) / kPanelsPerPiece;
      for (int p = 0; p < kPanelsPerPiece; ++p) {
        const double mid = lo + (p + 0.5) * h;
        for (int q = 0; q < kGaussPoints; ++q) {
          t.push_back(mid + 0.5 * h * g.x[q]);
          wt.push_back(0.5 * h * g.w[q]);
        }
      }
    }
  }
};

}  // namespace

double erlang_sf(int64_t k, double x) {
  if (x <= 0) return 1.0;
  // Poisson(x) P(J < k): sum only the terms within ~12 standard deviations of
  // the mode; the rest are below 1e-30 of the total.
  const double spread = 12 * std::sqrt(x) + 40;
  const int64_t jlo = static_cast<int64_t>(std::max(0.0, std::floor(x - spread)));
  const int64_t jhi = std::min<int64_t>(k - 1, static_cast<int64_t>(std::ceil(x + spread)));
  if (jlo > jhi) return 0.0;
  double term = std::exp(static_cast<double>(jlo) * std::log(x) - x - std::lgamma(static_cast<double>(jlo) + 1));
  double sum = 0;
  for (int64_t j = jlo; j <= jhi; ++j) {
    sum += term;
    term *= x / static_cast<double>(j + 1);
  }
  return std::min(1.0, sum);
}

double erlang_pdf(int64_t k, double x) {
  if (x < 0) return 0.0;
  if (k == 1) return std::exp(-x);
  if (x == 0) return 0.0;
  return std::exp(static_cast<double>(k - 1) * std::log(x) - x - std::lgamma(static_cast<double>(k)));
}

std::optional<StepPrediction> erlang_closed_form(const std::vector<ErlangWorker>& workers, int64_t m, int64_t b,
                                                 const WindowPolicy& policy) {
  const size_t n = workers.size();
  const Model model{workers, m};
  StepPrediction r;
  r.exact = true;

  switch (policy.kind) {
    case WindowPolicy::Quorum:
      return std::nullopt;

    case WindowPolicy::Deadline: {
      const double t = policy.deadline_s;
      const int64_t cap = policy.effective_cap(m);
      double count = 0;
      int64_t terms = 0;
      for (size_t i = 0; i < n; ++i) {
        for (int64_t k = 1; (cap == 0 || k <= cap) && at_or_before(model.start(i, k), t); ++k) {
          if (++terms > kMaxDeadlineTerms) return std::nullopt;
          count += 1.0 - model.sf(i, k, t);
        }
      }
      r.time_s = {t, 0};
      r.samples = {count * static_cast<double>(b), 0};
      return r;
    }

    case WindowPolicy::Sync:
    case WindowPolicy::Fastest:
      break;
  }

  if (static_cast<int64_t>(n) * m > kMaxPairs) return std::nullopt;
  std::vector<double> t, wt;
  model.nodes(t, wt);
  // surv[j][q] = P(S_jm > t_q): shared by E[T] and the sample counts.
  std::vector<std::vector<double>> surv(n, std::vector<double>(t.size()));
  for (size_t j = 0; j < n; ++j)
    for (size_t q = 0; q < t.size(); ++q) surv[j][q] = model.sf(j, m, t[q]);

  double et = 0;
  for (size_t q = 0; q < t.size(); ++q) {
    double prod = 1;
    if (policy.kind == WindowPolicy::Sync) {
      for (size_t j = 0; j < n; ++j) prod *= 1 - surv[j][q];
      et += wt[q] * (1 - prod);
    } else {
      for (size_t j = 0; j < n; ++j) prod *= surv[j][q];
      et += wt[q] * prod;
    }
  }
  r.time_s = {et, 0};

  if (policy.kind == WindowPolicy::Sync) {
    r.samples = {static_cast<double>(n) * static_cast<double>(m) * static_cast<double>(b), 0};
    return r;
  }

  double count = 0;
  std::vector<double> others(t.size());
  for (size_t i = 0; i < n; ++i) {
    if (workers[i].theta_s <= 0) {
      for (int64_t k = 1; k <= m; ++k) {
        double p = 1;
        for (size_t j = 0; j < n; ++j)
          if (j != i) p *= model.sf_ge(j, m, model.start(i, k));
        count += p;
      }
      continue;
    }
    for (size_t q = 0; q < t.size(); ++q) {
      double p = 1;
      for (size_t j = 0; j < n; ++j)
        if (j != i) p *= surv[j][q];
      others[q] = p;
    }
    for (int64_t k = 1; k <= m; ++k) {
      // Only the nodes where the Erlang(k) density is not negligible (t is sorted).
      const double s = model.start(i, k), th = workers[i].theta_s, kd = static_cast<double>(k);
      const double spread = 12 * std::sqrt(kd) + 45;
      const auto first = std::upper_bound(t.begin(), t.end(), s + th * std::max(0.0, kd - spread));
      const auto last = std::upper_bound(first, t.end(), s + th * (kd + spread));
      double integral = 0;
      for (auto q = static_cast<size_t>(first - t.begin()); q < static_cast<size_t>(last - t.begin()); ++q)
        if (others[q] > 0) integral += wt[q] * model.pdf(i, k, t[q]) * others[q];
      count += std::min(1.0, integral);
    }
  }
  r.samples = {count * static_cast<double>(b), 0};
  return r;
}

}  // namespace nbsgd::straggler::detail
