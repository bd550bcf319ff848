// Virtual devices on one GPU: does a green-context SM partition deliver its share
// of the GPU? Two partitions of GPU 0 (default 0.5 and 0.25 of the SMs, as
// `--devices 0:0.5,0:0.25`) each run the same compute-bound SGEMM alone; the
// ratio of their throughputs should follow the ratio of their SMs. Target: within
// 15%. Validates each partition's GEMM against a host reference first.
// Without a GPU it prints why and exits 0; without green contexts it exits 1.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <vector>

#include "nets/layers/blas.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"
#include "runtime/device/device.h"

using namespace nbsgd;

namespace {

bool validate(DeviceContext& ctx) {
  const int m = 67, n = 45, k = 129;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> d(-3, 3);  // small integers: the sums are exact
  std::vector<float> a(m * k), b(k * n), c(m * n, 0.0f), ref(m * n, 0.0f);
  for (auto& x : a) x = float(d(rng));
  for (auto& x : b) x = float(d(rng));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      for (int p = 0; p < k; ++p) ref[i * n + j] += a[i * k + p] * b[p * n + j];
  Buffer da(Backend::Cuda, 0, a.size() * 4), db(Backend::Cuda, 0, b.size() * 4), dc(Backend::Cuda, 0, c.size() * 4);
  Stream& s = ctx.compute();
  copy_async(s, da.data(), a.data(), a.size() * 4);
  copy_async(s, db.data(), b.data(), b.size() * 4);
  nets::gemm(ctx, false, false, m, n, k, 1.0f, da.as<float>(), k, db.as<float>(), n, 0.0f, dc.as<float>(), n);
  copy_async(s, c.data(), dc.data(), c.size() * 4);
  s.synchronize();
  return c == ref;
}

// Median seconds of one n x n x n SGEMM on the context's compute stream.
double time_gemm(DeviceContext& ctx, int n, int reps) {
  Buffer a(Backend::Cuda, 0, size_t(n) * n * 4), b(Backend::Cuda, 0, size_t(n) * n * 4),
      c(Backend::Cuda, 0, size_t(n) * n * 4);
  Stream& s = ctx.compute();
  std::vector<double> t;
  for (int r = 0; r < reps + 2; ++r) {
    Event e0 = ctx.event(Timing::On), e1 = ctx.event(Timing::On);
    s.record(e0);
    nets::gemm(ctx, false, false, n, n, n, 1.0f, a.as<float>(), n, b.as<float>(), n, 0.0f, c.as<float>(), n);
    s.record(e1);
    s.synchronize();
    if (r >= 2) t.push_back(Event::elapsed_s(e0, e1));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_green: throughput of green-context SM partitions against their SM share"};
  std::string json_path, fractions = "0.5,0.25";
  int n = 4096, reps = 10;
  app.add_option("--json", json_path, "Write the result as JSON to this file");
  app.add_option("--fractions", fractions, "Two SM fractions of GPU 0")->capture_default_str();
  app.add_option("--n", n, "GEMM size")->capture_default_str();
  app.add_option("--reps", reps, "Timed repetitions")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  auto write = [&](const nlohmann::json& j) {
    if (!json_path.empty()) std::ofstream(json_path) << j.dump(2) << "\n";
  };

  try {
    const DeviceList gpus = discover_devices();
    if (gpus.backend != Backend::Cuda) {
      std::printf("no GPU (%s): nothing to measure\n", gpus.fallback_reason.c_str());
      write({{"bench", "green"}, {"skipped", gpus.fallback_reason}});
      return 0;  // (under NBSGD_REQUIRE_GPU=1 discovery has thrown instead)
    }
    const auto comma = fractions.find(',');
    const DeviceList parts =
        select_devices(gpus, "0:" + fractions.substr(0, comma) + ",0:" + fractions.substr(comma + 1));
    if (parts.devices.size() != 2) throw InputError("--fractions: give exactly two fractions");
    std::vector<std::unique_ptr<DeviceContext>> ctx;
    for (const Device& d : parts.devices) ctx.push_back(std::make_unique<DeviceContext>(d, ClockKind::Real));
    if (ctx[0]->partition_sms() == 0 || ctx[1]->partition_sms() == 0) {
      std::printf("no green contexts on this machine (see the line above): the split cannot be checked\n");
      write({{"bench", "green"}, {"error", "no green contexts"}});
      return 1;
    }
    for (auto& c : ctx)
      if (!validate(*c)) {
        std::printf("INVALID: GEMM on a partition differs from the host reference\n");
        return 1;
      }
    const double flop = 2.0 * n * double(n) * n;
    double tput[2];
    std::printf("%s\n", fmt::format("{:<9} {:>8} {:>5} {:>10} {:>10}", "fraction", "SMs", "of", "ms/GEMM",
                                    "TFLOP/s")
                            .c_str());
    for (int i = 0; i < 2; ++i) {
      const double t = time_gemm(*ctx[i], n, reps);
      tput[i] = flop / t;
      std::printf("%s\n", fmt::format("{:<9} {:>8} {:>5} {:>10.3f} {:>10.2f}", parts.devices[i].sm_fraction,
                                      ctx[i]->partition_sms(), gpus.devices[0].sms, t * 1e3, tput[i] * 1e-12)
                              .c_str());
    }
    const double sm_ratio = double(ctx[0]->partition_sms()) / ctx[1]->partition_sms();
    const double tput_ratio = tput[0] / tput[1];
    const double dev = tput_ratio / sm_ratio - 1.0;
    const bool ok = std::abs(dev) <= 0.15;
    std::printf("throughput ratio %.3f, SM ratio %.3f: %+.1f%% (target within 15%%): %s\n", tput_ratio, sm_ratio,
                100 * dev, ok ? "ok" : "MISS");
    write({{"bench", "green"},
           {"gpu", gpus.devices[0].name},
           {"fractions", {parts.devices[0].sm_fraction, parts.devices[1].sm_fraction}},
           {"sms", {ctx[0]->partition_sms(), ctx[1]->partition_sms()}},
           {"device_sms", gpus.devices[0].sms},
           {"gemm_n", n},
           {"flops_per_s", {tput[0], tput[1]}},
           {"throughput_ratio", tput_ratio},
           {"sm_ratio", sm_ratio},
           {"deviation", dev},
           {"on_target", ok}});
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_green: %s\n", e.what());
    return 1;
  }
}
