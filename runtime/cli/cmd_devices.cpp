// nbsgd devices [--json] [--host-workers N]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "runtime/cli/commands.h"
#include "runtime/device.h"

namespace nbsgd::cli {

namespace {
struct DevicesOptions {
  bool json = false;
  int host_workers = 0;
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
}  // namespace

void add_devices_command(CLI::App& root, Runner& out) {
  auto opt = std::make_shared<DevicesOptions>();
  CLI::App* sub = root.add_subcommand("devices", "List the devices nbsgd would train on");
  sub->add_flag("--json", opt->json, "Print JSON instead of a table");
  sub->add_option("--host-workers", opt->host_workers, "Use N host workers instead of GPUs")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  sub->callback([opt, &out] {
    out = [opt] {
      DiscoverOptions d;
      d.host_workers = opt->host_workers;
      DeviceList list = discover_devices(d);
      if (opt->json) {
        fmt::print("{}\n", to_json(list).dump(2));
      } else {
        print_table(list);
      }
      return 0;
    };
  });
}

}  // namespace nbsgd::cli
