// The fused optimizer update's bandwidth against a device-to-device copy of the same
// number of bytes, on each backend present (host always; CUDA when a GPU is usable).
//
//   bytes moved, per parameter:  fused SGD + momentum: w, buf, G read + written = 24 B
//                                fused SGD, no momentum: w, G read + written    = 16 B
//                                commit: scratch read, accumulator r+w          = 12 B
//   the copy baseline moves the same bytes (half read, half written).
// Validates the fused update against the reference first; then warms up and times
// each op `--reps` times with events on its stream, reporting median, min and max.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "nets/optim/commit.h"
#include "nets/optim/sgd.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/device.h"
#include "runtime/device/stream.h"

using namespace nbsgd;

namespace {

Stream make_stream(Backend b) {
  StreamOptions o;
  o.name = "bench";
  return b == Backend::Cuda ? Stream::cuda(0, o) : Stream::host(o);
}

// The fused kernel on P = 10007 against the double reference, three steps.
bool validate(Backend b) {
  const size_t P = 10007;
  Stream s = make_stream(b);
  std::mt19937 rng(1);
  std::normal_distribution<float> d;
  std::vector<float> w(P), acc(P + 2);
  for (auto& x : w) x = d(rng);
  Buffer dw(b, 0, P * 4), dm(b, 0, P * 4), da(b, 0, (P + 2) * 4);
  copy_async(s, dw.data(), w.data(), P * 4);
  optim::SgdConfig cfg{0.1, 0.9, 5e-4, true, 0.0};
  optim::SgdReference ref(P);
  for (int step = 0; step < 3; ++step) {
    for (auto& x : acc) x = d(rng) * 32.0f;
    acc[P] = 32.0f;
    copy_async(s, da.data(), acc.data(), (P + 2) * 4);
    s.synchronize();
    optim::fused_sgd_update(s, dw.as<float>(), dm.as<float>(), da.as<float>(), P, 0.1f, cfg, 1.0f);
    ref.step(w, acc, 0.1, cfg, 1.0);
  }
  std::vector<float> got(P);
  copy_async(s, got.data(), dw.data(), P * 4);
  s.synchronize();
  for (size_t i = 0; i < P; ++i)
    if (std::fabs(got[i] - w[i]) > 1e-5 * (1.0 + std::fabs(w[i]))) {
      std::fprintf(stderr, "validation failed on %s at %zu: %g vs %g\n", to_string(b), i, got[i], w[i]);
      return false;
    }
  return true;
}

struct Row {
  std::string backend, op;
  size_t P = 0;
  double bytes = 0, median_s = 0, min_s = 0, max_s = 0, copy_median_s = 0;
};

// Times `op` reps times; `prepare` runs before each rep, outside the timed region.
template <class Prep, class Op>
std::vector<double> time_op(Stream& s, Backend b, int warmup, int reps, Prep prepare, Op op) {
  Event a(b, 0, Timing::On), e(b, 0, Timing::On);
  std::vector<double> t;
  for (int r = 0; r < warmup + reps; ++r) {
    prepare();
    s.record(a);
    op();
    s.record(e);
    e.synchronize();
    if (r >= warmup) t.push_back(Event::elapsed_s(a, e));
  }
  std::sort(t.begin(), t.end());
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fused optimizer update bandwidth vs a device-to-device copy"};
  std::vector<size_t> sizes = {1u << 20, 11'689'512, 25'557'032};  // 1M, ResNet-18, ResNet-50
  int reps = 20, warmup = 3;
  std::string json_path;
  app.add_option("--sizes", sizes, "parameter counts P")->capture_default_str();
  app.add_option("--reps", reps, "timed repetitions per op")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed repetitions first")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--json", json_path, "write the rows as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<Backend> backends = {Backend::Host};
    DeviceList gpus = discover_devices();
    if (gpus.backend == Backend::Cuda) backends.push_back(Backend::Cuda);
    else std::printf("# no GPU: %s\n", gpus.fallback_reason.c_str());

    std::vector<Row> rows;
    for (Backend b : backends) {
      if (!validate(b)) return 1;
      Stream s = make_stream(b);
      for (size_t P : sizes) {
        Buffer w(b, 0, P * 4), m(b, 0, P * 4), acc(b, 0, (P + 2) * 4), scratch(b, 0, (P + 2) * 4);
        Buffer src(b, 0, 12 * P), dst(b, 0, 12 * P);
        const float n = 64.0f;
        // The update clears n; put it back before each rep so every rep does the work.
        auto restore_n = [&] { copy_async(s, acc.as<float>() + P, &n, 4); };
        auto nothing = [] {};
        struct Op {
          const char* name;
          double bytes_per_param;
        };
        const optim::SgdConfig mom{0.1, 0.9, 5e-4, false, 0.0}, plain{0.1, 0.0, 0.0, false, 0.0};
        for (Op o : {Op{"sgd+momentum", 24}, Op{"sgd", 16}, Op{"commit", 12}}) {
          const std::string name = o.name;
          std::vector<double> t;
          if (name == "commit") {
            t = time_op(s, b, warmup, reps, nothing,
                        [&] { optim::commit(s, scratch.as<float>(), acc.as<float>(), P); });
          } else {
            const optim::SgdConfig& cfg = name == "sgd" ? plain : mom;
            t = time_op(s, b, warmup, reps, restore_n, [&] {
              optim::fused_sgd_update(s, w.as<float>(), m.as<float>(), acc.as<float>(), P, 0.1f, cfg, 1.0f);
            });
          }
          const size_t half = static_cast<size_t>(o.bytes_per_param / 2 * static_cast<double>(P));
          std::vector<double> c =
              time_op(s, b, warmup, reps, nothing, [&] { copy_async(s, dst.data(), src.data(), half); });
          rows.push_back({to_string(b), name, P, o.bytes_per_param * static_cast<double>(P), t[t.size() / 2],
                          t.front(), t.back(), c[c.size() / 2]});
        }
      }
    }

    std::printf("%-7s %-13s %11s %10s %10s %10s %10s %9s %9s\n", "backend", "op", "P", "MB", "median_ms",
                "min_ms", "max_ms", "GB/s", "vs_copy");
    nlohmann::json out = nlohmann::json::array();
    for (const Row& r : rows) {
      const double gbps = r.bytes / r.median_s * 1e-9, copy_gbps = r.bytes / r.copy_median_s * 1e-9;
      std::printf("%-7s %-13s %11zu %10.1f %10.4f %10.4f %10.4f %9.1f %9.2f\n", r.backend.c_str(), r.op.c_str(), r.P,
                  r.bytes * 1e-6, r.median_s * 1e3, r.min_s * 1e3, r.max_s * 1e3, gbps, gbps / copy_gbps);
      out.push_back({{"backend", r.backend}, {"op", r.op}, {"P", r.P}, {"bytes", r.bytes},
                     {"median_s", r.median_s}, {"min_s", r.min_s}, {"max_s", r.max_s}, {"GBps", gbps},
                     {"copy_median_s", r.copy_median_s}, {"copy_GBps", copy_gbps}, {"vs_copy", gbps / copy_gbps}});
    }
    if (!json_path.empty()) {
      // Written to a temporary name and renamed, so a failed run leaves no half file.
      const std::string tmp = json_path + ".tmp";
      {
        std::ofstream f(tmp);
        f << nlohmann::json{{"bench", "update"}, {"reps", reps}, {"rows", out}}.dump(2) << "\n";
        if (!f) throw Error("cannot write " + tmp);
      }
      if (std::rename(tmp.c_str(), json_path.c_str()) != 0) throw Error("cannot rename " + tmp + " to " + json_path);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_update: %s\n", e.what());
    return 1;
  }
  return 0;
}
