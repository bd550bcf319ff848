// report.md of nbsgd compare: what a reader needs to read the comparison without
// the code at hand.
#include <fmt/format.h>

#include <cmath>
#include <set>

#include "runtime/apps/compare/compare.h"

namespace nbsgd::engine {

namespace {
struct Column {
  std::string head, legend;
  std::vector<std::string> cells;
  bool any = false;  // a row has a value: the column is shown
};
std::string cell(const std::optional<double>& v, const char* f) {
  return v ? fmt::format(fmt::runtime(f), *v) : std::string("-");
}
}  // namespace

std::string compare_report(const std::vector<CompareRow>& rows, const TrainConfig& base,
                           const std::vector<double>& ceiling, const nlohmann::json& plots,
                           const std::string& no_plots) {
  std::set<std::string> clocks;
  for (const auto& r : rows) clocks.insert(r.summary.clock);
  std::string clock;
  for (const auto& c : clocks) clock += (clock.empty() ? "" : "/") + c;
  const std::string clk = clock + " clock";
  const bool target = base.target_loss > 0;

  std::string md = fmt::format("# nbsgd compare: {} on {}\n\n", base.net, base.data);
  md += fmt::format("{} run(s), same net, data, profile and seed (seed {}); batch {} per worker in {} mini-batches.\n",
                    rows.size(), base.seed, base.batch, base.split);
  md += fmt::format("Every time below is on the **{}**", clk);
  if (clocks.count("virtual"))
    md += " (the virtual clock models each device's speed, straggling and links: its seconds are modelled "
          "device seconds, not the host's)";
  if (clocks.count("real")) md += " (the real clock is the machine's steady clock while the run trained)";
  md += "; wall-clock figures say so.\n\n";

  std::vector<Column> cols;
  cols.reserve(16);  // the references below must stay valid
  auto col = [&](std::string head, std::string legend) -> Column& {
    cols.push_back({std::move(head), std::move(legend), {}, false});
    return cols.back();
  };
  Column& name = col("run", "EXCHANGE/WINDOW[@SCOPE]; WINDOW sync is the blocking baseline of its exchange");
  Column& ttt = col(target ? fmt::format("time to loss {:g} (s, {})", base.target_loss, clk) : "time to target",
                    fmt::format("time until the train loss (mean over the last {} non-empty steps) first reached "
                                "--target-loss",
                                LossTracker::kWindow));
  Column& rate = col(fmt::format("samples/s ({})", clk), "samples counted into updates per second of the run's clock");
  Column& eff = col("efficiency", "samples/s over the ceiling (the sum of the devices' standalone samples/s, --ceiling)");
  Column& own = col(target ? "speed-up over own sync (time to target)" : "speed-up over own sync (samples/s)",
                    target ? "its exchange's sync run's time to target divided by its own (x > 1: sooner)"
                           : "its samples/s divided by its exchange's sync run's (x > 1: faster)");
  Column& vd = col("x dpsgd/sync", "dpsgd/sync's time to target divided by this run's");
  Column& vm = col("x matcha/sync", "matcha/sync's time to target divided by this run's");
  Column& loss = col("final train loss", fmt::format("sample-weighted mean over the last {} non-empty steps",
                                                     LossTracker::kWindow));
  Column& acc = col("test accuracy", "on the test set: replica 0 (ring), the averaged model (gossip)");
  Column& run_s = col(fmt::format("run time (s, {})", clk), "the run's length on its clock");
  Column& wall = col("wall (s)", "wall-clock seconds the run took on this machine (not comparable across clocks)");
  name.any = rate.any = loss.any = acc.any = run_s.any = wall.any = true;
  for (const auto& r : rows) {
    const auto& m = r.summary;
    name.cells.push_back(r.spec.name);
    ttt.cells.push_back(cell(m.time_to_target_s, "{:.4f}"));
    ttt.any = ttt.any || m.time_to_target_s.has_value();
    rate.cells.push_back(fmt::format("{:.0f}", m.samples_per_s));
    eff.cells.push_back(r.efficiency >= 0 ? fmt::format("{:.2f}", r.efficiency) : "-");
    eff.any = eff.any || r.efficiency >= 0;
    const auto o = target ? r.vs_own : r.rate_vs_own;
    own.cells.push_back(r.spec.blocking() ? "(baseline)" : cell(o, "{:.2f}x"));
    own.any = own.any || o.has_value();
    vd.cells.push_back(cell(r.vs_dpsgd, "{:.2f}x"));
    vd.any = vd.any || r.vs_dpsgd.has_value();
    vm.cells.push_back(cell(r.vs_matcha, "{:.2f}x"));
    vm.any = vm.any || r.vs_matcha.has_value();
    loss.cells.push_back(std::isfinite(m.final_train_loss) ? fmt::format("{:.4f}", m.final_train_loss) : "-");
    acc.cells.push_back(fmt::format("{:.2f}%", 100 * m.test_accuracy));
    run_s.cells.push_back(fmt::format("{:.3f}", m.clock_s));
    wall.cells.push_back(fmt::format("{:.1f}", m.wall_s));
  }
  std::string head = "|", rule = "|";
  for (const auto& c : cols)
    if (c.any) {
      head += " " + c.head + " |";
      rule += " --- |";
    }
  md += head + "\n" + rule + "\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    std::string line = "|";
    for (const auto& c : cols)
      if (c.any) line += " " + c.cells[i] + " |";
    md += line + "\n";
  }
  md += "\nColumns:\n\n";
  for (const auto& c : cols)
    if (c.any) md += fmt::format("- **{}**: {}\n", c.head, c.legend);
  std::vector<std::string> hidden;
  for (const auto& c : cols)
    if (!c.any) hidden.push_back(c.head);
  if (!hidden.empty()) {
    md += "\nNot shown (no run has a value):";
    for (const auto& h : hidden) md += " " + h + ";";
    md.back() = '.';
    if (!target) md += " Give --target-loss for times to a loss.";
    if (ceiling.empty()) md += " Give --ceiling for efficiency.";
    md += "\n";
  }

  md += "\n## Speed-up of each non-blocking run over its own sync baseline\n\n";
  bool any = false;
  for (const auto& r : rows) {
    if (r.spec.blocking() || r.spec.exchange == "adpsgd") continue;
    const auto o = target ? r.vs_own : r.rate_vs_own;
    any = true;
    md += fmt::format("- {}: {}\n", r.spec.name,
                      o ? fmt::format("{:.2f}x ({} than {}/sync; {}, {})", *o,
                                      target ? (*o >= 1 ? "sooner" : "later") : (*o >= 1 ? "faster" : "slower"),
                                      r.spec.exchange,
                                      target ? fmt::format("time to loss {:g}", base.target_loss) : "samples/s", clk)
                        : fmt::format("- (no {}/sync run{})", r.spec.exchange,
                                      target ? ", or one of the two did not reach the target" : ""));
  }
  if (!any) md += "No non-blocking run with a sync baseline of its exchange.\n";

  md += "\n## Plots\n\n";
  if (plots.is_array() && !plots.empty()) {
    for (const auto& p : plots)
      md += fmt::format("- [{}](plots/{})\n", p.value("title", p.value("file", "")), p.value("file", ""));
    md += "\nThe Gantt charts show the first steps of each run's trace.json; open a trace whole in "
          "ui.perfetto.dev or chrome://tracing.\n";
  } else {
    md += "No plots: " + no_plots + ". Draw them later with `nbsgd plot <this folder>`.\n";
  }
  return md;
}

}  // namespace nbsgd::engine
