#include "nets/data/rng.h"
#include "runtime/train/gossip/topology.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "runtime/device/check.h"

namespace nbsgd::gossip {

namespace {

using data::splitmix64;  // the project's one RNG (nets/data/rng.h)

double unit_double(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

template <class T>
bool parse_number(const std::string& s, T& out) {
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, out);
  return ec == std::errc() && ptr == end && !s.empty();
}

std::string usage_hint() {
  return "expected ring, torus, torus:RxC, complete, er:P[:SEED] or file:PATH";
}

std::string describe_components(const std::vector<std::vector<int>>& comps) {
  std::ostringstream os;
  os << comps.size() << " components";
  const size_t shown = std::min<size_t>(comps.size(), 4);
  for (size_t c = 0; c < shown; ++c) {
    os << (c == 0 ? ": {" : " {");
    const size_t m = std::min<size_t>(comps[c].size(), 8);
    for (size_t k = 0; k < m; ++k) os << (k ? "," : "") << comps[c][k];
    if (comps[c].size() > m) os << ",...";
    os << "}";
  }
  if (comps.size() > shown) os << " ...";
  return os.str();
}

void require_workers(int n, const std::string& what) {
  if (n < 1) throw InputError(what + ": need at least 1 worker, got " + std::to_string(n));
}

}  // namespace

std::vector<std::vector<int>> Graph::neighbours() const {
  std::vector<std::vector<int>> nb(static_cast<size_t>(n));
  for (auto [i, j] : edges) {
    nb[i].push_back(j);
    nb[j].push_back(i);
  }
  for (auto& v : nb) std::sort(v.begin(), v.end());
  return nb;
}

std::vector<int> Graph::degrees() const {
  std::vector<int> d(static_cast<size_t>(n), 0);
  for (auto [i, j] : edges) {
    ++d[i];
    ++d[j];
  }
  return d;
}

int Graph::max_degree() const {
  auto d = degrees();
  return d.empty() ? 0 : *std::max_element(d.begin(), d.end());
}

Graph make_graph(int n, std::vector<Edge> edges) {
  NBSGD_CHECK(n >= 1, "a graph needs at least one node");
  for (auto& e : edges) {
    NBSGD_CHECK(e.first != e.second, "self loop in graph");
    NBSGD_CHECK(e.first >= 0 && e.first < n && e.second >= 0 && e.second < n,
                "edge endpoint out of range");
    if (e.first > e.second) std::swap(e.first, e.second);
  }
  std::sort(edges.begin(), edges.end());
  edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
  return Graph{n, std::move(edges)};
}

Graph ring(int n) {
  require_workers(n, "ring");
  std::vector<Edge> e;
  for (int i = 0; i + 1 < n; ++i) e.emplace_back(i, i + 1);
  if (n > 2) e.emplace_back(0, n - 1);  // n = 2 would duplicate 0-1
  return make_graph(n, std::move(e));
}

Graph torus(int rows, int cols) {
  if (rows < 1 || cols < 1)
    throw InputError("torus: dimensions must be positive, got " + std::to_string(rows) + "x" +
                     std::to_string(cols));
  std::vector<Edge> e;
  auto id = [cols](int r, int c) { return r * cols + c; };
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      // Wrap-around neighbours; a dimension of 1 has none, 2 has the same one twice
      // (merged by make_graph).
      if (cols > 1) e.emplace_back(id(r, c), id(r, (c + 1) % cols));
      if (rows > 1) e.emplace_back(id(r, c), id((r + 1) % rows, c));
    }
  return make_graph(rows * cols, std::move(e));
}

Graph complete(int n) {
  require_workers(n, "complete");
  std::vector<Edge> e;
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) e.emplace_back(i, j);
  return make_graph(n, std::move(e));
}

Graph erdos_renyi(int n, double p, uint64_t seed) {
  require_workers(n, "er");
  if (!(p >= 0.0 && p <= 1.0))
    throw InputError(fmt::format("er: edge probability must be in [0, 1], got {}", p));
  uint64_t state = seed;
  std::vector<Edge> e;
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j)
      if (unit_double(splitmix64(state)) < p) e.emplace_back(i, j);
  return make_graph(n, std::move(e));
}

namespace {

Graph parse_edge_stream(std::istream& in, int n, const std::string& source) {
  // Edges are merged as they are read, so a file repeating one line forever needs
  // no more memory than the n(n-1)/2 distinct edges.
  std::set<Edge> e;
  std::string raw;
  for (int64_t lineno = 1; std::getline(in, raw); ++lineno) {
    const std::string where = source + ":" + std::to_string(lineno) + ": ";
    std::string line = trim(raw.substr(0, raw.find('#')));
    if (line.empty()) continue;
    std::istringstream ls(line);
    std::string a, b, extra;
    ls >> a >> b >> extra;
    int i = 0, j = 0;
    if (b.empty() || !extra.empty() || !parse_number(a, i) || !parse_number(b, j)) {
      if (line.size() > 60) line = line.substr(0, 60) + "...";
      for (char& c : line)
        if (static_cast<unsigned char>(c) < 0x20) c = '?';
      throw InputError(where + "expected two worker indices 'i j', got '" + line + "'");
    }
    for (int v : {i, j})
      if (v < 0 || v >= n)
        throw InputError(where + "worker " + std::to_string(v) + " out of range [0, " +
                         std::to_string(n) + ")");
    if (i == j) throw InputError(where + "self loop " + std::to_string(i) + " " + std::to_string(j));
    e.emplace(std::min(i, j), std::max(i, j));
  }
  if (in.bad()) throw InputError("error reading topology file " + source);
  return make_graph(n, std::vector<Edge>(e.begin(), e.end()));
}

}  // namespace

