// Training throughput of each net on each backend present: samples/s of
// forward + backward + a plain SGD update on one worker, the FLOPs per sample the
// model counts from its layer shapes, the achieved GFLOP/s, and, as the host's
// ceiling, OpenBLAS sgemm GFLOP/s on 1024^3 measured in the same run.
//
// Validates first (one step gives a finite loss and the sample count), warms up,
// then times `--reps` runs of `--steps` steps each and reports the median and the
// spread. Host targets (reported, not enforced): LeNet at least 10% of the sgemm
// ceiling, ResNet-20 at least 25%.
#include <CLI/CLI.hpp>
#include <cblas.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kernels/basic.h"
#include "nets/model.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"
#include "runtime/device/device.h"

using namespace nbsgd;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Spread {
  double median = 0, min = 0, max = 0;
};
Spread spread(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

// sgemm 1024^3 on the host, GFLOP/s (median of reps).
Spread sgemm_gflops(int reps) {
  const int n = 1024;
  std::vector<float> a(size_t(n) * n), b(size_t(n) * n), c(size_t(n) * n);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto& x : a) x = u(rng);
  for (auto& x : b) x = u(rng);
  std::vector<double> g;
  for (int r = 0; r < reps + 2; ++r) {
    const double t0 = now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    const double t = now_s() - t0;
    if (r >= 2) g.push_back(2.0 * n * n * n / t / 1e9);
  }
  return spread(g);
}

struct Row {
  std::string backend, net;
  int batch = 0, steps = 0;
  double flops_per_sample = 0;
  Spread samples_per_s;
  double gflops = 0, ceiling_fraction = 0;  // fraction: host only
  double first_loss = 0;
};

