#include "nets/data/rng.h"
#include "runtime/train/gossip/mixing.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "runtime/device/check.h"

namespace nbsgd::gossip {

namespace {

using data::splitmix64;  // the project's one RNG (nets/data/rng.h)

Eigen::MatrixXd averaging(int n) { return Eigen::MatrixXd::Constant(n, n, 1.0 / n); }

void require_connected(const Graph& g, const std::string& what) {
  auto comps = components(g);
  if (comps.size() > 1)
    throw InputError(what + ": graph on " + std::to_string(g.n) + " workers is not connected (" +
                     std::to_string(comps.size()) + " components)");
}

}  // namespace

Eigen::MatrixXd laplacian(int n, const Matching& edges) {
  Eigen::MatrixXd L = Eigen::MatrixXd::Zero(n, n);
  for (auto [i, j] : edges) {
    L(i, i) += 1.0;
    L(j, j) += 1.0;
    L(i, j) -= 1.0;
    L(j, i) -= 1.0;
  }
  return L;
}

Eigen::MatrixXd laplacian(const Graph& g) { return laplacian(g.n, g.edges); }

Eigen::VectorXd symmetric_eigenvalues(const Eigen::MatrixXd& m) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(m, Eigen::EigenvaluesOnly);
  NBSGD_CHECK(es.info() == Eigen::Success, "symmetric eigensolver did not converge");
  return es.eigenvalues();
}

double algebraic_connectivity(const Eigen::MatrixXd& laplacian) {
  if (laplacian.rows() < 2) return 0.0;
  return symmetric_eigenvalues(laplacian)(1);
}

double consensus_norm(const Eigen::MatrixXd& W) {
  // W - J is symmetric, so its spectral norm is its largest |eigenvalue|.
  return symmetric_eigenvalues(W - averaging(static_cast<int>(W.rows()))).cwiseAbs().maxCoeff();
}

MixingPlan make_dpsgd_plan(const Graph& g) {
  require_connected(g, "D-PSGD");
  MixingPlan plan;
  plan.g = g;
  plan.matchings = decompose_matchings(g);
  plan.p.assign(plan.matchings.size(), 1.0);
  plan.randomized = false;
  const Eigen::MatrixXd L = laplacian(g);
  if (g.edges.empty()) {  // n = 1: nothing to mix, W = I = J
    plan.expected_W = Eigen::MatrixXd::Identity(g.n, g.n);
    return plan;
  }
  const Eigen::VectorXd ev = symmetric_eigenvalues(L);
  const double l2 = ev(1), lmax = ev(g.n - 1);
  plan.alpha = 2.0 / (l2 + lmax);
  plan.lambda2 = l2;
  plan.expected_W = Eigen::MatrixXd::Identity(g.n, g.n) - plan.alpha * L;
  plan.rho = consensus_norm(plan.expected_W);
  return plan;
}

MixingPlan make_dpsgd_plan(const Eigen::MatrixXd& W, const std::string& what) {
  const auto n = W.rows();
  if (n < 1 || W.cols() != n)
    throw InputError(what + ": mixing matrix must be square and non-empty, got " +
                     std::to_string(W.rows()) + "x" + std::to_string(W.cols()));
  if (!W.allFinite()) throw InputError(what + ": mixing matrix has non-finite entries");
  // Entries come from text files with a handful of digits; 1e-6 accepts "0.333333"
  // thirds while still catching real mistakes.
  const double tol = 1e-6;
  std::vector<Edge> edges;
  for (Eigen::Index i = 0; i < n; ++i) {
    const double row = W.row(i).sum();
    if (std::abs(row - 1.0) > tol)
      throw InputError(fmt::format("{}: row {} sums to {}, not 1 (W must be doubly stochastic)",
                                   what, i, row));
    for (Eigen::Index j = i + 1; j < n; ++j) {
      if (std::abs(W(i, j) - W(j, i)) > tol)
        throw InputError(fmt::format("{}: not symmetric: W({},{}) = {} but W({},{}) = {}", what,
                                     i, j, W(i, j), j, i, W(j, i)));
      if (W(i, j) != 0.0 || W(j, i) != 0.0) edges.emplace_back(int(i), int(j));
    }
  }
  MixingPlan plan;
  plan.g = make_graph(static_cast<int>(n), std::move(edges));
  require_connected(plan.g, what);
  plan.matchings = decompose_matchings(plan.g);
  plan.p.assign(plan.matchings.size(), 1.0);
  plan.randomized = false;
  // Symmetrise the accepted rounding so W is exactly symmetric for the exchange.
  plan.expected_W = 0.5 * (W + W.transpose());
  const Eigen::MatrixXd IW = Eigen::MatrixXd::Identity(n, n) - plan.expected_W;
  plan.lambda2 = algebraic_connectivity(IW);
  plan.rho = consensus_norm(plan.expected_W);
  if (!(plan.rho < 1.0 - 1e-12))
    throw InputError(fmt::format("{}: W does not mix: ||W - J|| = {:.6g} (must be < 1)", what,
                                 plan.rho));
  return plan;
}

