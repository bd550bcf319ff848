#include "runtime/apps/compare/compare.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "runtime/device/check.h"
#include "runtime/train/engine.h"
#include "runtime/train/exchange.h"
#include "runtime/train/window.h"

namespace nbsgd::engine {

std::string RunSpec::dir_name() const {
  std::string d = name;
  for (char& c : d)
    if (c == '/' || c == ':' || c == '@') c = '_';
  return d;
}

std::vector<RunSpec> parse_runs(const std::string& list) {
  std::vector<RunSpec> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) throw InputError("--runs " + list + ": an empty run name");
    RunSpec r;
    r.name = item;
    std::string body = item;
    if (auto at = body.find('@'); at != std::string::npos) {
      r.scope = body.substr(at + 1);
      body = body.substr(0, at);
      if (r.scope != "global" && r.scope != "neighbors")
        throw InputError("--runs: '" + item + "': scope '" + r.scope + "' must be global or neighbors");
    }
    const auto slash = body.find('/');
    r.exchange = body.substr(0, slash);
    r.window = slash == std::string::npos ? "" : body.substr(slash + 1);
    if (r.exchange != "ring" && !is_gossip_exchange(r.exchange))
      throw InputError("--runs: '" + item + "': exchange '" + r.exchange + "' must be ring, dpsgd, matcha or adpsgd");
    if (r.exchange == "adpsgd") {
      if (!r.window.empty()) throw InputError("--runs: '" + item + "': adpsgd has no window (write adpsgd)");
    } else {
      if (r.window.empty()) throw InputError("--runs: '" + item + "': give a window, e.g. " + r.exchange + "/sync");
      try {
        parse_window(r.window);
      } catch (const InputError& e) {
        throw InputError("--runs: '" + item + "': " + e.what());
      }
    }
    if (!r.scope.empty() && (r.exchange == "ring" || r.exchange == "adpsgd"))
      throw InputError("--runs: '" + item + "': a window scope applies to dpsgd and matcha only");
    for (const auto& o : out)
      if (o.name == r.name) throw InputError("--runs: '" + item + "' is given twice");
    out.push_back(r);
  }
  if (out.empty()) throw InputError("--runs: no runs given");
  return out;
}

TrainConfig apply_run(const TrainConfig& base, const RunSpec& run) {
  TrainConfig c = base;
  c.exchange = run.exchange;
  if (!run.window.empty()) c.window = run.window;
  if (!run.scope.empty()) c.window_scope = run.scope;
  return c;
}

RunSummary run_any(const TrainConfig& cfg, const std::function<void(const StepRecord&)>& on_step) {
  Engine e(cfg);
  return e.run(on_step);
}

std::vector<double> load_ceiling(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw InputError("--ceiling " + path + ": cannot read the file");
  nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_discarded()) throw InputError("--ceiling " + path + ": not valid JSON");
  if (!j.is_object() || !j.contains("rates") || !j["rates"].is_array() || j["rates"].empty())
    throw InputError("--ceiling " + path + ": expected {\"rates\": [samples/s per worker, ...]}");
  std::vector<double> r;
  for (const auto& v : j["rates"]) {
    if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>()))
      throw InputError("--ceiling " + path + ": 'rates' must hold positive numbers");
    r.push_back(v.get<double>());
  }
  return r;
}

void compute_speedups(std::vector<CompareRow>& rows, const std::vector<double>& ceiling) {
  double sum = 0;
  for (double r : ceiling) sum += r;
  auto ttt = [&](const std::string& name) -> std::optional<double> {
    for (const auto& r : rows)
      if (r.spec.name == name) return r.summary.time_to_target_s;
    return std::nullopt;
  };
  auto ratio = [](std::optional<double> base, std::optional<double> mine) -> std::optional<double> {
    if (!base || !mine || *mine <= 0) return std::nullopt;
    return *base / *mine;
  };
  for (auto& r : rows) {
    r.efficiency = sum > 0 ? r.summary.samples_per_s / sum : -1;
    if (r.spec.blocking()) continue;
    const auto mine = r.summary.time_to_target_s;
    if (r.spec.exchange != "adpsgd") {
      r.vs_own = ratio(ttt(r.spec.exchange + "/sync"), mine);
      for (const auto& b : rows)
        if (b.spec.name == r.spec.exchange + "/sync" && b.summary.samples_per_s > 0)
          r.rate_vs_own = r.summary.samples_per_s / b.summary.samples_per_s;
    }
    r.vs_dpsgd = ratio(ttt("dpsgd/sync"), mine);
    r.vs_matcha = ratio(ttt("matcha/sync"), mine);
  }
}

