// nbsgd compare: several configurations, one after another, on the same net, data,
// profile and seed; one table and compare.json. Also the gossip counterpart of
// run_training (`nbsgd train --exchange dpsgd|matcha|adpsgd` comes here).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include "runtime/device/check.h"
#include "runtime/apps/cli/commands.h"
#include "runtime/apps/cli/train_flags.h"
#include "runtime/train/gossip_compare.h"
#include "runtime/train/gossip_engine.h"

namespace nbsgd::cli {

nlohmann::json step_json(const engine::StepRecord& r);  // cmd_train.cpp

// As run_training, for --exchange dpsgd, matcha, adpsgd: config.json, metrics.jsonl
// (with the consensus distance per step), summary.json and the averaged model's
// checkpoint in cfg.out_dir.
RunResult run_gossip_training(const engine::TrainConfig& cfg, bool print) {
  namespace fs = std::filesystem;
  RunResult out;
  if (!cfg.out_dir.empty() && fs::exists(fs::path(cfg.out_dir) / "metrics.jsonl"))
    throw InputError("--out " + cfg.out_dir + " already holds a run (metrics.jsonl); choose another directory");
  engine::GossipEngine eng(cfg);  // validates every flag: nothing is created before
  if (!cfg.out_dir.empty()) {
    std::error_code ec;
    fs::create_directories(cfg.out_dir, ec);
    if (ec) throw InputError("--out " + cfg.out_dir + ": " + ec.message());
  }
  if (print) std::fprintf(stderr, "%s", eng.describe().c_str());
  std::ofstream metrics;
  if (!cfg.out_dir.empty()) {
    write_atomically(cfg.out_dir + "/config.json", engine::config_json(cfg) + "\n");
    metrics.open(cfg.out_dir + "/metrics.jsonl", std::ios::app);
    if (!metrics) throw InputError("cannot write " + cfg.out_dir + "/metrics.jsonl");
  }
  double t_since = 0;
  int64_t samples_since = 0;
  auto on_step = [&](const engine::StepRecord& r) {
    if (metrics.is_open()) metrics << step_json(r).dump() << "\n";
    out.losses.push_back(r.loss);
    samples_since += r.samples;
    if (!print || cfg.log_every <= 0 || (r.step + 1) % cfg.log_every != 0) return;
    const double rate = r.t > t_since ? samples_since / (r.t - t_since) : 0.0;
    std::string k;
    for (size_t i = 0; i < r.finished.size(); ++i) k += (i ? "," : "") + std::to_string(r.finished[i]);
    std::fprintf(stderr, "%s\n",
                 fmt::format("epoch {} step {} loss {:.4f} samples/s {:.0f} lr {:.4g} consensus {:.3g} finished [{}]",
                             r.epoch, r.step + 1, r.loss, rate, r.lr, r.consensus, k)
                     .c_str());
    samples_since = 0;
    t_since = r.t;
  };
  engine::RunSummary s = eng.run(on_step);
  if (metrics.is_open()) metrics.flush();
  if (!cfg.out_dir.empty()) {
    eng.save_checkpoint(cfg.out_dir + "/checkpoint.safetensors");
    write_atomically(cfg.out_dir + "/summary.json", summary_json(s).dump(2) + "\n");
  }
  if (print) {
    std::fprintf(stderr, "%s", fmt::format("{:<22}{}\n{:<22}{}\n{:<22}{:.4f} s (virtual clock), wall {:.1f} s\n"
                                           "{:<22}{:.0f}\n{:<22}{:.4f}\n{:<22}{:.4f} / {:.2f}% (averaged model)\n",
                                           "steps", s.steps, "samples", s.samples, "time", s.clock_s, s.wall_s,
                                           "samples/s", s.samples_per_s, "final train loss", s.final_train_loss,
                                           "test loss / accuracy", s.test_loss, 100 * s.test_accuracy)
                                   .c_str());
    if (cfg.target_loss > 0)
      std::fprintf(stderr, "%s",
                   fmt::format("{:<22}{}\n", "time to target",
                               s.time_to_target_s ? fmt::format("{:.4f} s", *s.time_to_target_s) : "not reached")
                       .c_str());
  }
  out.summary = s;
  out.virtual_clock = true;
  return out;
}

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
      if (!cfg->out_dir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(cfg->out_dir, ec);
        if (ec) throw InputError("--out " + cfg->out_dir + ": " + ec.message());
        for (const auto& s : specs)
          if (std::filesystem::exists(std::filesystem::path(cfg->out_dir) / s.dir_name() / "metrics.jsonl"))
            throw InputError("--out " + cfg->out_dir + " already holds run " + s.name + "; choose another directory");
      }
      std::vector<engine::CompareRow> rows;
      for (const auto& s : specs) {
        engine::TrainConfig c = engine::apply_run(*cfg, s);
        c.quiet = true;
        if (!cfg->out_dir.empty()) c.out_dir = cfg->out_dir + "/" + s.dir_name();
        if (!cfg->quiet) std::fprintf(stderr, "compare: running %s ...\n", s.name.c_str());
        RunResult r = engine::is_gossip_exchange(c.exchange) ? run_gossip_training(c, false) : run_training(c, false);
        engine::CompareRow row;
        row.spec = s;
        row.summary = r.summary;
        rows.push_back(std::move(row));
      }
      engine::compute_speedups(rows, rates);
      std::printf("%s", engine::compare_table(rows, cfg->target_loss).c_str());
      if (!cfg->out_dir.empty())
        write_atomically(cfg->out_dir + "/compare.json", engine::compare_json(rows, *cfg, rates).dump(2) + "\n");
      return 0;
    };
  });
}

}  // namespace nbsgd::cli
