// The run's timeline as a Chrome trace (--trace FILE.json): the JSON Object Format
// of the Trace Event Format that chrome://tracing, ui.perfetto.dev and PyTorch's
// profiler share. Times are microseconds on the run's clock (virtual or real, named
// in otherData.clock), from the run's start.
//
// Tracks (pid = process, tid = thread in the viewers):
//   pid 0 "controller": tid 0 the step windows ("window" spans, "window close"
//     instants); with per-worker windows (gossip, --window-scope neighbors) tid 1+i
//     holds worker i's.
//   pid 1+i "worker i": tid 1 its compute stream (mini-batches "forward_backward",
//     "injected:stall", "injected:throttle"), tid 2 its comm stream (the exchange
//     and the update).
// Span names are the NVTX range names (span_name(); README, "Span names").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/train/driver.h"

namespace nbsgd::engine {

// --trace-steps A:B: steps A (inclusive) to B (exclusive).
struct TraceRange {
  int64_t first = 0, last = 200;
  bool contains(int64_t step) const { return step >= first && step < last; }
};
// "A:B" with 0 <= A < B; InputError naming --trace-steps otherwise.
TraceRange parse_trace_steps(const std::string& text);

// The NVTX range name of a span. `combined`: an exchange span that holds the update
// too (the real clock sees the comm stream's work of a step as one piece).
std::string span_name(TraceSpan::Kind kind, bool gossip, bool combined = false);

class TraceWriter {
 public:
  TraceWriter(std::vector<std::string> worker_names, std::string exchange, std::string clock, TraceRange range);

  const TraceRange& range() const { return range_; }
  // A span of step span.step (must be >= 0); spans outside the range are dropped.
  void add(const TraceSpan& span, bool combined = false);
  // Step `step`'s window, open to close, with metrics' window_s in its args.
  // worker < 0: the global window; else worker i's own.
  void window(int64_t step, double open, double close, int worker = -1);
  // Free-form facts for otherData (e.g. how the spans' times were taken).
  void note(const std::string& key, const std::string& value);

  size_t events() const { return events_.size(); }
  std::string json() const;

 private:
  struct Ev {
    std::string name, cat, ph, args, cname;
    int pid = 0, tid = 0;
    double ts = 0, dur = 0;  // seconds
  };
  std::vector<std::string> workers_;
  std::string exchange_, clock_;
  TraceRange range_;
  std::vector<Ev> events_;
  std::vector<std::pair<std::string, std::string>> notes_;
  bool per_worker_windows_ = false;
};

}  // namespace nbsgd::engine
