// Model: builds the layers of a description, lays out the flat buffers, and runs
// the graph forward in description order and backward in reverse order.
//
// Gradient routing: each entry's output gradient has one buffer. Walking the
// entries backwards, the first consumer to reach an entry writes its gradient and
// every later one adds to it (a residual block's input gets the shortcut's and the
// main path's), decided once here so that every call is write-or-add, never
// "zero, then add". Flatten entries alias their input's buffers (NCHW is already
// flat), so they cost nothing.
#include "nets/model.h"

#include <cmath>
#include <cstring>

#include "nets/data/rng.h"
#include "nets/layers/loss.h"
#include "nets/net_table.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"
#include "runtime/device/nvtx.h"

namespace nbsgd::nets {

struct Model::Impl {
  struct Node {
    std::unique_ptr<Layer> layer;
    LayerSpec spec;
    Buffer act, grad;  // empty for Flatten (aliased)
    size_t poff = 0, pcount = 0, boff = 0, bcount = 0;
    std::vector<bool> accumulate;  // per input: add into its gradient rather than write
  };

  DeviceContext* ctx = nullptr;
  NetSpec net;
  int max_batch = 0;
  std::vector<Node> nodes;
  std::vector<ParamInfo> pinfo, binfo;
  size_t P = 0, B = 0;
  Buffer params, bn, loss_work;
  const float* x = nullptr;  // network input of the mini-batch being enqueued
  double flops = 0.0;

  // Entry i's storage after looking through Flatten aliases (-1: network input).
  int storage(int i) const {
    while (i >= 0 && nodes[i].spec.kind == LayerKind::Flatten) i = nodes[i].spec.inputs[0];
    return i;
  }
  const float* act(int i) const {
    i = storage(i);
    return i < 0 ? x : nodes[i].act.as<float>();
  }
  float* grad(int i) const {
    i = storage(i);
    return i < 0 ? nullptr : nodes[i].grad.as<float>();
  }

  void run_forward(int n, bool train) {
    for (size_t i = 0; i < nodes.size(); ++i) {
      Node& nd = nodes[i];
      if (nd.spec.kind == LayerKind::Flatten) continue;
      const float* xs[2] = {nullptr, nullptr};
      for (size_t j = 0; j < nd.spec.inputs.size(); ++j) xs[j] = act(nd.spec.inputs[j]);
      nd.layer->forward(std::span<const float* const>(xs, nd.spec.inputs.size()), nd.act.as<float>(), n, train);
    }
  }