Eigen::MatrixXd read_mixing_matrix(const std::string& path, int n) {
  if (n < 1) throw InputError(path + ": need at least 1 worker, got " + std::to_string(n));
  std::ifstream in(path);
  if (!in) throw InputError("cannot open mixing matrix file " + path);
  Eigen::MatrixXd W(n, n);
  int row = 0;
  std::string raw;
  int lineno = 1;
  for (; std::getline(in, raw); ++lineno) {
    std::string line = raw.substr(0, raw.find('#'));
    for (char& ch : line)
      if (ch == ',') ch = ' ';
    std::istringstream ls(line);
    std::vector<double> vals;
    std::string tok;
    while (ls >> tok) {
      char* end = nullptr;
      const double v = std::strtod(tok.c_str(), &end);
      if (end == tok.c_str() || *end != '\0')
        throw InputError(path + ":" + std::to_string(lineno) + ": not a number: '" + tok + "'");
      vals.push_back(v);
    }
    if (vals.empty()) continue;
    const std::string where = path + ":" + std::to_string(lineno) + ": ";
    if (row >= n)
      throw InputError(where + "more than " + std::to_string(n) + " rows for " +
                       std::to_string(n) + " workers");
    if (static_cast<int>(vals.size()) != n)
      throw InputError(where + "row has " + std::to_string(vals.size()) + " entries, expected " +
                       std::to_string(n));
    for (int j = 0; j < n; ++j) W(row, j) = vals[j];
    ++row;
  }
  if (in.bad()) throw InputError("error reading mixing matrix file " + path);
  if (row != n)
    throw InputError(path + ":" + std::to_string(lineno) + ": only " + std::to_string(row) +
                     " rows, expected " + std::to_string(n));
  return W;
}

std::vector<bool> active_matchings(const MixingPlan& plan, uint64_t seed, int64_t step) {
  std::vector<bool> active(plan.matchings.size(), true);
  if (!plan.randomized) return active;
  // One stream per (seed, step): hash the seed, fold the step in, then draw one
  // uniform per matching. No state carries across steps, so a worker that skips
  // ahead or restarts draws exactly what the others drew.
  uint64_t s = seed;
  uint64_t state = splitmix64(s) ^ (static_cast<uint64_t>(step) * 0xd1b54a32d192ed03ULL);
  for (size_t j = 0; j < active.size(); ++j) {
    const double u = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
    active[j] = u < plan.p[j];
  }
  return active;
}

std::vector<std::vector<std::pair<int, double>>> step_weights(const MixingPlan& plan,
                                                              const std::vector<bool>& active) {
  NBSGD_CHECK(active.size() == plan.matchings.size(), "one activation flag per matching");
  const int n = plan.g.n;
  std::vector<std::vector<std::pair<int, double>>> w(static_cast<size_t>(n));
  if (!plan.randomized) {
    // Fixed W (from the graph or given): read it on the graph's edges, so the
    // exchange partners are the neighbours even where a weight happens to be zero.
    const auto nb = plan.g.neighbours();
    for (int i = 0; i < n; ++i) {
      bool self_done = false;
      for (int j : nb[i]) {
        if (!self_done && j > i) w[i].emplace_back(i, plan.expected_W(i, i)), self_done = true;
        w[i].emplace_back(j, plan.expected_W(i, j));
      }
      if (!self_done) w[i].emplace_back(i, plan.expected_W(i, i));
    }
    return w;
  }
  // W = I - alpha * sum_{active j} L_j: each active edge gives both ends alpha and
  // takes alpha off their diagonals. Matchings are disjoint, so no edge twice.
  std::vector<std::vector<int>> partners(static_cast<size_t>(n));
  for (size_t m = 0; m < plan.matchings.size(); ++m) {
    if (!active[m]) continue;
    for (auto [i, j] : plan.matchings[m]) {
      partners[i].push_back(j);
      partners[j].push_back(i);
    }
  }
  for (int i = 0; i < n; ++i) {
    auto& ps = partners[i];
    std::sort(ps.begin(), ps.end());
    const double self = 1.0 - plan.alpha * static_cast<double>(ps.size());
    bool self_done = false;
    for (int j : ps) {
      if (!self_done && j > i) w[i].emplace_back(i, self), self_done = true;
      w[i].emplace_back(j, plan.alpha);
    }
    if (!self_done) w[i].emplace_back(i, self);
  }
  return w;
}

Eigen::MatrixXd mixing_matrix(const MixingPlan& plan, const std::vector<bool>& active) {
  const int n = plan.g.n;
  Eigen::MatrixXd W = Eigen::MatrixXd::Zero(n, n);
  const auto w = step_weights(plan, active);
  for (int i = 0; i < n; ++i)
    for (auto [j, v] : w[i]) W(i, j) = v;
  return W;
}

double consensus_rate(const MixingPlan& plan) {
  return plan.randomized ? plan.rho : plan.rho * plan.rho;
}

double expected_edges_per_step(const MixingPlan& plan) {
  double e = 0.0;
  for (size_t j = 0; j < plan.matchings.size(); ++j)
    e += plan.p[j] * static_cast<double>(plan.matchings[j].size());
  return e;
}

}  // namespace nbsgd::gossip
