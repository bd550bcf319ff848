// Mixing matrices for the gossip variants: what worker i averages with in a step.
//
// D-PSGD and MATCHA share one plan type so the exchange code treats them alike:
//   1. active = active_matchings(plan, seed, step)   -- same on every worker
//   2. weights = step_weights(plan, active)[i]        -- (j, W_ij) including j = i
//   3. x_i <- sum_j W_ij x_j, waiting only for the j in that list.
// D-PSGD is the plan whose matchings are always all active (W fixed); MATCHA draws
// each matching independently with probability p_j (see matcha.h).
//
// rho measures consensus speed. For a randomized plan it is ||E[W^T W] - J|| (J =
// 11^T/n), so E||X_{t+1} - X_bar||^2 <= rho * ||X_t - X_bar||^2. For a fixed W it is
// ||W - J||, so ||X_t - X_bar||^2 <= rho^(2t) ||X_0 - X_bar||^2. consensus_rate()
// gives the per-step factor on the squared distance for either kind.
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/train/gossip/topology.h"

namespace nbsgd::gossip {

struct MixingPlan {
  Graph g;                              // the base graph; W_ij != 0 only on its edges
  std::vector<Matching> matchings;      // disjoint, covering g.edges
  std::vector<double> p;                // activation probability per matching
  double alpha = 0.0;                   // W = I - alpha * sum_{active j} L_j (0 for a given W)
  double lambda2 = 0.0;                 // lambda_2 of sum_j p_j L_j (of I - W for a given W)
  double rho = 0.0;                     // see the header comment
  Eigen::MatrixXd expected_W;           // E[W]; the W itself when fixed
  bool randomized = false;              // false: every matching active every step
};

// L = D - A of a graph, or of a matching on n nodes.
Eigen::MatrixXd laplacian(const Graph& g);
Eigen::MatrixXd laplacian(int n, const Matching& edges);

// Eigenvalues of a symmetric matrix, ascending.
Eigen::VectorXd symmetric_eigenvalues(const Eigen::MatrixXd& m);
// Second-smallest eigenvalue of a Laplacian (0 for n = 1).
double algebraic_connectivity(const Eigen::MatrixXd& laplacian);
// ||W - J||_2 for a symmetric, doubly stochastic W.
double consensus_norm(const Eigen::MatrixXd& W);

// D-PSGD on a graph: W = I - alpha L, alpha = 2 / (lambda_2 + lambda_max), which
// minimises ||W - J|| over alpha; rho = (lambda_max - lambda_2) / (lambda_max + lambda_2).
MixingPlan make_dpsgd_plan(const Graph& g);

// D-PSGD with a given W. Refuses (InputError naming `what`) a W that is not square,
// not finite, not symmetric, not doubly stochastic, or does not mix (||W - J|| >= 1,
// e.g. a disconnected support). Negative entries are allowed. The graph is W's
// off-diagonal support.
MixingPlan make_dpsgd_plan(const Eigen::MatrixXd& W, const std::string& what = "mixing matrix");

// Reads an n x n matrix: one row per line, numbers separated by spaces or commas,
// `#` comments, blank lines skipped. Errors name path:line. Does not validate W's
// properties (make_dpsgd_plan(W, path) does).
Eigen::MatrixXd read_mixing_matrix(const std::string& path, int n);

// Which matchings are active in `step`. Depends only on (plan, seed, step): every
// worker computes the same answer without talking to the others. For a fixed plan,
// all true.
std::vector<bool> active_matchings(const MixingPlan& plan, uint64_t seed, int64_t step);

// For each worker i, the (j, W_ij) it mixes with this step, including (i, W_ii), in
// ascending j. A worker with no active edge gets just (i, 1).
std::vector<std::vector<std::pair<int, double>>> step_weights(const MixingPlan& plan,
                                                              const std::vector<bool>& active);

// The dense W of one step (for tests and diagnostics; the exchange uses step_weights).
Eigen::MatrixXd mixing_matrix(const MixingPlan& plan, const std::vector<bool>& active);

// Per-step factor on E||X - X_bar||^2: rho for a randomized plan, rho^2 for a fixed W.
double consensus_rate(const MixingPlan& plan);

// Expected number of edges exchanged per step: sum_j p_j |M_j| (each edge means
// both endpoints send their model once).
double expected_edges_per_step(const MixingPlan& plan);

}  // namespace nbsgd::gossip
