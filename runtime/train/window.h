// Step-window policies (METHOD.md, "Step-window policies"). A policy only decides
// when a step ends; the engine cancels, returns and exchanges.
#pragma once

#include <cstdint>
#include <string>

namespace nbsgd::engine {

enum class WindowKind { Sync, Fastest, Quorum, Deadline, Adaptive };

struct WindowSpec {
  WindowKind kind = WindowKind::Fastest;
  int64_t quorum_k = 0;     // quorum:K, in mini-batches
  double deadline_s = 0.0;  // deadline:MS, stored in seconds
  std::string text = "fastest";  // as written on the command line
};

// "sync" | "fastest" | "quorum:K" | "deadline:MS" | "adaptive"; InputError naming --window.
WindowSpec parse_window(const std::string& text);

// --cap: "m" (a worker's step holds at most its own m mini-batches), "none", or a
// positive integer. Returns -1 for none. `window` supplies the default when text
// is empty: m for sync and fastest, none otherwise.
int parse_cap(const std::string& text, const WindowSpec& window, int split_m);

}  // namespace nbsgd::engine
