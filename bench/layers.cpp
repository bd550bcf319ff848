// Host time per layer: each layer of a net built on its own (random inputs,
// parameters and output gradients), its forward (training mode) and backward
// timed separately over `--reps` runs of `--iters` calls each, with the stream
// synchronised only around a run: the median and the best run (on a shared
// machine the best is the layer's own cost, the median what a step met). Shows where a host step goes and
// what one change to a layer buys; it is not the model's step (no data staging,
// no loss, no optimizer; caches are warmer than in a whole step). As in a model,
// no gradient is computed for the network input.
//
//   bench_layers --net resnet20 --batch 128 --threads 2
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "nets/layers/layer.h"
#include "nets/models.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"
#include "runtime/device/device.h"

using namespace nbsgd;
using namespace nbsgd::nets;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<float> random_floats(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

struct Ms {
  double median = 0, min = 0;
};

struct Timed {
  std::string name, kind;
  Shape out;
  Ms fwd, bwd;
};

// Wall time in ms of one call of `f`, enqueued iters times per run.
template <class F>
Ms time_ms(Stream& s, int reps, int iters, F&& f) {
  f();  // warm: primitives and workspaces made
  s.synchronize();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s();
    for (int i = 0; i < iters; ++i) f();
    s.synchronize();
    t.push_back((now_s() - t0) * 1e3 / iters);
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front()};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_layers: host forward and backward time per layer of a net"};
  std::string net = "resnet20", json_path;
  int batch = 128, reps = 5, iters = 5, threads = omp_get_num_procs();
  app.add_option("--net", net, "Built-in net or description file")->capture_default_str();
  app.add_option("--batch", batch, "Samples per call")->capture_default_str()->check(CLI::Range(1, 65536));
  app.add_option("--reps", reps, "Timed runs per pass (median reported)")->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("--iters", iters, "Calls per timed run")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--threads", threads, "OpenMP threads of the stream's thread")->capture_default_str();
  app.add_option("--json", json_path, "Also write the rows as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    const NetSpec spec = describe_net(net);
    Device d;
    d.name = "host0";
    d.kind = "host";
    DeviceContext ctx(d, ClockKind::Real);
    Stream& s = ctx.compute();
    s.host_task([threads] { omp_set_num_threads(threads); });
    std::mt19937 rng(3);

    std::vector<Shape> shapes;
    std::vector<Timed> rows;
    Ms fwd_total, bwd_total;
    for (const LayerSpec& ls : spec.layers) {
      std::vector<Shape> in;
      for (int i : ls.inputs) in.push_back(i < 0 ? spec.input : shapes[i]);
      std::unique_ptr<Layer> layer = make_layer(ctx, ls, in, batch);
      const Shape out = layer->out_shape();
      shapes.push_back(out);
      int64_t np = 0, nb = 0;
      for (const TensorDecl& t : layer->params()) np += t.numel();
      for (const TensorDecl& t : layer->buffers()) nb += t.numel();
      // Parameters near their initial scale; BatchNorm running variances positive.
      std::vector<float> p = random_floats(size_t(np), rng), b(size_t(nb), 1.0f);
      std::vector<Buffer> xs, dxs;
      std::vector<const float*> xp;
      std::vector<float*> dxp;
      for (const Shape& sh : in) {
        const auto v = random_floats(size_t(batch) * sh.size(), rng);
        xs.emplace_back(Backend::Host, 0, v.size() * 4);
        std::copy(v.begin(), v.end(), xs.back().as<float>());
        dxs.emplace_back(Backend::Host, 0, v.size() * 4);
        xp.push_back(xs.back().as<float>());
        dxp.push_back(dxs.back().as<float>());
      }
      // As in a model: the network input's gradient is never computed.
      for (size_t j = 0; j < in.size(); ++j) {
        if (ls.inputs[j] < 0) dxp[j] = nullptr;
      }
      const auto dyv = random_floats(size_t(batch) * out.size(), rng);
      Buffer y(Backend::Host, 0, dyv.size() * 4), dy(Backend::Host, 0, dyv.size() * 4),
          dp(Backend::Host, 0, std::max<size_t>(1, size_t(np)) * 4);
      std::copy(dyv.begin(), dyv.end(), dy.as<float>());
      layer->bind(p.data(), b.data());
      bool accv[2] = {false, false};
      Timed t{ls.name.empty() ? "-" : ls.name, to_string(ls.kind), out, {}, {}};
      t.fwd = time_ms(s, reps, iters, [&] { layer->forward(xp, y.as<float>(), batch, true); });
      t.bwd = time_ms(s, reps, iters, [&] {
        layer->backward(xp, y.as<float>(), dy.as<float>(), dxp, std::span<const bool>(accv, in.size()), dp.as<float>(),
                        batch);
      });
      fwd_total.median += t.fwd.median;
      fwd_total.min += t.fwd.min;
      bwd_total.median += t.bwd.median;
      bwd_total.min += t.bwd.min;
      rows.push_back(t);
    }

    std::printf("%s, batch %d, %d threads, host backend, wall ms per call (median and best of %d runs of %d)\n",
                spec.name.c_str(), batch, threads, reps, iters);
    std::printf("%-4s %-20s %-15s %-10s %9s %9s %9s %9s %6s\n", "#", "layer", "kind", "output", "fwd med", "fwd min",
                "bwd med", "bwd min", "share");
    const double all = fwd_total.min + bwd_total.min;
    for (size_t i = 0; i < rows.size(); ++i) {
      const Timed& r = rows[i];
      std::printf("%-4zu %-20s %-15s %-10s %9.3f %9.3f %9.3f %9.3f %5.1f%%\n", i, r.name.c_str(), r.kind.c_str(),
                  fmt::format("{}x{}x{}", r.out.c, r.out.h, r.out.w).c_str(), r.fwd.median, r.fwd.min, r.bwd.median,
                  r.bwd.min, 100 * (r.fwd.min + r.bwd.min) / all);
    }
    std::printf("%-4s %-20s %-15s %-10s %9.3f %9.3f %9.3f %9.3f  -> %.0f samples/s (best runs), %.0f (medians)\n", "",
                "total", "", "", fwd_total.median, fwd_total.min, bwd_total.median, bwd_total.min, batch * 1e3 / all,
                batch * 1e3 / (fwd_total.median + bwd_total.median));
    if (!json_path.empty()) {
      nlohmann::json j;
      j["bench"] = "layers";
      j["net"] = spec.name;
      j["batch"] = batch;
      j["threads"] = threads;
      for (const Timed& r : rows)
        j["rows"].push_back({{"layer", r.name}, {"kind", r.kind}, {"fwd_ms_median", r.fwd.median}, {"fwd_ms_min", r.fwd.min},
                               {"bwd_ms_median", r.bwd.median}, {"bwd_ms_min", r.bwd.min}});
      std::ofstream(json_path) << j.dump(1) << "\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_layers: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
