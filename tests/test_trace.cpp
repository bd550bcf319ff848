// --trace: the Chrome trace of a run, checked against the run's own metrics.jsonl.
//
// The checker (check_trace) is the contract of the trace:
//   - every span ("X") has a start (ts) and a duration (dur >= 0), every instant a ts;
//   - spans on one track (pid, tid) do not overlap;
//   - every counted mini-batch of metrics.jsonl is in the trace: per step and
//     worker as many counted "forward_backward" spans as `finished`, their sizes
//     summing to the step's `samples`, and no counted span metrics does not have;
//   - each step's window: its "window close" instant ends its "window" span, whose
//     length is metrics' window_s.
// It runs on both clocks, ring and gossip, blocking and not. The virtual clock's
// spans come from the timeline (filled by the virtual driver): until they do, the
// virtual cases fail on the missing mini-batches, on purpose (the trace would be
// empty of what it is for).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "support/test_support.h"

namespace nbsgd::test {
namespace {

using nlohmann::json;

std::vector<json> read_lines(const std::string& path) {
  std::vector<json> v;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) v.push_back(json::parse(line));
  return v;
}

// Problems found, one line each ("" when the trace is right).
// windows: check the step windows; samples: check the counted spans' sizes against
// `samples` (AD-PSGD counts a round's samples when they are averaged, its
// mini-batches in the round they began).
std::string check_trace(const json& trace, const std::vector<json>& metrics, bool windows = true, bool samples = true) {
  std::ostringstream bad;
  if (!trace.contains("traceEvents") || !trace["traceEvents"].is_array()) return "no traceEvents array\n";
  const auto& ev = trace["traceEvents"];
  // Steps the trace holds.
  int64_t first = 0, last = 1 << 30;
  if (trace.contains("otherData") && trace["otherData"].contains("steps")) {
    const std::string st = trace["otherData"]["steps"];
    first = std::stoll(st.substr(0, st.find(':')));
    last = std::stoll(st.substr(st.find(':') + 1));
  }
  std::map<std::pair<int, int>, std::vector<std::pair<double, double>>> tracks;
  std::map<std::pair<int64_t, int>, std::pair<int, int64_t>> counted;  // (step, worker) -> (count, samples)
  std::map<int64_t, std::vector<std::pair<double, double>>> windows_of;  // step -> (ts, dur)
  std::map<int64_t, std::vector<double>> closes;
  for (const auto& e : ev) {
    if (!e.contains("ph")) {
      bad << "an event without ph\n";
      continue;
    }
    const std::string ph = e["ph"];
    if (ph == "M") continue;
    if (!e.contains("ts") || !e["ts"].is_number()) {
      bad << "event " << e.value("name", "?") << " has no ts\n";
      continue;
    }
    const double ts = e["ts"];
    const int pid = e.value("pid", -1), tid = e.value("tid", -1);
    const json args = e.value("args", json::object());
    if (ph == "X") {
      if (!e.contains("dur") || !e["dur"].is_number() || e["dur"].get<double>() < 0) {
        bad << "span " << e.value("name", "?") << " at " << ts << " has no duration\n";
        continue;
      }
      const double dur = e["dur"];
      tracks[{pid, tid}].push_back({ts, dur});
      if (e["name"] == "forward_backward" && args.value("fate", "") == "counted") {
        auto& c = counted[{args.at("step").get<int64_t>(), pid - 1}];
        ++c.first;
        c.second += args.at("size").get<int64_t>();
      }
      if (e["name"] == "window") windows_of[args.at("step").get<int64_t>()].push_back({ts, dur});
    } else if (ph == "i" || ph == "I") {
      if (e["name"] == "window close") closes[args.at("step").get<int64_t>()].push_back(ts);
    } else {
      bad << "unexpected phase " << ph << "\n";
    }
  }
  // Rounded to nanoseconds (3 decimals of a microsecond): allow 2 ns.
  const double eps = 0.002;
  for (auto& [track, spans] : tracks) {
    std::sort(spans.begin(), spans.end());
    int shown = 0;
    for (size_t i = 1; i < spans.size() && shown < 5; ++i)
      if (spans[i].first + eps < spans[i - 1].first + spans[i - 1].second && ++shown)
        bad << "track pid " << track.first << " tid " << track.second << ": span at " << spans[i].first
            << " us overlaps the one at " << spans[i - 1].first << " us (ends " << spans[i - 1].first + spans[i - 1].second
            << ")\n";
  }
  std::set<std::pair<int64_t, int>> seen;
  for (const auto& m : metrics) {
    const int64_t step = m["step"];
    if (step < first || step >= last) continue;
    const bool samples_ = samples;
    int64_t samples = 0;
    for (size_t w = 0; w < m["finished"].size(); ++w) {
      const auto it = counted.find({step, int(w)});
      const int k = it == counted.end() ? 0 : it->second.first;
      if (it != counted.end()) samples += it->second.second;
      seen.insert({step, int(w)});
      if (k != m["finished"][w].get<int>())
        bad << "step " << step << " worker " << w << ": " << k << " counted mini-batch span(s), metrics says "
            << m["finished"][w] << "\n";
    }
    if (samples_ && samples != m["samples"].get<int64_t>())
      bad << "step " << step << ": counted spans hold " << samples << " samples, metrics says " << m["samples"] << "\n";
    if (!windows) continue;
    const double want = m["window_s"].get<double>() * 1e6;
    const auto& wins = windows_of[step];
    const auto& cl = closes[step];
    if (wins.empty() || cl.size() != wins.size()) {
      bad << "step " << step << ": " << wins.size() << " window span(s), " << cl.size() << " close instant(s)\n";
      continue;
    }
    // One global window, or one per worker (then the longest is the step's).
    double longest = 0;
    for (const auto& [ts, dur] : wins) {
      longest = std::max(longest, dur);
      bool closed = false;
      for (double c : cl) closed = closed || std::abs(c - (ts + dur)) <= eps;
      if (!closed) bad << "step " << step << ": no close instant at the window's end " << ts + dur << " us\n";
    }
    if (std::abs(longest - want) > eps + 1e-9 * want)
      bad << "step " << step << ": the window lasts " << longest << " us, metrics' window_s is " << want << " us\n";
  }
  for (const auto& [key, c] : counted)
    if (key.first >= first && key.first < last && !seen.count(key))
      bad << "step " << key.first << " worker " << key.second << ": counted spans metrics.jsonl does not have\n";
  return bad.str();
}

struct Traced {
  json trace;
  std::vector<json> metrics;
  std::string output;
};

// flags: besides the common ones (add --slowdown 1,1,2,4 unless `profile`).
Traced run_traced(const std::string& flags, bool profile = false) {
  const std::string dir = make_temp_dir("trace");
  CommandResult r = run_nbsgd("train --host-workers 4 --net mlp --train-limit 2048 --test-limit 128 --batch 32 "
                              "--split 4 --seed 5 --log-every 1000 --out " +
                              dir + " --trace " + dir + "/trace.json " + (profile ? "" : "--slowdown 1,1,2,4 ") + flags);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  Traced t;
  t.output = r.output;
  std::ifstream f(dir + "/trace.json");
  if (!f) {
    ADD_FAILURE() << "no trace written\n" << r.output;
    return t;
  }
  t.trace = json::parse(f);
  t.metrics = read_lines(dir + "/metrics.jsonl");
  return t;
}

// Kinds of spans a trace holds, by name.
std::map<std::string, int> names(const json& trace) {
  std::map<std::string, int> n;
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "X") ++n[e["name"].get<std::string>()];
  return n;
}