  void run_backward(int n, float* dparams) {
    for (size_t k = nodes.size(); k-- > 0;) {
      Node& nd = nodes[k];
      if (nd.spec.kind == LayerKind::Flatten) continue;
      const size_t m = nd.spec.inputs.size();
      const float* xs[2] = {nullptr, nullptr};
      float* dxs[2] = {nullptr, nullptr};
      bool acc[2] = {false, false};
      for (size_t j = 0; j < m; ++j) {
        xs[j] = act(nd.spec.inputs[j]);
        dxs[j] = grad(nd.spec.inputs[j]);
        acc[j] = nd.accumulate[j];
      }
      nd.layer->backward(std::span<const float* const>(xs, m), nd.act.as<float>(), nd.grad.as<float>(),
                         std::span<float* const>(dxs, m), std::span<const bool>(acc, m), dparams + nd.poff, n);
    }
  }
};

namespace {

void fill_init(std::vector<float>& out, size_t off, const TensorDecl& d, uint64_t seed) {
  const int64_t n = d.numel();
  if (d.init == Init::KaimingNormal) {
    data::Rng rng(seed);
    const double std = std::sqrt(2.0 / double(d.fan_in));
    for (int64_t i = 0; i < n; ++i) out[off + i] = static_cast<float>(std * rng.normal());
  } else {
    const float v = d.init == Init::One ? 1.0f : 0.0f;
    for (int64_t i = 0; i < n; ++i) out[off + i] = v;
  }
}

void upload(DeviceContext& ctx, float* dst, const std::vector<float>& src) {
  if (src.empty()) return;
  copy_async(ctx.compute(), dst, src.data(), src.size() * sizeof(float));
  ctx.compute().synchronize();
}

std::vector<float> download(DeviceContext& ctx, const float* src, size_t n) {
  std::vector<float> v(n);
  if (n == 0) return v;
  copy_async(ctx.compute(), v.data(), src, n * sizeof(float));
  ctx.compute().synchronize();
  return v;
}

}  // namespace

Model Model::create(const std::string& net, DeviceContext& ctx, int max_batch, uint64_t seed) {
  return create(describe_net(net), ctx, max_batch, seed);
}

Model Model::create(const NetSpec& net, DeviceContext& ctx, int max_batch, uint64_t seed) {
  NBSGD_CHECK(max_batch > 0, "max_batch must be positive");
  NBSGD_CHECK(!net.layers.empty(), "net '" + net.name + "' has no layers");
  auto m = std::make_unique<Impl>();
  m->ctx = &ctx;
  m->net = net;
  m->max_batch = max_batch;
  const Backend be = ctx.backend();
  const int dev = ctx.device().ordinal;
  // The FLOPs come from the same table `nbsgd describe-net` prints; the layers built
  // below must agree with it on every count.
  const NetTable table = net_table(net);
  m->flops = table.train_flops;

  std::vector<Shape> shapes;
  std::vector<TensorDecl> pdecl, bdecl;
  for (const LayerSpec& spec : net.layers) {
    Impl::Node nd;
    nd.spec = spec;
    std::vector<Shape> in;
    for (int i : spec.inputs) {
      NBSGD_CHECK(i >= -1 && i < int(shapes.size()), "net '" + net.name + "': a layer input refers to a later entry");
      in.push_back(i < 0 ? net.input : shapes[i]);
    }
    nd.layer = make_layer(ctx, spec, in, max_batch);
    const Shape out = nd.layer->out_shape();
    shapes.push_back(out);
    if (spec.kind != LayerKind::Flatten) {
      nd.act = Buffer(be, dev, size_t(max_batch) * out.size() * sizeof(float));
      nd.grad = Buffer(be, dev, size_t(max_batch) * out.size() * sizeof(float));
    }
    nd.poff = m->P;
    for (TensorDecl& d : nd.layer->params()) {
      NBSGD_CHECK(!spec.name.empty(), "a layer with parameters needs a name");
      m->pinfo.push_back({spec.name + "." + d.suffix, d.shape, m->P, size_t(d.numel())});
      m->P += d.numel();
      pdecl.push_back(d);
    }
    nd.pcount = m->P - nd.poff;
    nd.boff = m->B;
    for (TensorDecl& d : nd.layer->buffers()) {
      m->binfo.push_back({spec.name + "." + d.suffix, d.shape, m->B, size_t(d.numel())});
      m->B += d.numel();
      bdecl.push_back(d);
    }
    nd.bcount = m->B - nd.boff;
    const LayerRow& row = table.rows[m->nodes.size()];
    NBSGD_CHECK(row.out == out && int64_t(nd.pcount) == row.params && int64_t(nd.bcount) == row.buffers &&
                    row.macs == nd.layer->macs_per_sample(),
                "net '" + net.name + "': layer table and layer " + std::to_string(row.index) + " disagree");
    nd.accumulate.assign(spec.inputs.size(), false);
    m->nodes.push_back(std::move(nd));
  }
  NBSGD_CHECK(m->nodes.back().spec.kind != LayerKind::Flatten && shapes.back() == (Shape{net.classes, 1, 1}),
              "net '" + net.name + "' must end in a layer giving " + std::to_string(net.classes) + " logits");

  // Gradient routing (see the file comment).
  std::vector<bool> written(m->nodes.size(), false);
  for (size_t k = m->nodes.size(); k-- > 0;) {
    Impl::Node& nd = m->nodes[k];
    if (nd.spec.kind == LayerKind::Flatten) continue;
    for (size_t j = 0; j < nd.spec.inputs.size(); ++j) {
      const int s = m->storage(nd.spec.inputs[j]);
      if (s < 0) continue;
      nd.accumulate[j] = written[s];
      written[s] = true;
    }
  }
  for (size_t k = 0; k + 1 < m->nodes.size(); ++k)
    NBSGD_CHECK(m->nodes[k].spec.kind == LayerKind::Flatten || written[k],
                "net '" + net.name + "': entry " + std::to_string(k) + " does not lead to the output");

  m->params = Buffer(be, dev, std::max<size_t>(m->P, 1) * sizeof(float));
  m->bn = Buffer(be, dev, std::max<size_t>(m->B, 1) * sizeof(float));
  m->loss_work = Buffer(be, dev, size_t(2) * max_batch * sizeof(float));
  for (Impl::Node& nd : m->nodes) nd.layer->bind(m->params.as<float>() + nd.poff, m->bn.as<float>() + nd.boff);

  // Each tensor draws from its own stream of the seed, so a tensor's values do not
  // depend on the sizes of the ones before it.
  std::vector<float> host_p(m->P), host_b(m->B);
  for (size_t t = 0; t < pdecl.size(); ++t) fill_init(host_p, m->pinfo[t].offset, pdecl[t], data::derive_seed(seed, t));
  for (size_t t = 0; t < bdecl.size(); ++t) fill_init(host_b, m->binfo[t].offset, bdecl[t], 0);
  upload(ctx, m->params.as<float>(), host_p);
  upload(ctx, m->bn.as<float>(), host_b);
  return Model(std::move(m));
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

const std::string& Model::net_name() const { return impl_->net.name; }
std::string Model::description() const { return net_signature(impl_->net); }
int Model::input_channels() const { return impl_->net.input.c; }
int Model::input_height() const { return impl_->net.input.h; }
int Model::input_width() const { return impl_->net.input.w; }
size_t Model::input_size() const { return size_t(impl_->net.input.size()); }
int Model::classes() const { return impl_->net.classes; }
int Model::max_batch() const { return impl_->max_batch; }
DeviceContext& Model::context() const { return *impl_->ctx; }
size_t Model::num_params() const { return impl_->P; }
float* Model::params() const { return impl_->params.as<float>(); }
size_t Model::num_bn_buffers() const { return impl_->B; }
float* Model::bn_buffers() const { return impl_->bn.as<float>(); }
std::vector<ParamInfo> Model::param_info() const { return impl_->pinfo; }
std::vector<ParamInfo> Model::buffer_info() const { return impl_->binfo; }
double Model::flops_per_sample() const { return impl_->flops; }
const float* Model::logits() const { return impl_->act(int(impl_->nodes.size()) - 1); }

void Model::forward(const float* x, int count, bool train) {
  NBSGD_CHECK(count > 0 && count <= impl_->max_batch,
              "batch of " + std::to_string(count) + " for a model made for at most " + std::to_string(impl_->max_batch));
  impl_->x = x;
  impl_->run_forward(count, train);
}

void Model::forward_backward(const float* x, const int32_t* labels, int count, float* scratch) {
  NBSGD_NVTX_RANGE("forward_backward", nvtx::kCompute);
  forward(x, count, true);
  Impl& m = *impl_;
  const int last = int(m.nodes.size()) - 1;
  softmax_xent(m.ctx->compute(), m.act(last), labels, count, m.net.classes, m.grad(last), m.loss_work.as<float>(),
               scratch + m.P, false);
  m.run_backward(count, scratch);
}

void Model::evaluate(const float* x, const int32_t* labels, int count, float* out) {
  forward(x, count, false);
  Impl& m = *impl_;
  softmax_xent(m.ctx->compute(), logits(), labels, count, m.net.classes, nullptr, m.loss_work.as<float>(), out, true);
}

std::vector<float> Model::download_params() const { return download(*impl_->ctx, params(), impl_->P); }
std::vector<float> Model::download_bn_buffers() const { return download(*impl_->ctx, bn_buffers(), impl_->B); }
void Model::upload_params(const std::vector<float>& host) {
  NBSGD_CHECK(host.size() == impl_->P, "parameter vector of the wrong size");
  upload(*impl_->ctx, params(), host);
}
void Model::upload_bn_buffers(const std::vector<float>& host) {
  NBSGD_CHECK(host.size() == impl_->B, "BN buffer vector of the wrong size");
  upload(*impl_->ctx, bn_buffers(), host);
}

void Model::copy_params_from(const Model& src) {
  NBSGD_CHECK(src.description() == description(), "copy_params_from a replica of another net");
  DeviceContext& ctx = *impl_->ctx;
  DeviceContext& sctx = src.context();
  NBSGD_CHECK(ctx.backend() == sctx.backend(), "copy_params_from a replica on another backend");
  const int dd = ctx.device().ordinal, sd = sctx.device().ordinal;
  copy_peer_async(ctx.compute(), params(), dd, src.params(), sd, impl_->P * sizeof(float));
  if (impl_->B) copy_peer_async(ctx.compute(), bn_buffers(), dd, src.bn_buffers(), sd, impl_->B * sizeof(float));
}

void Model::save(const std::string& path, const std::vector<TensorView>& extra,
                 std::map<std::string, std::string> metadata) const {
  const std::vector<float> p = download_params(), b = download_bn_buffers();
  std::vector<TensorView> views;
  for (const ParamInfo& i : impl_->pinfo) views.push_back({i.name, i.shape, p.data() + i.offset});
  for (const ParamInfo& i : impl_->binfo) views.push_back({i.name, i.shape, b.data() + i.offset});
  views.insert(views.end(), extra.begin(), extra.end());
  metadata["nbsgd.net"] = description();
  save_safetensors(path, views, metadata);
}

LoadedTensors Model::load(const std::string& path,
                          const std::vector<std::pair<std::string, std::vector<int64_t>>>& extra) {
  LoadedTensors t = load_safetensors(path);
  auto it = t.metadata.find("nbsgd.net");
  if (it != t.metadata.end() && it->second != description())
    throw InputError("checkpoint " + path + " was made for another net: it holds " + it->second + ", this run uses " +
                     description());
  std::vector<TensorView> expected;
  for (const ParamInfo& i : impl_->pinfo) expected.push_back({i.name, i.shape, nullptr});
  for (const ParamInfo& i : impl_->binfo) expected.push_back({i.name, i.shape, nullptr});
  for (const auto& [name, shape] : extra) expected.push_back({name, shape, nullptr});
  check_matches(t, expected, path);
  std::vector<float> p(impl_->P), b(impl_->B);
  for (const ParamInfo& i : impl_->pinfo) {
    const auto& v = t.tensors.at(i.name).second;
    std::memcpy(p.data() + i.offset, v.data(), i.count * sizeof(float));
  }
  for (const ParamInfo& i : impl_->binfo) {
    const auto& v = t.tensors.at(i.name).second;
    std::memcpy(b.data() + i.offset, v.data(), i.count * sizeof(float));
  }
  upload_params(p);
  upload_bn_buffers(b);
  return t;
}

}  // namespace nbsgd::nets
