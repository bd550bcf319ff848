#include "runtime/train/gossip/matcha.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include <fmt/format.h>

#include "runtime/device/check.h"

namespace nbsgd::gossip {

namespace {

std::vector<Eigen::MatrixXd> matching_laplacians(int n, const std::vector<Matching>& matchings) {
  std::vector<Eigen::MatrixXd> Ls;
  Ls.reserve(matchings.size());
  for (const auto& m : matchings) Ls.push_back(laplacian(n, m));
  return Ls;
}

Eigen::MatrixXd weighted_sum(int n, const std::vector<Eigen::MatrixXd>& Ls,
                             const std::vector<double>& p) {
  NBSGD_CHECK(Ls.size() == p.size(), "one probability per matching");
  Eigen::MatrixXd S = Eigen::MatrixXd::Zero(n, n);
  for (size_t j = 0; j < Ls.size(); ++j) S += p[j] * Ls[j];
  return S;
}

// rho(alpha) = ||I - J - 2 alpha Lbar + alpha^2 Q|| with Q = Lbar^2 + sum p(1-p) L_j^2;
// Lbar and Q are computed once per p, the eigenvalues once per alpha.
struct RhoOfAlpha {
  Eigen::MatrixXd IJ, Lbar, Q;

  RhoOfAlpha(int n, const std::vector<Eigen::MatrixXd>& Ls, const std::vector<double>& p) {
    IJ = Eigen::MatrixXd::Identity(n, n) - Eigen::MatrixXd::Constant(n, n, 1.0 / n);
    Lbar = weighted_sum(n, Ls, p);
    Q = Lbar * Lbar;
    for (size_t j = 0; j < Ls.size(); ++j) Q += p[j] * (1.0 - p[j]) * (Ls[j] * Ls[j]);
  }
  Eigen::MatrixXd WtW_minus_J(double a) const { return IJ - 2.0 * a * Lbar + a * a * Q; }
  double operator()(double a) const {
    return symmetric_eigenvalues(WtW_minus_J(a)).cwiseAbs().maxCoeff();
  }
};

double minimise_alpha(const RhoOfAlpha& rho) {
  // rho(0) = 1 on a connected graph and rho is convex, so the minimiser lies below
  // the first alpha where rho climbs back to 1. Double until there.
  double hi = 0.5;
  for (int i = 0; i < 60 && rho(hi) < 1.0; ++i) hi *= 2.0;
  // A coarse scan guards against the flat or nearly flat stretches golden section
  // alone could wander in; then refine inside the best scan cell.
  const int scan = 64;
  int best = 0;
  double best_v = rho(0.0);
  for (int i = 1; i <= scan; ++i) {
    const double v = rho(hi * i / scan);
    if (v < best_v) best_v = v, best = i;
  }
  double a = hi * std::max(0, best - 1) / scan, b = hi * std::min(scan, best + 1) / scan;
  const double g = (std::sqrt(5.0) - 1.0) / 2.0;
  double x1 = b - g * (b - a), x2 = a + g * (b - a);
  double f1 = rho(x1), f2 = rho(x2);
  for (int it = 0; it < 200 && b - a > 1e-12 * hi; ++it) {
    if (f1 <= f2) {
      b = x2, x2 = x1, f2 = f1;
      x1 = b - g * (b - a), f1 = rho(x1);
    } else {
      a = x1, x1 = x2, f1 = f2;
      x2 = a + g * (b - a), f2 = rho(x2);
    }
  }
  const double mid = 0.5 * (a + b);
  return rho(mid) <= best_v ? mid : hi * best / scan;
}

}  // namespace

std::vector<double> project_capped_simplex(const std::vector<double>& y, double total) {
  NBSGD_CHECK(total >= 0.0, "capped simplex needs a non-negative total");
  auto clipped_sum = [&](double tau, std::vector<double>* out) {
    double s = 0.0;
    for (size_t j = 0; j < y.size(); ++j) {
      const double v = std::clamp(y[j] - tau, 0.0, 1.0);
      if (out) (*out)[j] = v;
      s += v;
    }
    return s;
  };
  std::vector<double> p(y.size());
  if (clipped_sum(0.0, &p) <= total) return p;
  // clipped_sum is non-increasing in tau, reaching 0 at tau = max(y); bisect and keep
  // the feasible side so the budget holds exactly.
  double lo = 0.0, hi = *std::max_element(y.begin(), y.end());
  for (int it = 0; it < 200 && hi - lo > 1e-15; ++it) {
    const double mid = 0.5 * (lo + hi);
    (clipped_sum(mid, nullptr) > total ? lo : hi) = mid;
  }
  clipped_sum(hi, &p);
  return p;
}

double activation_lambda2(int n, const std::vector<Matching>& matchings,
                          const std::vector<double>& p) {
  return algebraic_connectivity(weighted_sum(n, matching_laplacians(n, matchings), p));
}

std::vector<double> optimize_activation(int n, const std::vector<Matching>& matchings,
                                        double budget) {
  NBSGD_CHECK(budget > 0.0 && budget <= 1.0, "MATCHA budget must be in (0, 1]");
  const size_t k = matchings.size();
  std::vector<double> p(k, budget);
  if (k == 0 || n < 2 || budget >= 1.0) return p;  // nothing to trade off
  const double total = budget * static_cast<double>(k);
  const auto Ls = matching_laplacians(n, matchings);

  std::vector<double> best = p;
  double best_l2 = -1.0;
  // Normalised super-gradient steps of length step0 / sqrt(t + 1): p lives in [0, 1]^k,
  // so a first step of 0.2 moves meaningfully and the last ones refine to ~1e-3.
  const double step0 = 0.2;
  const int max_iters = 1500, patience = 400;
  int since_best = 0;
  std::vector<double> grad(k), y(k);
  for (int t = 0; t < max_iters && since_best < patience; ++t) {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(weighted_sum(n, Ls, p));
    NBSGD_CHECK(es.info() == Eigen::Success, "eigensolver did not converge");
    const double l2 = es.eigenvalues()(1);
    if (l2 > best_l2 + 1e-15) {
      best_l2 = l2, best = p, since_best = 0;
    } else {
      ++since_best;
    }
    // d lambda_2 / d p_j = v^T L_j v = sum over edges of M_j of (v_a - v_b)^2.
    const Eigen::VectorXd v = es.eigenvectors().col(1);
    double norm2 = 0.0;
    for (size_t j = 0; j < k; ++j) {
      double g = 0.0;
      for (auto [a, b] : matchings[j]) g += (v(a) - v(b)) * (v(a) - v(b));
      grad[j] = g;
      norm2 += g * g;
    }
    if (norm2 <= 0.0) break;
    const double step = step0 / std::sqrt(t + 1.0) / std::sqrt(norm2);
    for (size_t j = 0; j < k; ++j) y[j] = p[j] + step * grad[j];
    p = project_capped_simplex(y, total);
  }
  return best;
}

Eigen::MatrixXd expected_WtW(int n, const std::vector<Matching>& matchings,
                             const std::vector<double>& p, double alpha) {
  RhoOfAlpha r(n, matching_laplacians(n, matchings), p);
  return r.WtW_minus_J(alpha) + Eigen::MatrixXd::Constant(n, n, 1.0 / n);
}

double matcha_rho(int n, const std::vector<Matching>& matchings, const std::vector<double>& p,
                  double alpha) {
  return RhoOfAlpha(n, matching_laplacians(n, matchings), p)(alpha);
}

double optimize_alpha(int n, const std::vector<Matching>& matchings,
                      const std::vector<double>& p) {
  if (matchings.empty() || n < 2) return 0.0;
  return minimise_alpha(RhoOfAlpha(n, matching_laplacians(n, matchings), p));
}

MixingPlan make_matcha_plan(const Graph& g, double budget) {
  if (!(budget > 0.0 && budget <= 1.0))
    throw InputError(fmt::format("MATCHA budget C_b must be in (0, 1], got {}", budget));
  auto comps = components(g);
  if (comps.size() > 1)
    throw InputError("MATCHA: graph on " + std::to_string(g.n) + " workers is not connected (" +
                     std::to_string(comps.size()) + " components)");
  MixingPlan plan;
  plan.g = g;
  plan.randomized = true;
  plan.matchings = decompose_matchings(g);
  plan.p = optimize_activation(g.n, plan.matchings, budget);
  plan.expected_W = Eigen::MatrixXd::Identity(g.n, g.n);
  if (plan.matchings.empty()) return plan;  // n = 1: W = I = J, rho = 0
  const auto Ls = matching_laplacians(g.n, plan.matchings);
  const RhoOfAlpha rho(g.n, Ls, plan.p);
  plan.alpha = minimise_alpha(rho);
  plan.rho = rho(plan.alpha);
  plan.lambda2 = algebraic_connectivity(rho.Lbar);
  plan.expected_W -= plan.alpha * rho.Lbar;
  return plan;
}

}  // namespace nbsgd::gossip
