// Mixing plans: D-PSGD's fixed W, MATCHA's activation probabilities and alpha, the
// shared activation stream, and the consensus rate rho promises.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "runtime/device/check.h"
#include "runtime/train/gossip/matcha.h"
#include "runtime/train/gossip/mixing.h"
#include "runtime/train/gossip/topology.h"
#include "support/test_support.h"

namespace nbsgd::gossip {
namespace {

// Graphs every property is checked on.
std::vector<std::pair<std::string, Graph>> graphs() {
  return {{"ring 8", ring(8)},         {"ring 5", ring(5)},
          {"torus 2x4", torus(2, 4)},  {"torus 3x3", torus(3, 3)},
          {"complete 8", complete(8)}, {"er 8 0.5 1", parse_topology("er:0.5:1", 8)},
          {"er 8 0.4 3", parse_topology("er:0.4:3", 8)}, {"er 12 0.3 4", parse_topology("er:0.3:4", 12)}};
}

Eigen::MatrixXd J(int n) { return Eigen::MatrixXd::Constant(n, n, 1.0 / n); }

void expect_symmetric_doubly_stochastic(const Eigen::MatrixXd& W, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_LT((W - W.transpose()).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LT((W.rowwise().sum().array() - 1.0).abs().maxCoeff(), 1e-12);
  EXPECT_LT((W.colwise().sum().array() - 1.0).abs().maxCoeff(), 1e-12);
}

// ||X - X_bar||_F^2 with X_bar the column means broadcast to every row.
double consensus_distance(const Eigen::MatrixXd& X) {
  const Eigen::RowVectorXd mean = X.colwise().mean();
  return (X.rowwise() - mean).squaredNorm();
}

// Deterministic N(0,1)-ish start: sum of 12 uniforms from a fixed LCG.
Eigen::MatrixXd random_start(int n, int d, uint64_t seed) {
  Eigen::MatrixXd X(n, d);
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < d; ++k) {
      double v = -6.0;
      for (int r = 0; r < 12; ++r) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        v += static_cast<double>(s >> 11) * 0x1.0p-53;
      }
      X(i, k) = v;
    }
  return X;
}

TEST(Laplacian, Basics) {
  const Eigen::MatrixXd L = laplacian(ring(4));
  EXPECT_LT(L.rowwise().sum().cwiseAbs().maxCoeff(), 1e-15);
  EXPECT_EQ(L(0, 0), 2.0);
  EXPECT_EQ(L(0, 1), -1.0);
  EXPECT_EQ(L(0, 2), 0.0);
  // Cycle C_n: lambda_2 = 2 - 2 cos(2 pi / n).
  EXPECT_NEAR(algebraic_connectivity(laplacian(ring(8))), 2.0 - 2.0 * std::cos(2 * M_PI / 8), 1e-12);
  EXPECT_NEAR(algebraic_connectivity(laplacian(complete(6))), 6.0, 1e-12);
}

TEST(DPSGD, FixedWIsSymmetricDoublyStochasticAndMixes) {
  for (const auto& [name, g] : graphs()) {
    const MixingPlan plan = make_dpsgd_plan(g);
    SCOPED_TRACE(name);
    EXPECT_FALSE(plan.randomized);
    expect_symmetric_doubly_stochastic(plan.expected_W, name);
    EXPECT_EQ(plan.p, std::vector<double>(plan.matchings.size(), 1.0));
    const Eigen::VectorXd ev = symmetric_eigenvalues(laplacian(g));
    const double l2 = ev(1), lmax = ev(g.n - 1);
    EXPECT_NEAR(plan.alpha, 2.0 / (l2 + lmax), 1e-12);
    EXPECT_NEAR(plan.lambda2, l2, 1e-12);
    EXPECT_NEAR(plan.rho, (lmax - l2) / (lmax + l2), 1e-9);
    EXPECT_LT(plan.rho, 1.0);
    // Every step's W is the fixed W, whatever the seed.
    EXPECT_EQ(active_matchings(plan, 5, 17), std::vector<bool>(plan.matchings.size(), true));
    EXPECT_LT((mixing_matrix(plan, active_matchings(plan, 5, 17)) - plan.expected_W)
                  .cwiseAbs()
                  .maxCoeff(),
              1e-15);
  }
  // K_n mixes to the average in one step.
  const MixingPlan k = make_dpsgd_plan(complete(8));
  EXPECT_LT((k.expected_W - J(8)).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LT(k.rho, 1e-12);
}

TEST(DPSGD, TinyGraphs) {
  const MixingPlan one = make_dpsgd_plan(ring(1));
  EXPECT_EQ(one.expected_W, Eigen::MatrixXd::Identity(1, 1));
  EXPECT_EQ(one.rho, 0.0);
  EXPECT_EQ(step_weights(one, {}), (std::vector<std::vector<std::pair<int, double>>>{{{0, 1.0}}}));
  const MixingPlan two = make_dpsgd_plan(ring(2));
  EXPECT_NEAR(two.alpha, 0.5, 1e-12);
  EXPECT_LT((two.expected_W - J(2)).cwiseAbs().maxCoeff(), 1e-12);
}

TEST(DPSGD, ConsensusShrinksAtRhoSquared) {
  for (const auto& [name, g] : graphs()) {
    const MixingPlan plan = make_dpsgd_plan(g);
    SCOPED_TRACE(name);
    Eigen::MatrixXd X = random_start(g.n, 16, 11);
    const double d0 = consensus_distance(X);
    const Eigen::MatrixXd W = mixing_matrix(plan, active_matchings(plan, 0, 0));
    for (int t = 1; t <= 20; ++t) {
      X = W * X;
      const double bound = std::pow(plan.rho, 2 * t) * d0;
      EXPECT_LE(consensus_distance(X), bound * (1 + 1e-9) + 1e-24) << "t=" << t;
      // Tight: the slowest modes (at |1 - alpha lambda_2| = |1 - alpha lambda_max| = rho)
      // hold about 1/(n-1) of a random start's energy, so the distance stays within a
      // factor 4n of the bound.
      if (plan.rho > 1e-9) {
        EXPECT_GE(consensus_distance(X), bound / (4.0 * g.n)) << "t=" << t;
      }
    }
  }
}

TEST(GivenW, FromFile) {
  const std::string dir = test::make_temp_dir("mixing");
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string path = dir + "/" + name;
    std::ofstream(path) << text;
    return path;
  };
  // Metropolis weights on a path 0-1-2: W_ij = 1 / (1 + max(d_i, d_j)).
  const std::string good = write("w.txt",
                                 "# Metropolis weights, path of 3\n"
                                 "0.666667 0.333333 0\n"
                                 "0.333333, 0.333334, 0.333333\n\n"
                                 "0 0.333333 0.666667\n");
  const MixingPlan plan = make_dpsgd_plan(read_mixing_matrix(good, 3), good);
  EXPECT_EQ(plan.g.edges, (std::vector<Edge>{{0, 1}, {1, 2}}));
  EXPECT_FALSE(plan.randomized);
  EXPECT_LT(plan.rho, 1.0);
  const auto w = step_weights(plan, active_matchings(plan, 1, 2));
  ASSERT_EQ(w[1].size(), 3u);
  EXPECT_EQ(w[0].size(), 2u);
  EXPECT_NEAR(w[0][1].second, 0.333333, 1e-6);

  auto err = [&](const std::string& name, const std::string& text) {
    const std::string path = write(name, text);
    try {
      make_dpsgd_plan(read_mixing_matrix(path, 3), path);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string asym = err("asym.txt", "0.5 0.5 0\n0.25 0.5 0.25\n0.25 0 0.75\n");
  EXPECT_NE(asym.find("asym.txt"), std::string::npos);
  EXPECT_NE(asym.find("symmetric"), std::string::npos) << asym;
  const std::string rows = err("rows.txt", "0.5 0.5 0\n0.5 0.4 0\n0 0 1\n");
  EXPECT_NE(rows.find("rows.txt"), std::string::npos);
  EXPECT_NE(rows.find("row 1"), std::string::npos) << rows;
  const std::string split = err("split.txt", "0.5 0.5 0\n0.5 0.5 0\n0 0 1\n");
  EXPECT_NE(split.find("not connected"), std::string::npos) << split;
  const std::string nan = err("nan.txt", "0.5 0.5 0\n0.5 x 0\n0 0 1\n");
  EXPECT_NE(nan.find("nan.txt:2:"), std::string::npos) << nan;
  const std::string shortrow = err("short.txt", "1 0 0\n0 1\n0 0 1\n");
  EXPECT_NE(shortrow.find("short.txt:2:"), std::string::npos) << shortrow;
  const std::string few = err("few.txt", "1 0 0\n0 1 0\n");
  EXPECT_NE(few.find("few.txt"), std::string::npos) << few;
  const std::string many = err("many.txt", "1 0 0\n0 1 0\n0 0 1\n1 0 0\n");
  EXPECT_NE(many.find("many.txt:4:"), std::string::npos) << many;
  // Symmetric, doubly stochastic, connected, but oscillates forever: -1 eigenvalue.
  const std::string osc = err("osc.txt", "0 1 0\n1 -1 1\n0 1 0\n");
  EXPECT_NE(osc.find("does not mix"), std::string::npos) << osc;
  std::filesystem::remove_all(dir);
}

TEST(Projection, CappedSimplex) {
  const std::vector<double> feasible{0.2, 0.9, 0.0};
  EXPECT_EQ(project_capped_simplex(feasible, 2.0), feasible);
  const std::vector<double> y{1.7, 0.4, -0.3, 0.9, 0.6};
  const double total = 1.5;
  const auto p = project_capped_simplex(y, total);
  double sum = 0;
  for (double v : p) {
    EXPECT_GE(v, 0.0);
    EXPECT_LE(v, 1.0);
    sum += v;
  }
  EXPECT_LE(sum, total);
  EXPECT_NEAR(sum, total, 1e-12);
  // Projection onto a convex set: <y - p, q - p> <= 0 for every feasible q.
  uint64_t s = 42;
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<double> q(y.size());
    double qs = 0;
    for (double& v : q) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      v = static_cast<double>(s >> 11) * 0x1.0p-53;
      qs += v;
    }
    if (qs > total)
      for (double& v : q) v *= total / qs;
    double dot = 0;
    for (size_t j = 0; j < y.size(); ++j) dot += (y[j] - p[j]) * (q[j] - p[j]);
    EXPECT_LE(dot, 1e-9);
  }
}


// ---------------------------------------------------------------- MATCHA

double uniform_lambda2(const Graph& g, const std::vector<Matching>& ms, double budget) {
  return activation_lambda2(g.n, ms, std::vector<double>(ms.size(), budget));
}

TEST(Matcha, PlanMeetsBudgetAndBeatsUniform) {
  for (const auto& [name, g] : graphs())
    for (double budget : {0.1, 0.3, 0.5, 0.8, 1.0}) {
      SCOPED_TRACE(name + " budget " + std::to_string(budget));
      const MixingPlan plan = make_matcha_plan(g, budget);
      EXPECT_TRUE(plan.randomized);
      ASSERT_EQ(plan.p.size(), plan.matchings.size());
      double sum = 0;
      for (double p : plan.p) {
        EXPECT_GE(p, 0.0);
        EXPECT_LE(p, 1.0);
        sum += p;
      }
      EXPECT_LE(sum, budget * plan.matchings.size() + 1e-12);
      EXPECT_NEAR(plan.lambda2, activation_lambda2(g.n, plan.matchings, plan.p), 1e-12);
      EXPECT_GE(plan.lambda2, uniform_lambda2(g, plan.matchings, budget) - 1e-12);
      EXPECT_GT(plan.lambda2, 0.0);
      EXPECT_GT(plan.alpha, 0.0);
      EXPECT_LT(plan.rho, 1.0);
      EXPECT_NEAR(plan.rho, matcha_rho(g.n, plan.matchings, plan.p, plan.alpha), 1e-12);
      expect_symmetric_doubly_stochastic(plan.expected_W, "E[W]");
    }
}

TEST(Matcha, OptimisedProbabilitiesCanBeatUniformClearly) {
  // Matchings of unequal size: spending the budget evenly is not optimal.
  const Graph g = parse_topology("er:0.5:1", 8);
  const MixingPlan plan = make_matcha_plan(g, 0.5);
  EXPECT_GT(plan.lambda2, 1.05 * uniform_lambda2(g, plan.matchings, 0.5));
}

TEST(Matcha, ActivationOptimumMatchesGridSearch) {
  // Three matchings: lambda_2 grows with every p_j, so the optimum spends the whole
  // budget and a 2-D grid over (p_0, p_1) with p_2 = total - p_0 - p_1 finds it.
  for (const Graph& g : {ring(5), ring(7), torus(1, 9)}) {
    const auto ms = decompose_matchings(g);
    ASSERT_EQ(ms.size(), 3u);
    const double budget = 0.4, total = budget * 3;
    double grid_best = 0;
    const int steps = 200;
    for (int a = 0; a <= steps; ++a)
      for (int b = 0; b <= steps; ++b) {
        const double p0 = double(a) / steps, p1 = double(b) / steps, p2 = total - p0 - p1;
        if (p2 < 0 || p2 > 1) continue;
        grid_best = std::max(grid_best, activation_lambda2(g.n, ms, {p0, p1, p2}));
      }
    const double got = activation_lambda2(g.n, ms, optimize_activation(g.n, ms, budget));
    EXPECT_GE(got, grid_best * (1 - 2e-3)) << "n=" << g.n;
  }
}

TEST(Matcha, ClosedFormMatchesEnumeration) {
  // E[W] and E[W^T W] summed over all 2^k activation patterns with their probabilities.
  for (const auto& [name, g] : graphs()) {
    const MixingPlan plan = make_matcha_plan(g, 0.5);
    const size_t k = plan.matchings.size();
    if (k > 10) continue;
    SCOPED_TRACE(name);
    Eigen::MatrixXd EW = Eigen::MatrixXd::Zero(g.n, g.n), EWtW = EW;
    for (uint32_t mask = 0; mask < (1u << k); ++mask) {
      std::vector<bool> active(k);
      double prob = 1;
      for (size_t j = 0; j < k; ++j) {
        active[j] = (mask >> j) & 1;
        prob *= active[j] ? plan.p[j] : 1 - plan.p[j];
      }
      const Eigen::MatrixXd W = mixing_matrix(plan, active);
      EW += prob * W;
      EWtW += prob * W.transpose() * W;
    }
    EXPECT_LT((EW - plan.expected_W).cwiseAbs().maxCoeff(), 1e-12);
    EXPECT_LT((EWtW - expected_WtW(g.n, plan.matchings, plan.p, plan.alpha)).cwiseAbs().maxCoeff(),
              1e-12);
    EXPECT_NEAR(consensus_norm(EWtW), plan.rho, 1e-9);  // ||E[W^T W] - J||
  }
}

TEST(Matcha, AlphaMinimisesRho) {
  for (const auto& [name, g] : graphs()) {
    SCOPED_TRACE(name);
    const MixingPlan plan = make_matcha_plan(g, 0.5);
    auto rho = [&](double a) { return matcha_rho(g.n, plan.matchings, plan.p, a); };
    for (double d : {1e-4, 1e-3, 1e-2, 1e-1}) {
      EXPECT_LE(plan.rho, rho(plan.alpha + d) + 1e-12);
      EXPECT_LE(plan.rho, rho(std::max(0.0, plan.alpha - d)) + 1e-12);
    }
    for (int i = 0; i <= 2000; ++i) EXPECT_LE(plan.rho, rho(2.0 * i / 2000) + 1e-12);
  }
}

TEST(Matcha, TwoWorkersClosedForm) {
  // One edge, L has eigenvalue 2: E[W^T W] - J = 1 - 4 a p + 4 a^2 p on the
  // difference vector, minimised at a = 1/2 with rho = 1 - p.
  for (double budget : {0.2, 0.5, 0.9}) {
    const MixingPlan plan = make_matcha_plan(ring(2), budget);
    ASSERT_EQ(plan.p.size(), 1u);
    EXPECT_NEAR(plan.p[0], budget, 1e-15);
    EXPECT_NEAR(plan.alpha, 0.5, 1e-6);
    EXPECT_NEAR(plan.rho, 1.0 - budget, 1e-9);
  }
  const MixingPlan one = make_matcha_plan(ring(1), 0.5);
  EXPECT_TRUE(one.matchings.empty());
  EXPECT_EQ(one.rho, 0.0);
}

TEST(Matcha, RefusesBadInput) {
  EXPECT_THROW(make_matcha_plan(ring(8), 0.0), InputError);
  EXPECT_THROW(make_matcha_plan(ring(8), 1.5), InputError);
  EXPECT_THROW(make_matcha_plan(make_graph(4, {{0, 1}, {2, 3}}), 0.5), InputError);
  EXPECT_THROW(make_dpsgd_plan(make_graph(4, {{0, 1}, {2, 3}})), InputError);
}

TEST(Matcha, ActivationStreamIsSharedAndFresh) {
  const MixingPlan plan = make_matcha_plan(parse_topology("er:0.5:1", 8), 0.5);
  const size_t k = plan.matchings.size();
  std::set<std::vector<bool>> patterns;
  int changes = 0;
  for (int64_t step = 0; step < 200; ++step) {
    const auto a = active_matchings(plan, 1234, step);
    EXPECT_EQ(a, active_matchings(plan, 1234, step));  // any worker, any time
    ASSERT_EQ(a.size(), k);
    patterns.insert(a);
    if (step > 0 && a != active_matchings(plan, 1234, step - 1)) ++changes;
  }
  EXPECT_GT(patterns.size(), 10u);
  EXPECT_GT(changes, 100);
  int seed_diff = 0;
  for (int64_t step = 0; step < 50; ++step)
    seed_diff += active_matchings(plan, 1, step) != active_matchings(plan, 2, step);
  EXPECT_GT(seed_diff, 25);

  // Each matching is active with frequency p_j (binomial sd <= 0.0035 at 20000 draws).
  std::vector<int> count(k, 0);
  const int draws = 20000;
  for (int64_t step = 0; step < draws; ++step) {
    const auto a = active_matchings(plan, 99, step);
    for (size_t j = 0; j < k; ++j) count[j] += a[j];
  }
  for (size_t j = 0; j < k; ++j) EXPECT_NEAR(double(count[j]) / draws, plan.p[j], 0.02) << j;
}

TEST(Matcha, EveryDrawIsSymmetricDoublyStochastic) {
  for (const auto& [name, g] : graphs()) {
    const MixingPlan plan = make_matcha_plan(g, 0.5);
    for (int64_t step = 0; step < 100; ++step) {
      const auto active = active_matchings(plan, 7, step);
      const Eigen::MatrixXd W = mixing_matrix(plan, active);
      expect_symmetric_doubly_stochastic(W, name + " step " + std::to_string(step));
      // step_weights: ascending, self included, only active edges.
      const auto w = step_weights(plan, active);
      for (int i = 0; i < g.n; ++i) {
        bool self = false;
        for (size_t q = 0; q < w[i].size(); ++q) {
          if (q > 0) {
            EXPECT_LT(w[i][q - 1].first, w[i][q].first);
          }
          const int j = w[i][q].first;
          if (j == i) {
            self = true;
            continue;
          }
          EXPECT_DOUBLE_EQ(w[i][q].second, plan.alpha);
          bool on_active = false;
          for (size_t m = 0; m < plan.matchings.size(); ++m)
            for (auto e : plan.matchings[m])
              if (active[m] && e == Edge(std::min(i, j), std::max(i, j))) on_active = true;
          EXPECT_TRUE(on_active) << i << "-" << j;
        }
        EXPECT_TRUE(self);
      }
    }
  }
}

TEST(Matcha, ConsensusFollowsRho) {
  for (const auto& [name, g] : graphs()) {
    SCOPED_TRACE(name);
    const MixingPlan plan = make_matcha_plan(g, 0.5);
    // One step from the worst direction of E[W^T W] - J contracts by exactly rho in
    // expectation; the mean over 4000 draws (sd about 0.01) lands within 5%.
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(
        expected_WtW(g.n, plan.matchings, plan.p, plan.alpha) - J(g.n));
    const Eigen::VectorXd v = es.eigenvectors().col(g.n - 1);
    double one_step = 0;
    const int draws = 4000;
    for (int64_t step = 0; step < draws; ++step)
      one_step += consensus_distance(mixing_matrix(plan, active_matchings(plan, 3, step)) * v);
    one_step /= draws;
    EXPECT_NEAR(one_step / consensus_distance(v), plan.rho, 0.05 * plan.rho);

    // From a random start, E||X_t - X_bar||^2 <= rho^t ||X_0 - X_bar||^2.
    // Exact: propagate the second moment S = E[X X^T] through all 2^k patterns.
    // Sampled: the mean over seeds, allowing 4 standard errors; the distance is
    // heavy-tailed (rare steps with few active matchings barely mix), so the error
    // grows with t and a fixed relative slack would be wrong either way.
    const Eigen::MatrixXd X0 = random_start(g.n, 4, 5);
    const double d0 = consensus_distance(X0);
    const size_t k = plan.matchings.size();
    const int seeds = 2000, T = 6;
    std::vector<double> exact(T + 1, d0);
    if (k <= 10) {
      const Eigen::MatrixXd IJ = Eigen::MatrixXd::Identity(g.n, g.n) - J(g.n);
      Eigen::MatrixXd S = X0 * X0.transpose();
      for (int t = 1; t <= T; ++t) {
        Eigen::MatrixXd next = Eigen::MatrixXd::Zero(g.n, g.n);
        for (uint32_t mask = 0; mask < (1u << k); ++mask) {
          std::vector<bool> active(k);
          double prob = 1;
          for (size_t j = 0; j < k; ++j) {
            active[j] = (mask >> j) & 1;
            prob *= active[j] ? plan.p[j] : 1 - plan.p[j];
          }
          const Eigen::MatrixXd W = mixing_matrix(plan, active);
          next += prob * W * S * W.transpose();
        }
        S = next;
        exact[t] = (IJ * S).trace();
        EXPECT_LE(exact[t], std::pow(plan.rho, t) * d0 * (1 + 1e-9)) << "t=" << t;
      }
    }
    std::vector<double> mean(T + 1, 0.0), sq(T + 1, 0.0);
    for (int s = 0; s < seeds; ++s) {
      Eigen::MatrixXd X = X0;
      for (int t = 1; t <= T; ++t) {
        X = mixing_matrix(plan, active_matchings(plan, 1000 + s, t)) * X;
        const double d = consensus_distance(X);
        mean[t] += d / seeds;
        sq[t] += d * d / seeds;
      }
    }
    for (int t = 1; t <= T; ++t) {
      const double se = std::sqrt(std::max(0.0, sq[t] - mean[t] * mean[t]) / seeds);
      EXPECT_LE(mean[t], std::pow(plan.rho, t) * d0 + 4 * se) << "t=" << t;
      if (k <= 10) {
        EXPECT_NEAR(mean[t], exact[t], 4 * se) << "t=" << t;
      }
    }
    EXPECT_LT(mean[T], 0.5 * mean[1]);
  }
}

}  // namespace
}  // namespace nbsgd::gossip
