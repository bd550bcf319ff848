// The bounds every front end (train, compare, devices, predict, topology) applies to
// user input before anything is allocated or any clock runs, in one place so the
// commands agree with each other and with what the runtime supports.
//
// Why these numbers:
// - kMaxWorkers: an exchange kernel takes its source pointers by value, at most
//   comm::kMaxSources (runtime/device/comm/ops.h); every exchange is built on them.
// - kMaxDurationS: one duration the virtual clock is handed (a mini-batch, a delay,
//   a stall, a deadline, a step) is at most 1e6 s (11.6 days). The clock counts int64
//   nanoseconds (2^63 ns = 292 years), so ~9,000 steps of the longest duration still
//   fit; a run that would pass 2^62 ns is refused by the timeline (see add_clock_ns).
// - kMaxSlowdown: 1e4 (a device ten thousand times slower is a dead device).
// - kMaxBatch / kMaxInflight / kMaxMinibatchesPerStep: memory. One worker's batch
//   buffers scale with --batch, its streams' buffers with --inflight, a step's
//   record with the mini-batches it can hold.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/device/comm/ops.h"
#include "runtime/train/window.h"

namespace nbsgd::engine {

inline constexpr int kMaxWorkers = comm::kMaxSources;
inline constexpr double kMaxDurationS = 1e6;
inline constexpr double kMaxDurationMs = kMaxDurationS * 1e3;
inline constexpr double kMaxSlowdown = 1e4;
inline constexpr int kMaxBatch = 1 << 16;                       // samples per worker per step
inline constexpr int kMaxInflight = 64;                         // mini-batches queued per worker stream
inline constexpr int64_t kMaxMinibatchesPerStep = int64_t{1} << 20;  // all workers together
inline constexpr int64_t kMaxClockNs = int64_t{1} << 62;        // ~146 years

// InputError "<flag> <n>: at most 64 workers (what the exchanges support)" unless
// 1 <= n <= kMaxWorkers.
void check_workers(int64_t n, const std::string& flag);

// InputError naming `flag` (e.g. "--window") for a window no run can have: quorum:K
// with K > workers * split (more mini-batches than exist), a deadline beyond
// kMaxDurationS.
void validate_window(const WindowSpec& window, int workers, int split, const std::string& flag = "--window");

// A step must hold at most kMaxMinibatchesPerStep mini-batches: with `cap` < 0 (none)
// a deadline window lets each worker run deadline / fastest_minibatch_s of them.
// InputError naming `flag` and suggesting --cap otherwise.
void check_window_size(const WindowSpec& window, int cap, int workers, int split, double fastest_minibatch_s,
                       const std::string& flag = "--window");

// Seconds -> int64 ns for the virtual clock; InputError naming `what` for a value that
// is not finite, negative or beyond kMaxDurationS.
int64_t duration_ns(double seconds, const std::string& what);
// a + b on the clock; InputError naming `what` when the sum passes kMaxClockNs.
int64_t add_clock_ns(int64_t a, int64_t b, const std::string& what);

}  // namespace nbsgd::engine
