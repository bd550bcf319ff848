// bench_issue: the work the engine enqueues per mini-batch and per step (issue 13,
// item 4), counted by the streams as it is enqueued (stream.h, IssueCounts): kernel
// launches, library calls (cuBLAS/cuDNN), host functions, stream waits, event
// records and copies. Counted on the host backend, whose issue path is the CUDA
// path call for call: each host twin of a kernel, library call or copy is counted as
// that operation, and host-only bookkeeping is left out. A GPU's counts differ only
// by what its libraries launch inside one call (cuDNN's own kernels), which no
// counter outside the library sees.
//
// For LeNet (Fashion-MNIST) and ResNet-20 (synthetic CIFAR), on the real clock,
// 2 host workers, --window sync and --window fastest: a run of A steps and one of B,
// the difference of their counts summed over the workers, divided by the
// mini-batches issued in between (computed or cancelled before they began: every
// one was enqueued) for the compute and copy streams, and by the steps times the
// workers for the comm and update streams. The table goes to stdout, JSON to --json.
#include <CLI/CLI.hpp>
#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/train/engine.h"

namespace {

using nbsgd::IssueCounts;
namespace engine = nbsgd::engine;

struct Row {
  std::string net, window;
  int64_t steps = 0, minibatches = 0;  // worker-steps; mini-batches issued
  std::array<IssueCounts, 4> per_step;  // compute, copy, comm, update: totals over the steps
};

nlohmann::json to_json(const IssueCounts& c) {
  return {{"launch", c.launch}, {"library", c.library}, {"host_function", c.host_function},
          {"wait", c.wait},     {"record", c.record},   {"copy", c.copy}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_issue: the engine's enqueued work per mini-batch and per step"};
  std::string json, data_dir = "/usr/share/datasets/fashion-mnist";
  std::string gather = "device";
  int a = 2, b = 6;
  app.add_option("--json", json, "Write results here");
  app.add_option("--data-dir", data_dir, "Fashion-MNIST directory")->capture_default_str();
  app.add_option("--gather", gather, "Where mini-batches are formed: device or host (nbsgd train --gather)")
      ->check(CLI::IsMember({"device", "host"}))
      ->capture_default_str();
  app.add_option("--from", a, "Steps of the first run")->capture_default_str();
  app.add_option("--to", b, "Steps of the second")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (a < 1 || b <= a) {
    std::fprintf(stderr, "bench_issue: --from must be >= 1 and --to > --from\n");
    return 2;
  }
  std::vector<Row> rows;
  for (const char* net : {"lenet", "resnet20"}) {
    for (const char* window : {"sync", "fastest"}) {
      engine::TrainConfig t;
      t.net = net;
      if (std::string(net) == "lenet") {
        t.data_dir = data_dir;
        t.batch = 64;
        t.split = 8;
      } else {
        t.data = "synthetic-cifar";
        t.batch = 32;
        t.split = 4;
      }
      t.train_limit = 4096;
      t.test_limit = 64;
      t.host_workers = 2;
      t.clock = "real";
      t.window = window;
      t.gather = gather;
      t.quiet = true;
      // Two runs, of A and of B steps: the difference is B - A steps' work, the
      // set-up and the final evaluation cancelling out. Summed over both workers.
      auto totals = [&](int steps, int64_t& issued) {
        t.steps = steps;
        engine::Engine eng(t);
        const engine::RunSummary sum = eng.run([](const engine::StepRecord&) {});
        issued = sum.computed_minibatches + sum.skipped_minibatches;
        std::array<IssueCounts, 4> all{};
        for (int w = 0; w < eng.workers(); ++w) {
          const auto c = eng.issue_counts(w);
          for (int k = 0; k < 4; ++k) all[k] += c[k];
        }
        return all;
      };
      int64_t issued_a = 0, issued_b = 0;
      const auto at_a = totals(a, issued_a), at_b = totals(b, issued_b);
      Row row{net, window, int64_t(b - a) * t.host_workers, issued_b - issued_a, {}};
      for (int k = 0; k < 4; ++k) row.per_step[k] = at_b[k] - at_a[k];
      rows.push_back(row);
    }
  }
  const char* streams[4] = {"compute", "copy", "comm", "update"};
  std::printf("bench_issue: host backend (its issue path mirrors CUDA's call for call), real clock, 2 host workers, "
              "steps %d..%d (a run of %d against one of %d), --gather %s\n",
              a + 1, b, b, a, gather.c_str());
  std::printf("per mini-batch issued (compute and copy streams) and per step and worker (comm and update streams)\n");
  std::printf("%-9s %-8s %-8s %7s %8s %8s %6s %7s %5s\n", "net", "window", "stream", "launch", "library", "hostfn",
              "wait", "record", "copy");
  nlohmann::json out = nlohmann::json::array();
  for (const Row& r : rows) {
    for (int k = 0; k < 4; ++k) {
      const bool per_mb = k < 2;
      const double d = per_mb ? double(r.minibatches) : double(r.steps);
      const IssueCounts& c = r.per_step[k];
      std::printf("%-9s %-8s %-8s %7.2f %8.2f %8.2f %6.2f %7.2f %5.2f  (per %s)\n", r.net.c_str(), r.window.c_str(),
                  streams[k], c.launch / d, c.library / d, c.host_function / d, c.wait / d, c.record / d, c.copy / d,
                  per_mb ? "mini-batch" : "step");
      out.push_back({{"net", r.net},
                     {"window", r.window},
                     {"gather", gather},
                     {"stream", streams[k]},
                     {"per", per_mb ? "mini-batch" : "step"},
                     {"divisor", d},
                     {"counts", to_json(c)}});
    }
  }
  if (!json.empty()) std::ofstream(json) << out.dump(2) << "\n";
  return 0;
}