void expect_valid(const std::string& flags, bool adpsgd = false) {
  Traced t = run_traced(flags);
  ASSERT_FALSE(t.metrics.empty());
  EXPECT_EQ(check_trace(t.trace, t.metrics, !adpsgd, !adpsgd), "") << flags;
  const auto n = names(t.trace);
  EXPECT_GT(n.count("forward_backward") ? n.at("forward_backward") : 0, 0) << flags;
  // The summary names the file and its size.
  EXPECT_NE(t.output.find("trace"), std::string::npos);
  EXPECT_NE(t.output.find("events"), std::string::npos) << t.output;
}

TEST(TraceReal, RingFastest) { expect_valid("--clock real --exchange ring --window fastest --steps 8"); }
TEST(TraceReal, RingSync) { expect_valid("--clock real --exchange ring --window sync --steps 6"); }
TEST(TraceReal, GossipFastest) { expect_valid("--clock real --exchange dpsgd --window fastest --steps 8"); }
TEST(TraceReal, GossipSync) { expect_valid("--clock real --exchange matcha --window sync --steps 6"); }
// The virtual clock's spans: filled by the virtual driver (see the file's comment).
TEST(TraceVirtual, RingFastest) { expect_valid("--clock virtual --exchange ring --window fastest --steps 8"); }
TEST(TraceVirtual, RingSync) { expect_valid("--clock virtual --exchange ring --window sync --steps 6"); }
TEST(TraceVirtual, GossipFastest) { expect_valid("--clock virtual --exchange dpsgd --window fastest --steps 8"); }
TEST(TraceVirtual, GossipNeighbors) {
  expect_valid("--clock virtual --exchange dpsgd --window fastest --window-scope neighbors --steps 8");
}
// AD-PSGD has no windows (window_s is 0): mini-batches, averages and updates only.
// Its rounds are numbered 0, 1, 2, ... in metrics.jsonl (they once repeated 0).
TEST(TraceVirtual, Adpsgd) {
  expect_valid("--clock virtual --exchange adpsgd --steps 6", true);
  Traced t = run_traced("--clock virtual --exchange adpsgd --steps 4");
  ASSERT_EQ(t.metrics.size(), 4u);
  for (size_t i = 0; i < t.metrics.size(); ++i) EXPECT_EQ(t.metrics[i]["step"], int(i));
  const auto n = names(t.trace);
  EXPECT_GT(n.count("gossip exchange") ? n.at("gossip exchange") : 0, 0);
  EXPECT_GT(n.count("update") ? n.at("update") : 0, 0);
}

