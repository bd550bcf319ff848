#include "runtime/train/trace.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "runtime/device/check.h"
#include "runtime/train/exchange.h"

namespace nbsgd::engine {

TraceRange parse_trace_steps(const std::string& text) {
  const auto colon = text.find(':');
  auto bad = [&] {
    return InputError("--trace-steps " + text + ": expected A:B, the steps from A up to (not including) B, 0 <= A < B");
  };
  if (colon == std::string::npos) throw bad();
  TraceRange r;
  try {
    size_t used = 0;
    const std::string a = text.substr(0, colon), b = text.substr(colon + 1);
    if (a.empty() || b.empty() || a[0] == '-' || b[0] == '-') throw bad();
    r.first = std::stoll(a, &used);
    if (used != a.size()) throw bad();
    r.last = std::stoll(b, &used);
    if (used != b.size()) throw bad();
  } catch (const std::logic_error&) {
    throw bad();
  }
  if (!(r.first >= 0 && r.first < r.last)) throw bad();
  return r;
}

std::string span_name(TraceSpan::Kind kind, bool gossip, bool combined) {
  switch (kind) {
    case TraceSpan::Kind::MiniBatch: return "forward_backward";
    case TraceSpan::Kind::Stall: return "injected:stall";
    case TraceSpan::Kind::Throttle: return "injected:throttle";
    case TraceSpan::Kind::Exchange:
      if (gossip) return "gossip exchange";
      return combined ? "exchange+update" : "all-reduce";
    case TraceSpan::Kind::Update: return "update";
  }
  return "?";
}

namespace {
const char* fate_name(TraceSpan::Fate f) {
  switch (f) {
    case TraceSpan::Fate::Counted: return "counted";
    case TraceSpan::Fate::Wasted: return "wasted";
    case TraceSpan::Fate::Skipped: return "skipped";
  }
  return "?";
}
// chrome://tracing's reserved colour names (Perfetto colours by name instead).
const char* fate_colour(TraceSpan::Fate f) {
  switch (f) {
    case TraceSpan::Fate::Counted: return "good";
    case TraceSpan::Fate::Wasted: return "terrible";
    case TraceSpan::Fate::Skipped: return "grey";
  }
  return "grey";
}
}  // namespace

TraceWriter::TraceWriter(std::vector<std::string> worker_names, std::string exchange, std::string clock,
                         TraceRange range)
    : workers_(std::move(worker_names)), exchange_(std::move(exchange)), clock_(std::move(clock)), range_(range) {}

void TraceWriter::add(const TraceSpan& sp, bool combined) {
  NBSGD_CHECK(sp.step >= 0, "trace: a span without its step");
  if (!range_.contains(sp.step)) return;
  Ev e;
  e.name = span_name(sp.kind, is_gossip_exchange(exchange_), combined);
  e.ph = "X";
  e.pid = 1 + sp.worker;
  e.ts = sp.start;
  e.dur = std::max(0.0, sp.end - sp.start);
  switch (sp.kind) {
    case TraceSpan::Kind::MiniBatch:
      e.tid = 1;
      e.cat = std::string("minibatch,") + fate_name(sp.fate);
      e.cname = fate_colour(sp.fate);
      e.args = fmt::format(R"({{"step":{},"size":{},"fate":"{}"}})", sp.step, sp.size, fate_name(sp.fate));
      break;
    case TraceSpan::Kind::Stall:
    case TraceSpan::Kind::Throttle:
      e.tid = 1;
      e.cat = "injected";
      e.cname = "bad";
      e.args = fmt::format(R"({{"step":{}}})", sp.step);
      break;
    case TraceSpan::Kind::Exchange:
    case TraceSpan::Kind::Update:
      e.tid = 2;
      e.cat = sp.kind == TraceSpan::Kind::Exchange ? "exchange" : "update";
      e.args = fmt::format(R"({{"step":{}}})", sp.step);
      break;
  }
  events_.push_back(std::move(e));
}

void TraceWriter::window(int64_t step, double open, double close, int worker) {
  if (!range_.contains(step)) return;
  if (worker >= 0) per_worker_windows_ = true;
  const int tid = worker < 0 ? 0 : 1 + worker;
  const std::string args = worker < 0 ? fmt::format(R"({{"step":{},"window_s":{:.9g}}})", step, close - open)
                                      : fmt::format(R"({{"step":{},"worker":{},"window_s":{:.9g}}})", step, worker,
                                                    close - open);
  events_.push_back({"window", "window", "X", args, "", 0, tid, open, std::max(0.0, close - open)});
  events_.push_back({"window close", "window", "i", args, "", 0, tid, close, 0});
}

void TraceWriter::note(const std::string& key, const std::string& value) { notes_.emplace_back(key, value); }

std::string TraceWriter::json() const {
  using nlohmann::json;
  std::vector<std::string> lines;
  auto meta = [&](const char* what, int pid, int tid, const json& args) {
    lines.push_back(json{{"name", what}, {"ph", "M"}, {"pid", pid}, {"tid", tid}, {"args", args}}.dump());
  };
  meta("process_name", 0, 0, {{"name", "controller"}});
  meta("process_sort_index", 0, 0, {{"sort_index", 0}});
  meta("thread_name", 0, 0, {{"name", "step windows"}});
  for (size_t i = 0; i < workers_.size(); ++i) {
    const int pid = 1 + static_cast<int>(i);
    meta("process_name", pid, 0, {{"name", workers_[i]}});
    meta("process_sort_index", pid, 0, {{"sort_index", pid}});
    meta("thread_name", pid, 1, {{"name", "compute stream"}});
    meta("thread_name", pid, 2, {{"name", "comm stream"}});
    if (per_worker_windows_) meta("thread_name", 0, pid, {{"name", fmt::format("worker {} windows", i)}});
  }
  // In time order per track, so a reader (and the checker) sees each track's order.
  std::vector<const Ev*> order;
  for (const Ev& e : events_) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const Ev* a, const Ev* b) {
    if (a->pid != b->pid) return a->pid < b->pid;
    if (a->tid != b->tid) return a->tid < b->tid;
    return a->ts < b->ts;
  });
  for (const Ev* e : order) {
    // ts and dur in microseconds; %.3f keeps nanoseconds.
    std::string out = fmt::format(R"({{"name":"{}","cat":"{}","ph":"{}","pid":{},"tid":{},"ts":{:.3f})", e->name,
                                  e->cat, e->ph, e->pid, e->tid, e->ts * 1e6);
    if (e->ph == "X") out += fmt::format(R"(,"dur":{:.3f})", e->dur * 1e6);
    if (e->ph == "i") out += R"(,"s":"t")";
    if (!e->cname.empty()) out += fmt::format(R"(,"cname":"{}")", e->cname);
    if (!e->args.empty()) out += ",\"args\":" + e->args;
    out += "}";
    lines.push_back(std::move(out));
  }
  json other{{"clock", clock_},
             {"exchange", exchange_},
             {"time_unit", "microseconds on the " + clock_ + " clock, from the run's start"},
             {"steps", fmt::format("{}:{}", range_.first, range_.last)}};
  for (const auto& [k, v] : notes_) other[k] = v;
  std::string out = "{\"traceEvents\":[\n";
  for (size_t i = 0; i < lines.size(); ++i) out += lines[i] + (i + 1 < lines.size() ? ",\n" : "\n");
  out += "],\"displayTimeUnit\":\"ms\",\"otherData\":" + other.dump() + "}\n";
  return out;
}

}  // namespace nbsgd::engine
