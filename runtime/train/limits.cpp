#include "runtime/train/limits.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "runtime/device/check.h"

namespace nbsgd::engine {

void check_workers(int64_t n, const std::string& flag) {
  if (n < 1 || n > kMaxWorkers)
    throw InputError(fmt::format("{} {}: expected 1..{} workers (at most {}: what the exchanges support)", flag, n,
                                 kMaxWorkers, kMaxWorkers));
}

void validate_window(const WindowSpec& w, int workers, int split, const std::string& flag) {
  if (w.kind == WindowKind::Quorum) {
    const int64_t total = int64_t{workers} * split;
    if (w.quorum_k > total)
      throw InputError(fmt::format("{} {}: K = {} is more mini-batches than a step has ({} workers x --split {} = {})",
                                   flag, w.text, w.quorum_k, workers, split, total));
  }
  if (w.kind == WindowKind::Deadline && !(w.deadline_s <= kMaxDurationS))
    throw InputError(fmt::format("{} {}: a deadline beyond {:g} ms ({:g} s) is not supported", flag, w.text,
                                 kMaxDurationMs, kMaxDurationS));
}

void check_window_size(const WindowSpec& w, int cap, int workers, int split, double fastest_minibatch_s,
                       const std::string& flag) {
  double per_worker = cap >= 0 ? cap : split;
  if (cap < 0 && w.kind == WindowKind::Deadline && fastest_minibatch_s > 0)
    per_worker = std::max<double>(split, std::ceil(w.deadline_s / fastest_minibatch_s));
  if (per_worker * workers > static_cast<double>(kMaxMinibatchesPerStep))
    throw InputError(fmt::format("{} {}: a step could hold {:.3g} mini-batches (at most {} are supported); "
                                 "shorten it or bound it with --cap",
                                 flag, w.text, per_worker * workers, kMaxMinibatchesPerStep));
}

int64_t duration_ns(double seconds, const std::string& what) {
  if (!std::isfinite(seconds) || seconds < 0 || seconds > kMaxDurationS)
    throw InputError(fmt::format("{}: a duration of {:g} s is outside [0, {:g}] s", what, seconds, kMaxDurationS));
  return std::llround(seconds * 1e9);
}

int64_t add_clock_ns(int64_t a, int64_t b, const std::string& what) {
  if (b < 0 || a > kMaxClockNs - b)
    throw InputError(fmt::format("{}: the virtual clock would pass {:.3g} s (2^62 ns)", what, kMaxClockNs * 1e-9));
  return a + b;
}

}  // namespace nbsgd::engine
