// nbsgd predict: the run-time model and the engine's simulation for a profile,
// before anyone runs it (runtime/apps/predict/predict.h).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <memory>

#include "runtime/device/check.h"
#include "runtime/apps/cli/commands.h"
#include "runtime/apps/predict/predict.h"
#include "runtime/apps/predict/rates.h"

namespace nbsgd::cli {

namespace {
struct PredictOptions {
  predict::PredictConfig cfg;
  std::vector<double> compute_ms;
  double overhead_ms = -1;
  std::string rates_file;
  bool json = false;
};

// Base compute times from measured standalone rates: a one-worker step is m
// mini-batches plus the update, so c_i = (B / r_i - update) / m. The update is
// the duration model's on the virtual clock; on the real clock it is part of the
// measured mini-batches.
std::vector<double> compute_from_rates(const PredictOptions& o) {
  const predict::MeasuredRates r = predict::load_rates(o.rates_file, "--rates");
  const predict::PredictConfig& c = o.cfg;
  const std::string where = "--rates " + o.rates_file;
  if (static_cast<int>(r.rates.size()) != c.workers)
    throw InputError(fmt::format("{}: {} rate(s) for --workers {}", where, r.rates.size(), c.workers));
  if (!r.net.empty() && r.net != c.net)
    throw InputError(fmt::format("{}: measured with --net {}, this prediction is for --net {}", where, r.net, c.net));
  if ((r.batch && r.batch != c.batch) || (r.split && r.split != c.split))
    throw InputError(fmt::format("{}: measured with --batch {} --split {}, this prediction uses --batch {} --split {}",
                                 where, r.batch, r.split, c.batch, c.split));
  if (!r.profile.empty() && r.profile != "none")
    throw InputError(fmt::format("{}: measured under profile '{}'; predictions apply --profile on top of the "
                                 "rates, so measure with --profile none",
                                 where, r.profile));
  double update = 0;
  if (r.clock == "virtual")
    update = engine::duration_model_for_net(c.model, c.net).update_s(predict::net_cost(c.net).params);
  std::vector<double> out;
  for (double ri : r.rates) {
    const double ci = (c.batch / ri - update) / c.split;
    if (!(ci > 0)) throw InputError(fmt::format("{}: rate {} leaves no compute time per mini-batch", where, ri));
    out.push_back(ci);
  }
  return out;
}
}  // namespace

void add_predict_command(CLI::App& root, Runner& out) {
  auto o = std::make_shared<PredictOptions>();
  predict::PredictConfig& c = o->cfg;
  CLI::App* sub = root.add_subcommand(
      "predict", "Predict step time, samples per step, throughput and efficiency of step windows under a profile");
  sub->add_option("--profile", c.profile, "Straggler profile: a name in profiles/ or a TOML path (default: none)");
  sub->add_option("--slowdown", c.slowdown, "Constant slowdown per worker, e.g. 1,1,2,4 (a profile shorthand)");
  sub->add_option("--net", c.net, "Net: a built-in name (mlp, lenet, resnet20, vgg11-cifar, resnet18-cifar; see nbsgd describe-net) or a .toml description")->capture_default_str();
  sub->add_option("--batch", c.batch, "Batch B per worker")->capture_default_str();
  sub->add_option("--split", c.split, "Mini-batches M per batch (M divides B)")->capture_default_str();
  sub->add_option("--workers", c.workers, "Workers N (devices host-worker-0..N-1 for name patterns)")
      ->capture_default_str();
  sub->add_option("--windows", c.windows, "Step windows, e.g. sync,fastest,quorum:32,deadline:5 (default: sync, "
                                          "fastest, quorum:N*M)")
      ->delimiter(',');
  sub->add_option("--cap", c.cap, "Per-worker cap per step: m, none, or N (default: m for sync/fastest, else none)");
  sub->add_option("--steps", c.steps, "Steps to simulate")->capture_default_str();
  sub->add_option("--trials", c.trials, "Monte Carlo trials (per schedule range) where no closed form exists")
      ->capture_default_str();
  sub->add_option("--adaptive-guard", c.adaptive_guard, "adaptive: close at this multiple of the predicted step time")
      ->capture_default_str();
  sub->add_option("--virtual-gflops", c.model.gflops, "Duration model: nominal device GFLOP/s")->capture_default_str();
  sub->add_option_function<double>(
         "--virtual-overhead-us", [&c](double us) { c.model.launch_overhead_s = us * 1e-6; },
         "Duration model: launch overhead per mini-batch, microseconds (default: from the net, as nbsgd train)")
      ->default_str("auto");
  sub->add_option("--virtual-link-gbps", c.model.link_gbps, "Duration model: link bandwidth GB/s")
      ->capture_default_str();
  sub->add_option("--nodes", c.nodes, "Across nodes: the workers spread evenly over K nodes (K divides --workers)")
      ->capture_default_str();
  sub->add_option("--node-link-gbps", c.node_link_gbps, "Across nodes: the link between nodes, GB/s")
      ->capture_default_str();
  sub->add_option_function<double>(
         "--node-link-latency-us", [&c](double us) { c.node_link_latency_s = us * 1e-6; },
         "Across nodes: the link's latency per hop, microseconds")
      ->default_str("5");
  sub->add_option_function<double>(
         "--decision-us", [&c](double us) { c.decision_s = us * 1e-6; },
         "Across processes: the coordinator's decision latency per step (last counted completion to every rank "
         "knowing the close), microseconds; bench_ranks measures it")
      ->default_str("0");
  sub->add_option("--compute-ms", o->compute_ms,
                  "Measured time of one mini-batch before slowdowns, ms: one value, or one per worker")
      ->delimiter(',');
  sub->add_option("--overhead-ms", o->overhead_ms, "Measured time from a window's close to the next step, ms")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--rates", o->rates_file,
                  "Standalone rates from nbsgd devices --measure (with --profile none) instead of the duration model");
  sub->add_flag("--json", o->json, "Print JSON instead of the table");
  sub->callback([o, &out] {
    out = [o] {
      predict::PredictConfig cfg = o->cfg;
      if (!o->rates_file.empty() && !o->compute_ms.empty()) throw InputError("--rates and --compute-ms: give one of them");
      for (double ms : o->compute_ms) cfg.compute_s.push_back(ms * 1e-3);
      if (!o->rates_file.empty()) cfg.compute_s = compute_from_rates(*o);
      if (o->overhead_ms >= 0) cfg.after_close_s = o->overhead_ms * 1e-3;
      const predict::Prediction p = predict::run_prediction(cfg);
      if (o->json) {
        fmt::print("{}\n", predict::to_json(p).dump(2));
      } else {
        fmt::print("{}", predict::report(p));
      }
      return 0;
    };
  });
}

}  // namespace nbsgd::cli