// Injected stalls and throttles are spans of their own, named as the NVTX ranges.
TEST(TraceReal, InjectedDelaysAreSpans) {
  const std::string dir = make_temp_dir("trace-profile");
  {
    std::ofstream p(dir + "/stall.toml");
    p << "name = \"stall\"\nseed = 1\n[device.default]\nstall = { probability = 0.5, distribution = \"constant\", "
         "value_ms = 3 }\n[device.3]\nslowdown = 2.0\n";
  }
  Traced t = run_traced("--clock real --window fastest --steps 8 --profile " + dir + "/stall.toml", true);
  EXPECT_EQ(check_trace(t.trace, t.metrics), "");
  const auto n = names(t.trace);
  EXPECT_GT(n.count("injected:stall") ? n.at("injected:stall") : 0, 0);
  EXPECT_GT(n.count("injected:throttle") ? n.at("injected:throttle") : 0, 0);
  EXPECT_GT(n.count("exchange+update") ? n.at("exchange+update") : 0, 0);
}

// --trace-steps bounds the trace; the checker then looks at those steps only.
TEST(TraceReal, StepsBoundTheTrace) {
  Traced t = run_traced("--clock real --window fastest --steps 8 --trace-steps 2:5");
  EXPECT_EQ(check_trace(t.trace, t.metrics), "");
  std::set<int64_t> steps;
  for (const auto& e : t.trace["traceEvents"])
    if (e["ph"] == "X" && e["args"].contains("step")) steps.insert(e["args"]["step"].get<int64_t>());
  EXPECT_EQ(steps, (std::set<int64_t>{2, 3, 4}));
  EXPECT_EQ(t.trace["otherData"]["clock"], "real");
}

// The checker itself finds what it is meant to find.
TEST(TraceChecker, FindsOverlapMissingSpansAndWrongWindows) {
  Traced t = run_traced("--clock real --window fastest --steps 4");
  ASSERT_EQ(check_trace(t.trace, t.metrics), "");
  json overlap = t.trace, missing = t.trace, window = t.trace, nodur = t.trace;
  bool o = false, m = false, w = false;
  for (auto& e : overlap["traceEvents"])
    if (!o && e["ph"] == "X" && e["name"] == "forward_backward" && e["dur"].get<double>() > 1) {
      e["dur"] = e["dur"].get<double>() * 1e6;  // runs into the next span of its track
      o = true;
    }
  auto& me = missing["traceEvents"];
  for (size_t i = 0; i < me.size(); ++i)
    if (!m && me[i]["name"] == "forward_backward" && me[i]["args"]["fate"] == "counted") {
      me.erase(i);
      m = true;
    }
  for (auto& e : window["traceEvents"])
    if (!w && e["name"] == "window close") {
      e["ts"] = e["ts"].get<double>() + 5;
      w = true;
    }
  for (auto& e : nodur["traceEvents"])
    if (e["ph"] == "X") {
      e.erase("dur");
      break;
    }
  ASSERT_TRUE(o && m && w);
  EXPECT_NE(check_trace(overlap, t.metrics).find("overlaps"), std::string::npos);
  EXPECT_NE(check_trace(missing, t.metrics).find("counted mini-batch span"), std::string::npos);
  EXPECT_NE(check_trace(window, t.metrics).find("no close instant"), std::string::npos);
  EXPECT_NE(check_trace(nodur, t.metrics).find("no duration"), std::string::npos);
}

TEST(TraceCli, BadTraceStepsNameTheFlag) {
  for (const char* v : {"5:2", "x", "3", "-1:4", "1:2:3"}) {
    CommandResult r = run_nbsgd(std::string("train --host-workers 2 --net mlp --steps 1 --quiet --trace-steps ") + v);
    EXPECT_NE(r.exit_code, 0) << v;
    EXPECT_NE(r.output.find("--trace-steps"), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
  CommandResult r = run_nbsgd("train --host-workers 2 --net mlp --steps 1 --quiet --trace /nonexistent-dir/t.json");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--trace /nonexistent-dir/t.json"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace nbsgd::test
