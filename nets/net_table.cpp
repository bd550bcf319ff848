#include "nets/net_table.h"

#include <fmt/format.h>

#include "runtime/device/check.h"

namespace nbsgd::nets {

namespace {

// Parameter and buffer counts as the layers declare them (nets/layers/*.cpp);
// Model::create checks the two agree for every layer it builds.
void count(LayerRow& r) {
  const LayerSpec& s = r.spec;
  const Shape& x = r.in[0];
  switch (s.kind) {
    case LayerKind::Conv2d: {
      const double taps = double(x.c) * s.kernel * s.kernel;
      r.params = int64_t(s.out) * x.c * s.kernel * s.kernel + (s.bias ? s.out : 0);
      r.macs = double(r.out.c) * r.out.h * r.out.w * taps;
      break;
    }
    case LayerKind::Linear:
      r.params = int64_t(s.out) * x.size() + (s.bias ? s.out : 0);
      r.macs = double(x.size()) * s.out;
      break;
    case LayerKind::BatchNorm2d:
      r.params = 2 * int64_t(x.c);
      r.buffers = 2 * int64_t(x.c);
      break;
    default: break;
  }
}

}  // namespace

NetTable net_table(const NetSpec& net) {
  NetTable t;
  std::vector<Shape> shapes;
  for (size_t k = 0; k < net.layers.size(); ++k) {
    LayerRow r;
    r.index = int(k);
    r.spec = net.layers[k];
    for (int i : r.spec.inputs) {
      NBSGD_CHECK(i >= -1 && i < int(k), "net '" + net.name + "': a layer input refers to a later entry");
      r.in.push_back(i < 0 ? net.input : shapes[i]);
    }
    r.out = infer_shape(r.spec, r.in);
    shapes.push_back(r.out);
    count(r);
    t.rows.push_back(std::move(r));
  }
  // A layer computes an input gradient when one of its inputs is an entry (not the
  // network input) once Flatten aliases are looked through, as Model routes them.
  auto storage = [&](int i) {
    while (i >= 0 && net.layers[i].kind == LayerKind::Flatten) i = net.layers[i].inputs[0];
    return i;
  };
  for (LayerRow& r : t.rows) {
    if (r.spec.kind != LayerKind::Flatten)
      for (int i : r.spec.inputs) r.wants_dx = r.wants_dx || storage(i) >= 0;
    r.train_flops = 2.0 * r.macs * (r.wants_dx ? 3.0 : 2.0);
    t.params += r.params;
    t.buffers += r.buffers;
    t.macs += r.macs;
    t.train_flops += r.train_flops;
  }
  return t;
}

std::string format_net_table(const NetSpec& net, const NetTable& t) {
  auto shape = [](const Shape& s) { return fmt::format("{}x{}x{}", s.c, s.h, s.w); };
  auto inputs = [](const LayerSpec& s) {
    std::string v;
    for (int i : s.inputs) {
      if (!v.empty()) v += ',';
      v += i < 0 ? std::string("in") : std::to_string(i);
    }
    return v;
  };
  std::string o = fmt::format("net {}: input {}, {} classes\n", net.name, shape(net.input), net.classes);
  o += fmt::format("{:>3}  {:<15} {:<22} {:<7} {:>10} {:>11} {:>14} {:>14}\n", "#", "layer", "name", "from",
                   "output", "params", "fwd FLOPs", "train FLOPs");
  for (const LayerRow& r : t.rows)
    o += fmt::format("{:>3}  {:<15} {:<22} {:<7} {:>10} {:>11} {:>14.0f} {:>14.0f}\n", r.index,
                     to_string(r.spec.kind), r.spec.name.empty() ? "-" : r.spec.name, inputs(r.spec), shape(r.out),
                     r.params, 2.0 * r.macs, r.train_flops);
  o += fmt::format("total: {} parameters, {} BatchNorm buffer values, {:.4g} MFLOPs forward and {:.4g} MFLOPs "
                   "training per sample\n",
                   t.params, t.buffers, 2.0 * t.macs * 1e-6, t.train_flops * 1e-6);
  return o;
}

}  // namespace nbsgd::nets
