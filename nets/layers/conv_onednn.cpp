// Host convolution through oneDNN 2.x (the 2.x API: op::desc, then
// primitive_desc(desc, engine[, hint])). Primitives are made on the stream's
// thread the first time a batch size is seen and kept; the backward primitives
// take the forward one as their hint, as oneDNN requires.
#include <oneapi/dnnl/dnnl.hpp>

#include <map>
#include <unordered_map>
#include <memory>
#include <vector>

#include "nets/layers/conv.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"

namespace nbsgd::nets {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

class OneDnnConv final : public ConvImpl {
 public:
  OneDnnConv(DeviceContext& ctx, const ConvGeometry& g, int max_batch)
      : ctx_(ctx), g_(g), eng_(dnnl::engine::kind::cpu, 0), strm_(eng_),
        temp_(size_t(max_batch) * g.cin * g.h * g.w) {}

  void forward(int n, const float* x, const float* w, const float* b, float* y) override {
    ctx_.compute().host_task([=, this] {
      Prims& p = prims(n);
      std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(p.src, x)},
                                           {DNNL_ARG_WEIGHTS, mem(p.wei, w)},
                                           {DNNL_ARG_DST, mem(p.dst, y)},
                                           {DNNL_ARG_SCRATCHPAD, scratch(p.fwd_scratch)}};
      if (g_.bias) args.emplace(DNNL_ARG_BIAS, mem(p.bias, b));
      p.fwd.execute(strm_, args);
      strm_.wait();
    });
  }

  void backward_data(int n, const float* dy, const float* w, float* dx, bool accumulate) override {
    ctx_.compute().host_task([=, this] {
      Prims& p = prims(n);
      // oneDNN's backward-data primitive has no beta: accumulate through a temporary.
      float* out = accumulate ? temp_.data() : dx;
      p.bwd_data.execute(strm_, {{DNNL_ARG_DIFF_DST, mem(p.dst, dy)},
                                 {DNNL_ARG_WEIGHTS, mem(p.wei, w)},
                                 {DNNL_ARG_DIFF_SRC, mem(p.src, out)},
                                 {DNNL_ARG_SCRATCHPAD, scratch(p.bd_scratch)}});
      strm_.wait();
      if (accumulate) {
        const int64_t count = int64_t(n) * g_.cin * g_.h * g_.w;
        const float* t = temp_.data();
#pragma omp parallel for schedule(static) if (count >= 16384)
        for (int64_t i = 0; i < count; ++i) dx[i] += t[i];
      }
    });
  }

  void backward_weights(int n, const float* x, const float* dy, float* dw, float* db) override {
    ctx_.compute().host_task([=, this] {
      Prims& p = prims(n);
      std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(p.src, x)},
                                           {DNNL_ARG_DIFF_DST, mem(p.dst, dy)},
                                           {DNNL_ARG_DIFF_WEIGHTS, mem(p.wei, dw)},
                                           {DNNL_ARG_SCRATCHPAD, scratch(p.bw_scratch)}};
      if (g_.bias) args.emplace(DNNL_ARG_DIFF_BIAS, mem(p.bias, db));
      p.bwd_weights.execute(strm_, args);
      strm_.wait();
    });
  }

 private:
  struct Prims {
    memory::desc src, wei, bias, dst, fwd_scratch, bd_scratch, bw_scratch;
    dnnl::convolution_forward fwd;
    dnnl::convolution_backward_data bwd_data;
    dnnl::convolution_backward_weights bwd_weights;
  };

  memory mem(const memory::desc& d, const float* p) { return memory(d, eng_, const_cast<float*>(p)); }
  memory scratch(const memory::desc& d) { return memory(d, eng_, scratch_.data()); }

  // Only ever called on the stream's thread, so the cache needs no lock.
  Prims& prims(int n) {
    auto it = cache_.find(n);
    if (it != cache_.end()) return *it->second;
    auto p = std::make_unique<Prims>();
    p->src = memory::desc({n, g_.cin, g_.h, g_.w}, dt::f32, tag::nchw);
    p->wei = memory::desc({g_.cout, g_.cin, g_.k, g_.k}, dt::f32, tag::oihw);
    p->bias = memory::desc({g_.cout}, dt::f32, tag::x);
    p->dst = memory::desc({n, g_.cout, g_.oh, g_.ow}, dt::f32, tag::nchw);
    const memory::dims strides{g_.stride, g_.stride}, pad{g_.pad, g_.pad};
    const auto alg = dnnl::algorithm::convolution_direct;
    auto fwd_d = g_.bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, p->src, p->wei,
                                                           p->bias, p->dst, strides, pad, pad)
                         : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, p->src, p->wei,
                                                           p->dst, strides, pad, pad);
    // A user-managed scratchpad, kept across calls: the library-managed one is
    // allocated (and page-faulted in) on every execution.
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::convolution_forward::primitive_desc fwd_pd(fwd_d, attr, eng_);
    dnnl::convolution_backward_data::desc bd_d(alg, p->src, p->wei, p->dst, strides, pad, pad);
    dnnl::convolution_backward_data::primitive_desc bd_pd(bd_d, attr, eng_, fwd_pd);
    auto bw_d = g_.bias ? dnnl::convolution_backward_weights::desc(alg, p->src, p->wei, p->bias, p->dst, strides, pad, pad)
                        : dnnl::convolution_backward_weights::desc(alg, p->src, p->wei, p->dst, strides, pad, pad);
    dnnl::convolution_backward_weights::primitive_desc bw_pd(bw_d, attr, eng_, fwd_pd);
    for (size_t bytes : {fwd_pd.scratchpad_desc().get_size(), bd_pd.scratchpad_desc().get_size(),
                         bw_pd.scratchpad_desc().get_size()})
      if (bytes > scratch_.size()) scratch_.resize(bytes);
    p->fwd_scratch = fwd_pd.scratchpad_desc();
    p->bd_scratch = bd_pd.scratchpad_desc();
    p->bw_scratch = bw_pd.scratchpad_desc();
    p->fwd = dnnl::convolution_forward(fwd_pd);
    p->bwd_data = dnnl::convolution_backward_data(bd_pd);
    p->bwd_weights = dnnl::convolution_backward_weights(bw_pd);
    return *cache_.emplace(n, std::move(p)).first->second;
  }

  DeviceContext& ctx_;
  ConvGeometry g_;
  dnnl::engine eng_;
  dnnl::stream strm_;
  std::vector<float> temp_;
  std::vector<char> scratch_;  // shared by the primitives: they run one at a time
  std::map<int, std::unique_ptr<Prims>> cache_;
};

}  // namespace

std::unique_ptr<ConvImpl> make_onednn_conv(DeviceContext& ctx, const ConvGeometry& g, int max_batch) {
  return std::make_unique<OneDnnConv>(ctx, g, max_batch);
}

}  // namespace nbsgd::nets
