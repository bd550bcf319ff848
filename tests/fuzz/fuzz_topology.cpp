// Topology files and specs (runtime/train/gossip/topology.cpp). Byte 0 picks the
// worker count (1..64), byte 1 whether the rest is an edge-list file or a spec
// (file: specs are skipped: they would read arbitrary paths). Every accepted graph is
// decomposed into matchings, which must be proper and cover every edge exactly once.
// Only InputError may come out.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "runtime/device/check.h"
#include "runtime/train/gossip/topology.h"

namespace g = nbsgd::gossip;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int n = 1 + data[0] % 64;
  const std::string text(reinterpret_cast<const char*>(data + 2), size - 2);
  g::Graph graph;
  try {
    if (data[1] & 1) {
      if (text.rfind("file:", 0) == 0) return 0;
      graph = g::parse_topology(text, n);
    } else {
      graph = g::parse_edge_list(text, n, "fuzz.edges");
    }
  } catch (const nbsgd::InputError&) {
    return 0;
  }
  if (graph.n != n) std::abort();
  (void)g::components(graph);
  std::set<g::Edge> covered;
  for (const g::Matching& m : g::decompose_matchings(graph)) {
    std::set<int> used;
    for (const g::Edge& e : m) {
      if (!used.insert(e.first).second || !used.insert(e.second).second) std::abort();
      if (!covered.insert(e).second) std::abort();
    }
  }
  if (covered != std::set<g::Edge>(graph.edges.begin(), graph.edges.end())) std::abort();
  return 0;
}