Graph parse_edge_list(const std::string& text, int n, const std::string& source) {
  require_workers(n, source);
  std::istringstream in(text);
  return parse_edge_stream(in, n, source);
}

Graph read_edge_list(const std::string& path, int n) {
  require_workers(n, path);
  std::ifstream in(path);
  if (!in) throw InputError("cannot open topology file " + path);
  return parse_edge_stream(in, n, path);
}

std::vector<std::vector<int>> components(const Graph& g) {
  std::vector<int> parent(static_cast<size_t>(g.n));
  std::iota(parent.begin(), parent.end(), 0);
  auto find = [&](int x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  for (auto [i, j] : g.edges) {
    int a = find(i), b = find(j);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);  // root = smallest member
  }
  std::vector<std::vector<int>> by_root(static_cast<size_t>(g.n));
  for (int v = 0; v < g.n; ++v) by_root[find(v)].push_back(v);
  std::vector<std::vector<int>> out;
  for (auto& c : by_root)
    if (!c.empty()) out.push_back(std::move(c));
  return out;
}

bool is_connected(const Graph& g) { return components(g).size() <= 1; }

Graph parse_topology(const std::string& spec, int n) {
  const std::string what = "topology " + spec;
  if (n < 1) throw InputError(what + ": need at least 1 worker, got " + std::to_string(n));
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  const bool has_arg = colon != std::string::npos;

  Graph g;
  if (kind == "ring" && !has_arg) {
    g = ring(n);
  } else if (kind == "complete" && !has_arg) {
    g = complete(n);
  } else if (kind == "torus") {
    int rows = 0, cols = 0;
    if (!has_arg) {
      // Most nearly square factorisation keeps the diameter small.
      rows = static_cast<int>(std::sqrt(static_cast<double>(n)));
      while (n % rows != 0) --rows;
      cols = n / rows;
    } else {
      const size_t x = arg.find('x');
      if (x == std::string::npos || !parse_number(arg.substr(0, x), rows) ||
          !parse_number(arg.substr(x + 1), cols) || rows < 1 || cols < 1)
        throw InputError(what + ": expected torus:RxC with positive integers R and C");
      if (static_cast<long long>(rows) * cols != n)
        throw InputError(what + ": " + std::to_string(rows) + "x" + std::to_string(cols) + " = " +
                         std::to_string(static_cast<long long>(rows) * cols) +
                         " does not match " + std::to_string(n) + " workers");
    }
    g = torus(rows, cols);
  } else if (kind == "er" && has_arg) {
    const size_t c2 = arg.find(':');
    const std::string ps = arg.substr(0, c2);
    double p = 0.0;
    uint64_t seed = 1;
    if (!parse_number(ps, p) || !(p > 0.0 && p <= 1.0))
      throw InputError(what + ": edge probability must be a number in (0, 1], got '" + ps + "'");
    if (c2 != std::string::npos && !parse_number(arg.substr(c2 + 1), seed))
      throw InputError(what + ": seed must be a non-negative integer, got '" +
                       arg.substr(c2 + 1) + "'");
    g = erdos_renyi(n, p, seed);
  } else if (kind == "file" && has_arg && !arg.empty()) {
    g = read_edge_list(arg, n);
  } else {
    throw InputError("unknown topology '" + spec + "' (" + usage_hint() + ")");
  }

  auto comps = components(g);
  if (comps.size() > 1)
    throw InputError(what + " on " + std::to_string(n) + " workers is not connected: " +
                     describe_components(comps));
  return g;
}

