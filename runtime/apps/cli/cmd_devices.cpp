// nbsgd devices [--json [FILE]] [--host-workers N]
// nbsgd devices --measure --net NET [--profile P] [--batch B --split M] [--json FILE]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "runtime/apps/cli/commands.h"
#include "runtime/train/limits.h"
#include "runtime/apps/cli/train_flags.h"
#include "runtime/device/device.h"
#include "runtime/device/file_io.h"
#include "runtime/apps/predict/measure.h"

namespace nbsgd::cli {

namespace {
struct DevicesOptions {
  std::string json_file;  // with --json: "" prints JSON, else the file to write
  int host_workers = 0;
  bool measure = false;
  predict::MeasureConfig m;
};

nlohmann::json to_json(const DeviceList& list) {
  nlohmann::json j;
  j["backend"] = to_string(list.backend);
  j["devices"] = nlohmann::json::array();
  for (const Device& d : list.devices) {
    nlohmann::json e{{"index", d.index}, {"name", d.name}, {"kind", d.kind}};
    if (d.backend == Backend::Cuda) {
      e["cc"] = fmt::format("{}.{}", d.cc_major, d.cc_minor);
      e["sms"] = d.sms;
      e["memory_bytes"] = d.memory_bytes;
      e["pci_bus_id"] = d.pci_bus_id;
    }
    j["devices"].push_back(e);
  }
  if (list.backend == Backend::Cuda) j["peer_access"] = list.peer_access;
  if (!list.fallback_reason.empty()) j["fallback_reason"] = list.fallback_reason;
  return j;
}

void print_table(const DeviceList& list) {
  if (list.backend == Backend::Host) {
    fmt::print("{}\n", fallback_line(list));
    fmt::print("{:>5}  {:<20} {}\n", "index", "name", "kind");
    for (const Device& d : list.devices) fmt::print("{:>5}  {:<20} {}\n", d.index, d.name, d.kind);
    return;
  }
  fmt::print("{:>5}  {:<28} {:>4} {:>5} {:>10}  {}\n", "index", "name", "cc", "SMs", "memory", "pci");
  for (const Device& d : list.devices) {
    fmt::print("{:>5}  {:<28} {:>4} {:>5} {:>7.1f}GiB  {}\n", d.index, d.name,
               fmt::format("{}.{}", d.cc_major, d.cc_minor), d.sms, d.memory_bytes / double(1ull << 30),
               d.pci_bus_id);
  }
  fmt::print("peer access (row can read column):\n");
  for (size_t i = 0; i < list.peer_access.size(); ++i) {
    std::string row;
    for (int v : list.peer_access[i]) row += v ? " 1" : " .";
    fmt::print("  {:>3}:{}\n", i, row);
  }
}
// --measure: the standalone rates, as a table and (--json) as the rates file that
// nbsgd train --ceiling and nbsgd predict --rates read.
int run_measure(DevicesOptions& o, bool json) {
  o.m.train.host_workers = o.host_workers;
  o.m.verbose = true;
  const predict::MeasuredRates r = predict::measure_rates(o.m);
  const std::string text = predict::to_json(r).dump(2) + "\n";
  if (json && o.json_file.empty()) {
    fmt::print("{}", text);
    return 0;
  }
  fmt::print("standalone rates: net {}, profile {}, batch {} in {} mini-batches, {} clock\n", r.net, r.profile,
             r.batch, r.split, r.clock);
  fmt::print("{:>5}  {:<24} {:>12}\n", "index", "name", "samples/s");
  for (size_t i = 0; i < r.rates.size(); ++i) fmt::print("{:>5}  {:<24} {:>12.0f}\n", i, r.devices[i], r.rates[i]);
  fmt::print("{:>5}  {:<24} {:>12.0f}\n", "", "sum (the ceiling)", r.sum);
  if (json) {
    write_file_atomically(o.json_file, text, "rates file");
    fmt::print("wrote {}\n", o.json_file);
  }
  return 0;
}
}  // namespace

constexpr int64_t kMaxMeasureSteps = 100'000;

void add_devices_command(CLI::App& root, Runner& out) {
  auto opt = std::make_shared<DevicesOptions>();
  CLI::App* sub = root.add_subcommand("devices", "List the devices nbsgd would train on");
  sub->add_option("--json", opt->json_file, "Print JSON instead of a table; with --measure, --json FILE writes it")
      ->expected(0, 1);
  sub->add_option("--host-workers", opt->host_workers, "Use N host workers instead of GPUs")
      ->check(CLI::Range(1, engine::kMaxWorkers))
      ->capture_default_str();
  engine::TrainConfig& t = opt->m.train;
  t.train_limit = 8192;
  sub->add_flag("--measure", opt->measure,
                "Measure each device's standalone samples/s under its profile (the efficiency ceiling)");
  sub->add_option("--net", t.net, "--measure: net, a built-in name (see nbsgd describe-net) or a .toml description")->capture_default_str();
  sub->add_option("--profile", t.profile, "--measure: straggler profile (name or TOML path)");
  sub->add_option("--slowdown", t.slowdown, "--measure: constant slowdown per device, e.g. 1,1,2,4");
  sub->add_option("--batch", t.batch, "--measure: batch B per worker")->capture_default_str();
  sub->add_option("--split", t.split, "--measure: mini-batches M per batch")->capture_default_str();
  sub->add_option("--devices", t.devices, "--measure: devices, e.g. 0,1 or 0:0.5,0:0.5 (default: all)");
  sub->add_option("--clock", t.clock, "--measure: auto (virtual on host workers), real, virtual")
      ->capture_default_str();
  sub->add_option("--data", t.data, "--measure, real clock: data set")->capture_default_str();
  sub->add_option("--data-dir", t.data_dir, "--measure, real clock: Fashion-MNIST directory")->capture_default_str();
  sub->add_option("--train-limit", t.train_limit, "--measure, real clock: training samples to load")
      ->capture_default_str();
  sub->add_option("--steps", opt->m.steps, "--measure: steps per device (0: 200 virtual, 30 real)")
      ->capture_default_str();
  sub->add_option("--virtual-gflops", t.model.gflops, "--measure, virtual clock: nominal device GFLOP/s")
      ->capture_default_str();
  sub->callback([opt, sub, &out] {
    const bool json = sub->count("--json") > 0;
    if (!opt->measure) {
      for (const char* f : {"--net", "--profile", "--slowdown", "--batch", "--split", "--devices", "--clock", "--data",
                            "--data-dir", "--train-limit", "--steps", "--virtual-gflops"})
        if (sub->count(f) > 0) throw CLI::ValidationError(f, "only with --measure");
      if (!opt->json_file.empty()) throw CLI::ValidationError("--json", "a FILE only with --measure");
    }
    // Every step runs (on the real clock, for real): bounded so a typo is not a day.
    if (opt->m.steps < 0 || opt->m.steps > kMaxMeasureSteps)
      throw CLI::ValidationError("--steps", fmt::format("{}: expected 0..{} steps per device", opt->m.steps,
                                                        kMaxMeasureSteps));
    out = [opt, json] {
      if (opt->measure) return run_measure(*opt, json);
      DiscoverOptions d;
      d.host_workers = opt->host_workers;
      DeviceList list = discover_devices(d);
      if (json) {
        fmt::print("{}\n", to_json(list).dump(2));
      } else {
        print_table(list);
      }
      return 0;
    };
  });
}

}  // namespace nbsgd::cli
