// Base communication graphs for the gossip variants (D-PSGD, MATCHA).
//
// A Graph is an undirected simple graph on workers 0..n-1. Edges are stored once,
// as (i, j) with i < j, sorted and unique, so two graphs built the same way compare
// equal and every worker iterates its neighbours in the same order.
//
// Random graphs use splitmix64 directly (never std:: distributions, whose output is
// implementation-defined), so `er:0.5:7` is the same graph on every machine.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nbsgd::gossip {

using Edge = std::pair<int, int>;
using Matching = std::vector<Edge>;

struct Graph {
  int n = 0;
  std::vector<Edge> edges;  // i < j, sorted, unique

  // neighbours()[i]: the workers adjacent to i, ascending.
  std::vector<std::vector<int>> neighbours() const;
  std::vector<int> degrees() const;
  int max_degree() const;

  friend bool operator==(const Graph&, const Graph&) = default;
};

// Normalises (orders each pair, sorts, drops duplicates) and validates: NBSGD_CHECK on
// self loops and out-of-range nodes (builders and parsers report those as InputErrors
// before they get here).
Graph make_graph(int n, std::vector<Edge> edges);

Graph ring(int n);                 // n = 1: no edges; n = 2: one edge
Graph torus(int rows, int cols);   // 2-D torus with wrap-around, rows * cols workers
Graph complete(int n);
Graph erdos_renyi(int n, double p, uint64_t seed);  // each edge independently with prob p

// One "i j" pair per line; `#` starts a comment; blank lines are skipped. Errors are
// InputErrors naming path:line. Duplicate edges (in either order) are merged.
Graph read_edge_list(const std::string& path, int n);
// The same from text in memory; `source` names it in messages (fuzz target, tests).
Graph parse_edge_list(const std::string& text, int n, const std::string& source);

// Connected components, each ascending, ordered by their smallest worker.
std::vector<std::vector<int>> components(const Graph& g);
bool is_connected(const Graph& g);

// Parses a topology spec for n workers and refuses graphs that are not connected:
//   ring | torus | torus:RxC | complete | er:P[:SEED] | file:PATH
// `torus` alone picks the most nearly square R x C = n (a prime n gives a ring).
// `er` without a seed uses seed 1.
Graph parse_topology(const std::string& spec, int n);

// Proper edge colouring into disjoint matchings covering every edge: the fewer-colour
// result of Misra-Gries (at most max_degree + 1, Vizing's bound) and first-fit greedy
// (which hits max_degree on even rings where Misra-Gries may not). Empty colours are
// dropped; edges inside a matching ascend. Deterministic (depends only on the graph).
std::vector<Matching> decompose_matchings(const Graph& g);

}  // namespace nbsgd::gossip
