#include "runtime/train/window.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "runtime/device/check.h"
#include "runtime/train/limits.h"

namespace nbsgd::engine {

static double parse_number(const std::string& s, const std::string& flag, const std::string& whole) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(v) || v <= 0)
    throw InputError(flag + " " + whole + ": '" + s + "' must be a positive number");
  return v;
}

WindowSpec parse_window(const std::string& text) {
  WindowSpec w;
  w.text = text;
  std::string head = text, arg;
  if (auto c = text.find(':'); c != std::string::npos) {
    head = text.substr(0, c);
    arg = text.substr(c + 1);
  }
  auto no_arg = [&] {
    if (!arg.empty()) throw InputError("--window " + text + ": '" + head + "' takes no argument");
  };
  if (head == "sync") {
    no_arg();
    w.kind = WindowKind::Sync;
  } else if (head == "fastest") {
    no_arg();
    w.kind = WindowKind::Fastest;
  } else if (head == "adaptive") {
    no_arg();
    w.kind = WindowKind::Adaptive;
  } else if (head == "quorum") {
    double k = parse_number(arg, "--window", text);
    if (k != std::floor(k)) throw InputError("--window " + text + ": K must be a whole number of mini-batches");
    if (k > static_cast<double>(kMaxMinibatchesPerStep))
      throw InputError("--window " + text + ": K must be at most " + std::to_string(kMaxMinibatchesPerStep));
    w.kind = WindowKind::Quorum;
    w.quorum_k = static_cast<int64_t>(k);
  } else if (head == "deadline") {
    w.kind = WindowKind::Deadline;
    const double ms = parse_number(arg, "--window", text);
    if (ms > kMaxDurationMs)
      throw InputError("--window " + text + ": a deadline beyond 1e9 ms (1e6 s, the virtual clock's longest "
                       "duration) is not supported");
    w.deadline_s = ms * 1e-3;
  } else {
    throw InputError("--window " + text + ": unknown policy (sync, fastest, quorum:K, deadline:MS, adaptive)");
  }
  return w;
}

int parse_cap(const std::string& text, const WindowSpec& window, int split_m) {
  if (text.empty()) {
    return (window.kind == WindowKind::Sync || window.kind == WindowKind::Fastest) ? split_m : -1;
  }
  if (text == "m") return split_m;
  if (text == "none") {
    if (window.kind == WindowKind::Sync)
      throw InputError("--cap none: the sync window waits for every worker's m mini-batches; it needs --cap m");
    return -1;
  }
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text.c_str(), &end, 10);
  if (*end != '\0' || v <= 0 || errno == ERANGE)
    throw InputError("--cap " + text + ": expected m, none or a positive integer");
  if (v > kMaxMinibatchesPerStep)
    throw InputError("--cap " + text + ": at most " + std::to_string(kMaxMinibatchesPerStep) + " mini-batches");
  return static_cast<int>(v);
}

}  // namespace nbsgd::engine
