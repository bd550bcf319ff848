// nbsgd compare: several configurations, one after another, on the same net, data,
// profile and seed, each run by run_training; one table and compare.json.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "runtime/device/check.h"
#include "runtime/apps/cli/commands.h"
#include "runtime/apps/cli/out_lock.h"
#include "runtime/apps/cli/plot.h"
#include "runtime/apps/cli/signals.h"
#include "runtime/apps/cli/train_flags.h"
#include "runtime/apps/compare/compare.h"
#include "runtime/train/exchange.h"

namespace nbsgd::cli {

void add_compare_command(CLI::App& root, Runner& out) {
  auto cfg = std::make_shared<engine::TrainConfig>();
  auto runs = std::make_shared<std::string>("ring/sync,ring/fastest,dpsgd/sync,dpsgd/fastest,matcha/sync,matcha/fastest,adpsgd");
  auto ceiling = std::make_shared<std::string>();
  CLI::App* sub = root.add_subcommand("compare", "Run several configurations on the same settings and compare them");
  add_train_flags(*sub, *cfg);
  sub->add_option("--runs", *runs, "Runs EXCHANGE[/WINDOW][@SCOPE], comma-separated")->capture_default_str();
  sub->add_option("--ceiling", *ceiling, "JSON {\"rates\": [...]}: per-worker standalone samples/s, for efficiency");
  sub->callback([cfg, runs, ceiling, &out] {
    out = [cfg, runs, ceiling] {
      const auto specs = engine::parse_runs(*runs);
      const std::vector<double> rates = ceiling->empty() ? std::vector<double>{} : engine::load_ceiling(*ceiling);
      engine::check_numbers(*cfg);
      if (!cfg->trace.empty())
        throw InputError("--trace " + cfg->trace + ": compare writes trace.json into every run's folder under --out "
                         "(bounded by --trace-steps); give --out instead");
      // SIGINT, SIGTERM, SIGHUP stop the whole comparison (every run's own scope
      // nests in this one, so a signal between two runs stops the next at once).
      SignalScope signals;
      std::optional<OutDirLock> lock;
      if (!cfg->out_dir.empty()) {
        lock.emplace(cfg->out_dir);
        for (const auto& s : specs)
          if (std::filesystem::exists(std::filesystem::path(cfg->out_dir) / s.dir_name() / "metrics.jsonl"))
            throw InputError("--out " + cfg->out_dir + " already holds run " + s.name + "; choose another directory");
      }
      std::vector<engine::CompareRow> rows;
      int signal = 0;
      for (size_t i = 0; i < specs.size(); ++i) {
        const auto& s = specs[i];
        if (SignalScope::signal_number()) {
          signal = SignalScope::signal_number();
          break;
        }
        engine::TrainConfig c = engine::apply_run(*cfg, s);
        c.quiet = true;
        if (!cfg->out_dir.empty()) {
          c.out_dir = cfg->out_dir + "/" + s.dir_name();
          c.trace = c.out_dir + "/trace.json";
        }
        if (!cfg->quiet) std::fprintf(stderr, "compare: run %zu of %zu: %s\n", i + 1, specs.size(), s.name.c_str());
        RunOutput o;
        o.header = o.summary = false;
        o.progress = !cfg->quiet;
        o.prefix = fmt::format("[{}/{} {}] ", i + 1, specs.size(), s.name);
        RunResult r = run_training(c, o);
        engine::CompareRow row;
        row.spec = s;
        row.summary = r.summary;
        rows.push_back(std::move(row));
        if (r.signal) {  // a signal stops the whole comparison
          signal = r.signal;
          break;
        }
      }
      const bool interrupted = signal != 0;
      engine::compute_speedups(rows, rates);
      std::printf("%s", engine::compare_table(rows, cfg->target_loss).c_str());
      if (!cfg->out_dir.empty()) {
        nlohmann::json j = engine::compare_json(rows, *cfg, rates);
        j["interrupted"] = interrupted;
        write_atomically(cfg->out_dir + "/compare.json", j.dump(2) + "\n");
        const std::string no_plots = plot_folder(cfg->out_dir, 6, cfg->quiet);
        nlohmann::json plots = nlohmann::json::array();
        const std::string pj = cfg->out_dir + "/plots/plots.json";
        if (no_plots.empty() && std::filesystem::exists(pj)) {
          std::ifstream f(pj);
          const auto pl = nlohmann::json::parse(f, nullptr, false);
          if (!pl.is_discarded() && pl.contains("plots")) plots = pl["plots"];
        }
        if (!no_plots.empty() && !cfg->quiet) std::fprintf(stderr, "compare: no plots: %s\n", no_plots.c_str());
        write_atomically(cfg->out_dir + "/report.md", engine::compare_report(rows, *cfg, rates, plots, no_plots));
        if (!cfg->quiet) std::fprintf(stderr, "compare: report in %s/report.md\n", cfg->out_dir.c_str());
      }
      if (interrupted) std::fprintf(stderr, "compare: interrupted after %zu of %zu runs\n", rows.size(), specs.size());
      return interrupted ? 128 + signal : 0;
    };
  });
}

}  // namespace nbsgd::cli
