// The two backends every runtime object exists on, and the two clocks a host
// backend can run under.
#pragma once

#include <string>

namespace nbsgd {

enum class Backend { Host, Cuda };
// Real: steady clock. Virtual (host backend only): each stream carries its own time,
// advanced only by modelled durations, so runs are exact and load-independent.
enum class ClockKind { Real, Virtual };

inline const char* to_string(Backend b) { return b == Backend::Cuda ? "cuda" : "host"; }
inline const char* to_string(ClockKind c) { return c == ClockKind::Virtual ? "virtual" : "real"; }

// Seconds on the process-wide steady clock (the real clock's time base).
double steady_now_s();

// True when this build has the CUDA backend compiled in.
constexpr bool cuda_built() {
#if NBSGD_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace nbsgd
