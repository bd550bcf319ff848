// nbsgd topology --show SPEC --workers N [--budget C_b] [--json]
//
// Shows what the gossip variants would do on a topology: the matching decomposition,
// MATCHA's activation probabilities, alpha, lambda_2 and rho, the expected mixing
// matrix, and the expected communication per step next to D-PSGD's (which uses every
// edge every step).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/apps/cli/commands.h"
#include "runtime/train/limits.h"
#include "runtime/train/gossip/matcha.h"
#include "runtime/train/gossip/mixing.h"
#include "runtime/train/gossip/topology.h"

namespace nbsgd::cli {

namespace {

using namespace nbsgd::gossip;

struct TopologyOptions {
  std::string spec;
  int workers = 0;
  double budget = 0.5;
  bool json = false;
};

nlohmann::json edges_json(const std::vector<Edge>& edges) {
  auto a = nlohmann::json::array();
  for (auto [i, j] : edges) a.push_back({i, j});
  return a;
}

nlohmann::json matrix_json(const Eigen::MatrixXd& m) {
  auto a = nlohmann::json::array();
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    auto row = nlohmann::json::array();
    for (Eigen::Index j = 0; j < m.cols(); ++j) row.push_back(m(i, j));
    a.push_back(row);
  }
  return a;
}

// Each exchanged edge has both endpoints send one model copy, so per worker the
// expected sends are 2 * edges / n; relative to D-PSGD that is edges / |E|.
nlohmann::json comm_json(const MixingPlan& plan) {
  const double edges = expected_edges_per_step(plan);
  double matchings = 0.0;
  for (double p : plan.p) matchings += p;
  const double all = static_cast<double>(plan.g.edges.size());
  return {{"expected_edges", edges},
          {"expected_active_matchings", matchings},
          {"model_sends_per_worker", 2.0 * edges / plan.g.n},
          {"relative_to_dpsgd", all > 0 ? edges / all : 0.0}};
}

nlohmann::json to_json(const TopologyOptions& o, const MixingPlan& m, const MixingPlan& d) {
  nlohmann::json j;
  j["spec"] = o.spec;
  j["n"] = m.g.n;
  j["budget"] = o.budget;
  j["max_degree"] = m.g.max_degree();
  j["edges"] = edges_json(m.g.edges);
  j["matchings"] = nlohmann::json::array();
  for (const auto& mt : m.matchings) j["matchings"].push_back(edges_json(mt));
  j["p"] = m.p;
  j["alpha"] = m.alpha;
  j["lambda2"] = m.lambda2;
  j["rho"] = m.rho;
  j["consensus_rate"] = consensus_rate(m);
  j["W"] = matrix_json(m.expected_W);
  j["comm_per_step"] = comm_json(m);
  j["dpsgd"] = {{"alpha", d.alpha},
                {"lambda2", d.lambda2},
                {"rho", d.rho},
                {"consensus_rate", consensus_rate(d)},
                {"W", matrix_json(d.expected_W)},
                {"comm_per_step", comm_json(d)}};
  return j;
}

void print_matrix(const Eigen::MatrixXd& m) {
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    std::string row;
    for (Eigen::Index j = 0; j < m.cols(); ++j) row += fmt::format(" {:7.4f}", m(i, j));
    fmt::print("  {:>3}:{}\n", i, row);
  }
}

void print_text(const TopologyOptions& o, const MixingPlan& m, const MixingPlan& d) {
  fmt::print("topology {} on {} workers: {} edges, max degree {}\n", o.spec, m.g.n,
             m.g.edges.size(), m.g.max_degree());
  fmt::print("matchings: {} (at most max degree + 1 = {}); budget C_b = {} -> sum p <= {:.4g}\n",
             m.matchings.size(), m.g.max_degree() + 1, o.budget,
             o.budget * static_cast<double>(m.matchings.size()));
  for (size_t j = 0; j < m.matchings.size(); ++j) {
    std::string es;
    for (auto [a, b] : m.matchings[j]) es += fmt::format(" {}-{}", a, b);
    fmt::print("  M{:<3} p = {:.4f}  edges:{}\n", j, m.p[j], es);
  }
  const auto cm = comm_json(m), cd = comm_json(d);
  fmt::print("MATCHA: alpha = {:.6f}  lambda2 = {:.6f}  rho = ||E[W^T W] - J|| = {:.6f}\n", m.alpha,
             m.lambda2, m.rho);
  fmt::print("D-PSGD: alpha = {:.6f}  lambda2 = {:.6f}  rho = ||W - J|| = {:.6f}"
             " (rho^2 = {:.6f} per step on the squared distance)\n",
             d.alpha, d.lambda2, d.rho, consensus_rate(d));
  fmt::print("communication per step: MATCHA {:.3f} edges ({:.3f} model sends per worker, "
             "{:.1f}% of D-PSGD), D-PSGD {:.0f} edges ({:.3f} sends per worker)\n",
             cm["expected_edges"].get<double>(), cm["model_sends_per_worker"].get<double>(),
             100.0 * cm["relative_to_dpsgd"].get<double>(), cd["expected_edges"].get<double>(),
             cd["model_sends_per_worker"].get<double>());
  fmt::print("expected mixing matrix E[W] (MATCHA):\n");
  print_matrix(m.expected_W);
}

}  // namespace

void add_topology_command(CLI::App& root, Runner& out) {
  auto opt = std::make_shared<TopologyOptions>();
  CLI::App* sub =
      root.add_subcommand("topology", "Show the gossip matchings and mixing weights of a topology");
  sub->add_option("--show", opt->spec,
                  "Topology: ring, torus, torus:RxC, complete, er:P[:SEED] or file:PATH")
      ->required();
  sub->add_option("--workers", opt->workers, "Number of workers")
      ->required()
      ->check(CLI::Range(1, engine::kMaxWorkers));
  sub->add_option("--budget", opt->budget, "MATCHA communication budget C_b in (0, 1]")
      ->capture_default_str();
  sub->add_flag("--json", opt->json, "Print JSON instead of text");
  sub->callback([opt, &out] {
    out = [opt] {
      const Graph g = parse_topology(opt->spec, opt->workers);
      const MixingPlan matcha = make_matcha_plan(g, opt->budget);
      const MixingPlan dpsgd = make_dpsgd_plan(g);
      if (opt->json) {
        fmt::print("{}\n", to_json(*opt, matcha, dpsgd).dump(2));
      } else {
        print_text(*opt, matcha, dpsgd);
      }
      return 0;
    };
  });
}

}  // namespace nbsgd::cli