namespace {
std::string opt_str(const std::optional<double>& v, const char* fmtstr) {
  return v ? fmt::format(fmt::runtime(fmtstr), *v) : std::string("-");
}
nlohmann::json opt_json(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); }
}  // namespace

std::string compare_table(const std::vector<CompareRow>& rows, double target_loss) {
  // Only the columns some run has a value for; report.md has the legend.
  const std::string clk = rows.empty() ? std::string("run's") : rows.front().summary.clock;
  struct Col {
    std::string head;
    std::vector<std::string> cells;
    bool any = false;
  };
  std::vector<Col> cols(9);
  cols[0].head = "run";
  cols[1].head = target_loss > 0 ? fmt::format("t@{:g} (s, {})", target_loss, clk) : "t@target";
  cols[2].head = fmt::format("samples/s ({})", clk);
  cols[3].head = "eff";
  cols[4].head = "final loss";
  cols[5].head = "test acc";
  cols[6].head = target_loss > 0 ? "x own sync" : "x own sync (samples/s)";
  cols[7].head = "x dpsgd";
  cols[8].head = "x matcha";
  cols[0].any = cols[2].any = cols[4].any = cols[5].any = true;
  for (const auto& r : rows) {
    const auto& m = r.summary;
    const auto own = target_loss > 0 ? r.vs_own : r.rate_vs_own;
    const std::string c[9] = {r.spec.name, opt_str(m.time_to_target_s, "{:.4f}"), fmt::format("{:.0f}", m.samples_per_s),
                              r.efficiency >= 0 ? fmt::format("{:.2f}", r.efficiency) : std::string("-"),
                              fmt::format("{:.4f}", m.final_train_loss), fmt::format("{:.2f}%", 100 * m.test_accuracy),
                              opt_str(own, "{:.2f}x"), opt_str(r.vs_dpsgd, "{:.2f}x"), opt_str(r.vs_matcha, "{:.2f}x")};
    for (int i = 0; i < 9; ++i) {
      cols[i].cells.push_back(c[i]);
      cols[i].any = cols[i].any || c[i] != "-";
    }
  }
  std::string s;
  std::vector<size_t> width;
  for (auto& c : cols) {
    size_t w = c.head.size();
    for (auto& x : c.cells) w = std::max(w, x.size());
    width.push_back(w);
  }
  for (size_t i = 0; i < cols.size(); ++i)
    if (cols[i].any) s += fmt::format(fmt::runtime(i == 0 ? "{:<{}}" : "  {:>{}}"), cols[i].head, width[i]);
  s += "\n";
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t i = 0; i < cols.size(); ++i)
      if (cols[i].any) s += fmt::format(fmt::runtime(i == 0 ? "{:<{}}" : "  {:>{}}"), cols[i].cells[r], width[i]);
    s += "\n";
  }
  return s;
}

nlohmann::json compare_json(const std::vector<CompareRow>& rows, const TrainConfig& base,
                            const std::vector<double>& ceiling) {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& r : rows) {
    const auto& m = r.summary;
    runs.push_back({{"name", r.spec.name},
                    {"dir", r.spec.dir_name()},
                    {"exchange", r.spec.exchange},
                    {"window", r.spec.window},
                    {"scope", r.spec.scope.empty() ? base.window_scope : r.spec.scope},
                    {"time_to_target_s", opt_json(m.time_to_target_s)},
                    {"clock_s", m.clock_s},
                    {"wall_s", m.wall_s},
                    {"steps", m.steps},
                    {"samples", m.samples},
                    {"samples_per_s", m.samples_per_s},
                    {"efficiency", r.efficiency >= 0 ? nlohmann::json(r.efficiency) : nlohmann::json()},
                    {"final_train_loss", std::isfinite(m.final_train_loss) ? nlohmann::json(m.final_train_loss)
                                                                           : nlohmann::json()},
                    {"test_accuracy", m.test_accuracy},
                    {"test_loss", m.test_loss},
                    {"speedup_vs_own_baseline", opt_json(r.vs_own)},
                    {"samples_per_s_vs_own_baseline", opt_json(r.rate_vs_own)},
                    {"clock", m.clock},
                    {"speedup_vs_dpsgd_sync", opt_json(r.vs_dpsgd)},
                    {"speedup_vs_matcha_sync", opt_json(r.vs_matcha)}});
  }
  return {{"target_loss", base.target_loss},
          {"config", nlohmann::json::parse(config_json(base))},
          {"ceiling_rates", ceiling},
          {"runs", runs}};
}

}  // namespace nbsgd::engine