namespace {

// Colour classes -> matchings: drop empty classes, and check (not assume) that every
// class is a matching and every edge has a colour.
std::vector<Matching> colour_classes(const Graph& g, const std::vector<int>& edge_colour,
                                     int ncol) {
  std::vector<Matching> by_colour(static_cast<size_t>(ncol));
  for (size_t e = 0; e < g.edges.size(); ++e) {
    NBSGD_CHECK(edge_colour[e] >= 0 && edge_colour[e] < ncol, "edge colouring left an edge out");
    by_colour[edge_colour[e]].push_back(g.edges[e]);
  }
  std::vector<Matching> out;
  for (auto& m : by_colour) {
    if (m.empty()) continue;
    std::vector<char> used(static_cast<size_t>(g.n), 0);
    for (auto [i, j] : m) {
      NBSGD_CHECK(!used[i] && !used[j], "edge colouring is not proper");
      used[i] = used[j] = 1;
    }
    out.push_back(std::move(m));
  }
  return out;
}

// First-fit in edge order. No Delta + 1 guarantee (up to 2 Delta - 1), but it often
// needs fewer colours than Misra-Gries, e.g. Delta on even rings.
std::vector<Matching> greedy_matchings(const Graph& g) {
  const int limit = std::max(1, 2 * g.max_degree() - 1);
  std::vector<std::vector<char>> used(static_cast<size_t>(g.n),
                                      std::vector<char>(static_cast<size_t>(limit), 0));
  std::vector<int> colour(g.edges.size(), -1);
  int ncol = 0;
  for (size_t e = 0; e < g.edges.size(); ++e) {
    auto [i, j] = g.edges[e];
    int c = 0;
    while (used[i][c] || used[j][c]) ++c;
    used[i][c] = used[j][c] = 1;
    colour[e] = c;
    ncol = std::max(ncol, c + 1);
  }
  return colour_classes(g, colour, ncol);
}

// Misra & Gries, "A constructive proof of Vizing's theorem" (1992). Colours are
// 0..Delta, so at most Delta + 1 matchings.
// colour(u, v) lives in a dense n x n table: n is a number of workers, not of params.
std::vector<Matching> misra_gries_matchings(const Graph& g) {
  const int n = g.n;
  const int ncol = g.max_degree() + 1;
  const auto nb = g.neighbours();
  std::vector<int> col(static_cast<size_t>(n) * n, -1);
  // uses[x * ncol + c]: how many edges at x have colour c, so "is c free at x" is one
  // look-up. (Scanning x's neighbours instead made the fan search O(n^3) per edge: the
  // fuzzer found complete:64 taking seconds.) A count, not a flag, because a path
  // inversion passes through states where a colour is used twice at a vertex.
  std::vector<int> uses(static_cast<size_t>(n) * ncol, 0);
  auto C = [&](int a, int b) -> int { return col[static_cast<size_t>(a) * n + b]; };
  auto U = [&](int x, int c) -> int& { return uses[static_cast<size_t>(x) * ncol + c]; };
  auto set = [&](int a, int b, int c) {
    const int old = C(a, b);
    if (old >= 0) --U(a, old), --U(b, old);
    col[static_cast<size_t>(a) * n + b] = col[static_cast<size_t>(b) * n + a] = c;
    ++U(a, c), ++U(b, c);
  };
  auto is_free = [&](int x, int c) { return U(x, c) == 0; };
  auto a_free = [&](int x) {
    for (int c = 0; c < ncol; ++c)
      if (is_free(x, c)) return c;
    NBSGD_FAIL("Misra-Gries: no free colour at a vertex");
  };

  for (auto [u, v] : g.edges) {
    // Maximal fan of u starting at v: each next edge's colour is free on the previous
    // fan vertex.
    std::vector<int> fan{v};
    std::vector<char> in_fan(static_cast<size_t>(n), 0);
    in_fan[v] = 1;
    for (bool grew = true; grew;) {
      grew = false;
      for (int z : nb[u]) {
        if (in_fan[z] || C(u, z) < 0 || !is_free(fan.back(), C(u, z))) continue;
        fan.push_back(z);
        in_fan[z] = 1;
        grew = true;
        break;
      }
    }
    const int c = a_free(u);
    const int d = a_free(fan.back());

    // Invert the cd-path from u. c is free on u, so the path leaves u on a d edge;
    // afterwards d is free on u.
    if (c != d) {
      std::vector<Edge> path;
      int prev = -1, cur = u, want = d;
      for (;;) {
        int next = -1;
        for (int y : nb[cur])
          if (y != prev && C(cur, y) == want) next = y;
        if (next < 0) break;
        path.emplace_back(cur, next);
        prev = cur;
        cur = next;
        want = want == c ? d : c;
      }
      for (auto [a, b] : path) set(a, b, C(a, b) == c ? d : c);
    }

    // First fan vertex w with d free such that fan[0..w] is still a fan; rotate it.
    int w = -1;
    for (size_t i = 0; i < fan.size(); ++i) {
      if (i > 0) {
        const int ci = C(u, fan[i]);
        NBSGD_CHECK(ci >= 0 && is_free(fan[i - 1], ci), "Misra-Gries: fan broken by inversion");
      }
      if (is_free(fan[i], d)) {
        w = static_cast<int>(i);
        break;
      }
    }
    NBSGD_CHECK(w >= 0, "Misra-Gries: no fan vertex with the free colour");
    for (int i = 0; i < w; ++i) set(u, fan[i], C(u, fan[i + 1]));
    set(u, fan[w], d);
  }

  std::vector<int> colour;
  for (auto [i, j] : g.edges) colour.push_back(C(i, j));
  return colour_classes(g, colour, ncol);
}

}  // namespace

// Fewer matchings means fewer sequential exchange rounds when all are active, so take
// the better of the two colourings; Misra-Gries keeps the Delta + 1 bound.
std::vector<Matching> decompose_matchings(const Graph& g) {
  auto mg = misra_gries_matchings(g);
  auto greedy = greedy_matchings(g);
  return greedy.size() < mg.size() ? greedy : mg;
}

}  // namespace nbsgd::gossip
