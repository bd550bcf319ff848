// The virtual clock's grid and event order, shared by every discrete-event
// simulation in training (the Timeline of timeline.h, AD-PSGD).
//
// Virtual time runs on a 1 ns grid: every duration is rounded to whole nanoseconds
// before it is added, so sums are exact, ties are real ties, and any other
// computation of the same model (a test, `nbsgd predict`) lands on the same values.
#pragma once

#include <cmath>
#include <cstdint>
#include <queue>
#include <vector>

namespace nbsgd::engine {

inline int64_t ns(double seconds) { return std::llround(seconds * 1e9); }
inline double s_of(int64_t t) { return static_cast<double>(t) * 1e-9; }
inline double quantize(double seconds) { return s_of(ns(seconds)); }
// t + d on the grid (t already on it).
inline double add_ns(double t, double d) { return s_of(ns(t) + ns(d)); }

// One simulation event. Ties: time, then the simulation's type order (lower
// first), then worker, then insertion order.
struct SimEvent {
  int64_t t = 0;  // ns
  int type = 0;
  int worker = -1;
  int64_t seq = 0;
  int64_t step = 0;  // the step (or iteration) it belongs to
  int aux = -1;      // Timeline: the window group; AD-PSGD: the partner
  bool operator>(const SimEvent& o) const {
    if (t != o.t) return t > o.t;
    if (type != o.type) return type > o.type;
    if (worker != o.worker) return worker > o.worker;
    return seq > o.seq;
  }
};
using SimQueue = std::priority_queue<SimEvent, std::vector<SimEvent>, std::greater<SimEvent>>;

}  // namespace nbsgd::engine
