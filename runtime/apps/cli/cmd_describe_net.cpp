// nbsgd describe-net NET [--json]
//
// The layer table of a net (a built-in name or a .toml description): each entry's
// output shape, parameters and FLOPs per sample, from the same computation that
// gives Model::flops_per_sample() (nets/net_table.h), so what this prints is what
// predict and the virtual clock cost.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "nets/models.h"
#include "nets/net_table.h"
#include "runtime/apps/cli/commands.h"

namespace nbsgd::cli {

namespace {

struct DescribeNetOptions {
  std::string net;
  bool json = false;
};

nlohmann::json to_json(const nets::NetSpec& net, const nets::NetTable& t) {
  auto shape = [](const nets::Shape& s) { return nlohmann::json::array({s.c, s.h, s.w}); };
  nlohmann::json j{{"net", net.name},       {"signature", nets::net_signature(net)},
                   {"input", shape(net.input)}, {"classes", net.classes},
                   {"params", t.params},    {"bn_buffers", t.buffers},
                   {"forward_flops_per_sample", 2.0 * t.macs}, {"train_flops_per_sample", t.train_flops}};
  j["layers"] = nlohmann::json::array();
  for (const nets::LayerRow& r : t.rows)
    j["layers"].push_back({{"index", r.index},
                           {"type", nets::to_string(r.spec.kind)},
                           {"name", r.spec.name},
                           {"inputs", r.spec.inputs},
                           {"output", shape(r.out)},
                           {"params", r.params},
                           {"forward_flops", 2.0 * r.macs},
                           {"train_flops", r.train_flops}});
  return j;
}

}  // namespace

void add_describe_net_command(CLI::App& root, Runner& out) {
  auto opt = std::make_shared<DescribeNetOptions>();
  CLI::App* sub = root.add_subcommand(
      "describe-net", "Print a net's layers with output shapes, parameters and FLOPs per sample");
  sub->add_option("net", opt->net, "A built-in net (" + [] {
    std::string s;
    for (const std::string& n : nets::net_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
  }() + ") or a .toml description file")->required();
  sub->add_flag("--json", opt->json, "Print JSON instead of the table");
  sub->callback([opt, &out] {
    out = [opt] {
      const nets::NetSpec net = nets::describe_net(opt->net);
      const nets::NetTable t = nets::net_table(net);
      if (opt->json)
        fmt::print("{}\n", to_json(net, t).dump(2));
      else
        fmt::print("{}", nets::format_net_table(net, t));
      return 0;
    };
  });
}

}  // namespace nbsgd::cli
