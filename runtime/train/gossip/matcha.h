// MATCHA (Wang et al. 2019, "MATCHA: Speeding Up Decentralized SGD via Matching
// Decomposition Sampling"): split the base graph into matchings M_1..M_k, activate
// each independently with probability p_j every step, and mix with
// W = I - alpha * sum_{active j} L_j.
//
// p maximises lambda_2(sum_j p_j L_j) (the expected graph's connectivity) subject to
// sum_j p_j <= C_b * k and 0 <= p_j <= 1: lambda_2 is concave in p, so projected
// super-gradient ascent works, with d lambda_2 / d p_j = v^T L_j v for the unit
// Fiedler vector v. alpha then minimises rho(alpha) = ||E[W^T W] - J||, which is
// convex in alpha because E[W^T W] - J is PSD and quadratic in alpha with a PSD
// leading term. The closed form, for independent B_j ~ Bernoulli(p_j):
//   E[W^T W] = I - 2 alpha Lbar + alpha^2 (Lbar^2 + sum_j p_j (1 - p_j) L_j^2),
//   Lbar = sum_j p_j L_j.
#pragma once

#include <Eigen/Dense>
#include <vector>

#include "runtime/train/gossip/mixing.h"
#include "runtime/train/gossip/topology.h"

namespace nbsgd::gossip {

// Euclidean projection of y onto {p : 0 <= p_j <= 1, sum_j p_j <= total}:
// p = clip(y - tau, 0, 1) with the smallest tau >= 0 that meets the sum, found by
// bisection. The result's sum never exceeds total.
std::vector<double> project_capped_simplex(const std::vector<double>& y, double total);

// lambda_2(sum_j p_j L_j) on n nodes.
double activation_lambda2(int n, const std::vector<Matching>& matchings,
                          const std::vector<double>& p);

// Activation probabilities for budget C_b in (0, 1]; starts from the uniform
// p_j = C_b and returns the best iterate, so never worse than uniform.
std::vector<double> optimize_activation(int n, const std::vector<Matching>& matchings,
                                        double budget);

// E[W^T W] for independent activations, from the closed form above.
Eigen::MatrixXd expected_WtW(int n, const std::vector<Matching>& matchings,
                             const std::vector<double>& p, double alpha);

// ||E[W^T W] - J||_2.
double matcha_rho(int n, const std::vector<Matching>& matchings, const std::vector<double>& p,
                  double alpha);

// argmin over alpha >= 0 of matcha_rho (dense scan, then golden section).
double optimize_alpha(int n, const std::vector<Matching>& matchings, const std::vector<double>& p);

// The whole plan. InputError for a budget outside (0, 1] or a disconnected graph.
MixingPlan make_matcha_plan(const Graph& g, double budget);

}  // namespace nbsgd::gossip