Row measure(DeviceContext& ctx, const std::string& net, int batch, int steps, int warmup, int reps) {
  nets::Model m = nets::Model::create(net, ctx, batch, 1);
  const size_t P = m.num_params(), S = m.input_size();
  std::mt19937 rng(2);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(size_t(batch) * S);
  for (auto& v : x) v = g(rng);
  std::vector<int32_t> y(batch);
  for (int i = 0; i < batch; ++i) y[i] = i % m.classes();
  const int dev = ctx.device().ordinal;
  Buffer dx(ctx.backend(), dev, x.size() * 4), dy(ctx.backend(), dev, y.size() * 4),
      scratch(ctx.backend(), dev, (P + 2) * 4);
  Stream& s = ctx.compute();
  copy_async(s, dx.data(), x.data(), x.size() * 4);
  copy_async(s, dy.data(), y.data(), y.size() * 4);
  const float lr = 0.01f;
  auto step = [&] {
    m.forward_backward(dx.as<float>(), dy.as<int32_t>(), batch, scratch.as<float>());
    kernels::axpy(s, -lr / float(batch), scratch.as<float>(), m.params(), P);
  };

  // Validate before timing.
  step();
  float tail[2];
  copy_async(s, tail, scratch.as<float>() + P, sizeof tail);
  s.synchronize();
  if (tail[0] != float(batch) || !std::isfinite(tail[1]))
    throw nbsgd::Error(fmt::format("{} on {}: count {} loss {} after one step", net, to_string(ctx.backend()), tail[0], tail[1]));

  for (int i = 0; i < warmup; ++i) step();
  s.synchronize();
  std::vector<double> rates;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s();
    for (int i = 0; i < steps; ++i) step();
    s.synchronize();
    rates.push_back(double(batch) * steps / (now_s() - t0));
  }
  Row row;
  row.backend = to_string(ctx.backend());
  row.net = net;
  row.batch = batch;
  row.steps = steps;
  row.flops_per_sample = m.flops_per_sample();
  row.samples_per_s = spread(rates);
  row.gflops = row.samples_per_s.median * row.flops_per_sample / 1e9;
  row.first_loss = tail[1] / float(batch);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_throughput: training samples/s and GFLOP/s per net and backend"};
  std::string json_path = "bench-throughput.json";
  std::vector<std::string> nets_list{"mlp", "lenet", "resnet20"};
  int reps = 5, warmup = 2, threads = omp_get_num_procs();
  double seconds = 1.0;
  app.add_option("--json", json_path, "Write the rows as JSON to this file")->capture_default_str();
  app.add_option("--nets", nets_list, "Nets to run")->capture_default_str();
  app.add_option("--reps", reps, "Timed runs per net (median reported)")->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("--warmup", warmup, "Untimed steps first")->capture_default_str();
  app.add_option("--seconds", seconds, "Rough length of one timed run (sets the steps per run)")->capture_default_str();
  app.add_option("--threads", threads, "OpenMP threads of the host backend (one worker: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    // The ceiling is the better of two measurements, before and after the nets: on a
    // shared machine one of them may have met other load.
    Spread ceiling = sgemm_gflops(reps);
    std::printf("host sgemm 1024^3: %.1f GFLOP/s (median; min %.1f, max %.1f), %d threads\n", ceiling.median,
                ceiling.min, ceiling.max, threads);

    std::vector<Device> devices;
    {
      Device h;
      h.name = "host0";
      h.kind = "host";
      devices.push_back(h);
      DeviceList l = discover_devices();
      if (l.backend == Backend::Cuda && !l.devices.empty()) devices.push_back(l.devices[0]);
      else std::printf("cuda: skipped (%s)\n", l.fallback_reason.c_str());
    }

    std::vector<Row> rows;
    for (const Device& d : devices) {
      DeviceContext ctx(d, ClockKind::Real);
      for (const std::string& net : nets_list) {
        const int batch = net == "resnet20" ? 64 : 128;
        // One probe step sizes the timed runs to about --seconds each.
        Row probe = measure(ctx, net, batch, 1, 0, 1);
        const int steps = std::max(1, int(seconds * probe.samples_per_s.median / batch));
        Row r = measure(ctx, net, batch, steps, warmup, reps);
        rows.push_back(r);
      }
    }

    const Spread again = sgemm_gflops(reps);
    if (again.median > ceiling.median) ceiling = again;
    for (Row& r : rows)
      if (r.backend == "host") r.ceiling_fraction = r.gflops / ceiling.median;
    std::printf("host sgemm 1024^3 after the nets: %.1f GFLOP/s; ceiling used: %.1f\n", again.median, ceiling.median);

    std::printf("\n%-7s %-9s %6s %6s %12s %12s %12s %10s %9s %8s\n", "backend", "net", "batch", "steps", "samples/s",
                "min", "max", "MFLOP/smp", "GFLOP/s", "ceiling");
    for (const Row& r : rows)
      std::printf("%-7s %-9s %6d %6d %12.1f %12.1f %12.1f %10.2f %9.2f %8s\n", r.backend.c_str(), r.net.c_str(),
                  r.batch, r.steps, r.samples_per_s.median, r.samples_per_s.min, r.samples_per_s.max,
                  r.flops_per_sample / 1e6, r.gflops,
                  r.backend == "host" ? fmt::format("{:.1f}%", 100 * r.ceiling_fraction).c_str() : "-");

    nlohmann::json j;
    j["bench"] = "throughput";
    j["host_sgemm_gflops"] = {{"median", ceiling.median}, {"min", ceiling.min}, {"max", ceiling.max}};
    j["threads"] = threads;
    for (const Row& r : rows)
      j["rows"].push_back({{"backend", r.backend},
                           {"net", r.net},
                           {"batch", r.batch},
                           {"steps_per_run", r.steps},
                           {"reps", reps},
                           {"samples_per_s", {{"median", r.samples_per_s.median}, {"min", r.samples_per_s.min}, {"max", r.samples_per_s.max}}},
                           {"flops_per_sample", r.flops_per_sample},
                           {"gflops", r.gflops},
                           {"fraction_of_host_sgemm", r.backend == "host" ? nlohmann::json(r.ceiling_fraction) : nlohmann::json()},
                           {"first_step_mean_loss", r.first_loss}});
    const std::string tmp = json_path + ".tmp";
    {
      std::ofstream f(tmp);
      if (!f) throw nbsgd::InputError("--json " + json_path + ": cannot write");
      f << j.dump(2) << "\n";
      if (!f.flush()) throw nbsgd::InputError("--json " + json_path + ": write failed");
    }
    std::rename(tmp.c_str(), json_path.c_str());
    std::printf("\nwrote %s\n", json_path.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_throughput: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
