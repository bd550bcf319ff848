// Host convolution through oneDNN 2.x (the 2.x API: op::desc, then
// primitive_desc(desc, engine[, hint])). Primitives are made on the stream's
// thread the first time a batch size is seen and kept; the backward primitives
// take the forward one as their hint, as oneDNN requires.
//
// Layouts: the primitives are created with format `any`, so oneDNN picks its
// direct JIT kernels and their blocked layouts (nChw16c, OIhw16i16o, ...). With
// the plain NCHW/OIHW layouts the layers share, it falls back to im2col + GEMM,
// measured here 3-5x slower for the ResNet-20 convolutions. Each tensor is
// reordered between the two layouts around the call (Layout below), where the
// layouts differ: the copies cost far less than the convolutions they speed up.
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdlib>
#include <map>
#include <memory>
#include <unordered_map>

#include "nets/layers/conv.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"

namespace nbsgd::nets {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

// A 64-byte aligned host workspace that only grows.
class Workspace {
 public:
  void* get(size_t bytes) {
    if (bytes > size_) {
      p_.reset(static_cast<char*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
      NBSGD_CHECK(p_ != nullptr, "convolution workspace of " + std::to_string(bytes) + " bytes");
      size_ = bytes;
    }
    return p_.get();
  }

 private:
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> p_;
  size_t size_ = 0;
};

// One tensor of one primitive: the plain layout the caller holds and the layout
// the primitive chose, with the reorders between them made on first use.
class Layout {
 public:
  Layout() = default;
  Layout(const dnnl::engine& eng, const memory::desc& user, const memory::desc& prim)
      : eng_(eng), user_(user), prim_(prim), same_(user == prim) {}

  // The primitive's input: the caller's memory, or a reordered copy in ws.
  memory input(dnnl::stream& s, const float* p, Workspace& ws) {
    memory u(user_, eng_, const_cast<float*>(p));
    if (same_) return u;
    memory m(prim_, eng_, ws.get(prim_.get_size()));
    if (!to_prim_) to_prim_ = dnnl::reorder(dnnl::reorder::primitive_desc(eng_, user_, eng_, prim_));
    to_prim_.execute(s, u, m);
    return m;
  }
  // Where the primitive writes an output the caller wants at p (added to p's
  // contents when accumulate): p itself when nothing needs converting.
  memory output(float* p, Workspace& ws, bool accumulate) {
    if (same_ && !accumulate) return memory(user_, eng_, p);
    return memory(prim_, eng_, ws.get(prim_.get_size()));
  }
  // Moves what output() gave the primitive into p (written or added).
  void finish(dnnl::stream& s, memory out, float* p, bool accumulate) {
    if (same_ && !accumulate) return;
    memory u(user_, eng_, p);
    dnnl::reorder& r = accumulate ? add_to_user_ : to_user_;
    if (!r) {
      dnnl::primitive_attr attr;
      if (accumulate) {
        dnnl::post_ops ops;
        ops.append_sum(1.0f);
        attr.set_post_ops(ops);
      }
      r = dnnl::reorder(dnnl::reorder::primitive_desc(eng_, prim_, eng_, user_, attr));
    }
    r.execute(s, out, u);
  }
  const memory::desc& prim() const { return prim_; }

 private:
  dnnl::engine eng_;
  memory::desc user_, prim_;
  bool same_ = true;
  dnnl::reorder to_prim_, to_user_, add_to_user_;
};

// Scratch memory of the convolutions that run on this thread (a host stream's
// worker). Their calls run one at a time and keep nothing in it from one call to
// the next, so all the convolutions a thread runs share one set, as large as the
// largest needs: per layer, the blocked copies would take several activations'
// worth for each convolution of each worker. src holds the converted x (forward,
// backward weights), dst y or dy, dst2 dy for backward data when it wants another
// layout than backward weights.
struct ThreadWorkspaces {
  Workspace scratch, src, dst, dst2, dsrc, wei, dwei;
};
ThreadWorkspaces& thread_workspaces() {
  thread_local ThreadWorkspaces w;
  return w;
}

class OneDnnConv final : public ConvImpl {
 public:
  OneDnnConv(DeviceContext& ctx, const ConvGeometry& g, int)
      : ctx_(ctx), g_(g), eng_(dnnl::engine::kind::cpu, 0), strm_(eng_) {}

  void forward(int n, const float* x, const float* w, const float* b, float* y) override {
    ctx_.compute().device_task(
        [=, this] {
      Prims& p = prims(n);
      ThreadWorkspaces& ws = thread_workspaces();
      memory dst = p.f_dst.output(y, ws.dst, false);
      std::unordered_map<int, memory> args{{DNNL_ARG_SRC, p.f_src.input(strm_, x, ws.src)},
                                           {DNNL_ARG_WEIGHTS, p.f_wei.input(strm_, w, ws.wei)},
                                           {DNNL_ARG_DST, dst},
                                           {DNNL_ARG_SCRATCHPAD, scratch(ws, p.fwd_scratch)}};
      if (g_.bias) args.emplace(DNNL_ARG_BIAS, memory(p.bias, eng_, const_cast<float*>(b)));
      p.fwd.execute(strm_, args);
      p.f_dst.finish(strm_, dst, y, false);
      strm_.wait();
        },
        Issue::Library);
  }

  void backward_data(int n, const float* dy, const float* w, float* dx, bool accumulate) override {
    ctx_.compute().device_task(
        [=, this] {
      Prims& p = prims(n);
      ThreadWorkspaces& ws = thread_workspaces();
      run_backward_data(p, ws, p.d_ddst.input(strm_, dy, ws.dst), w, dx, accumulate);
      strm_.wait();
        },
        Issue::Library);
  }

  void backward_weights(int n, const float* x, const float* dy, float* dw, float* db) override {
    ctx_.compute().device_task(
        [=, this] {
      Prims& p = prims(n);
      ThreadWorkspaces& ws = thread_workspaces();
      run_backward_weights(p, ws, x, p.w_ddst.input(strm_, dy, ws.dst), dw, db);
      strm_.wait();
        },
        Issue::Library);
  }

  // dy is converted once when both passes want it in the same layout.
  void backward(int n, const float* x, const float* dy, const float* w, float* dw, float* db, float* dx,
                bool accumulate) override {
    ctx_.compute().device_task(
        [=, this] {
      Prims& p = prims(n);
      ThreadWorkspaces& ws = thread_workspaces();
      const memory ddst = p.w_ddst.input(strm_, dy, ws.dst);
      run_backward_weights(p, ws, x, ddst, dw, db);
      if (dx) {
        const bool shared = p.d_ddst.prim() == p.w_ddst.prim();
        run_backward_data(p, ws, shared ? ddst : p.d_ddst.input(strm_, dy, ws.dst2), w, dx, accumulate);
      }
      strm_.wait();
        },
        Issue::Library);
  }

 private:
  struct Prims {
    memory::desc bias, fwd_scratch, bd_scratch, bw_scratch;
    Layout f_src, f_wei, f_dst;    // forward
    Layout d_ddst, d_wei, d_dsrc;  // backward data
    Layout w_src, w_ddst, w_dwei;  // backward weights
    dnnl::convolution_forward fwd;
    dnnl::convolution_backward_data bwd_data;
    dnnl::convolution_backward_weights bwd_weights;
  };

  void run_backward_data(Prims& p, ThreadWorkspaces& ws, const memory& ddst, const float* w, float* dx,
                         bool accumulate) {
    memory dsrc = p.d_dsrc.output(dx, ws.dsrc, accumulate);
    p.bwd_data.execute(strm_, {{DNNL_ARG_DIFF_DST, ddst},
                               {DNNL_ARG_WEIGHTS, p.d_wei.input(strm_, w, ws.wei)},
                               {DNNL_ARG_DIFF_SRC, dsrc},
                               {DNNL_ARG_SCRATCHPAD, scratch(ws, p.bd_scratch)}});
    p.d_dsrc.finish(strm_, dsrc, dx, accumulate);
  }

  void run_backward_weights(Prims& p, ThreadWorkspaces& ws, const float* x, const memory& ddst, float* dw,
                            float* db) {
    memory dwei = p.w_dwei.output(dw, ws.dwei, false);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, p.w_src.input(strm_, x, ws.src)},
                                         {DNNL_ARG_DIFF_DST, ddst},
                                         {DNNL_ARG_DIFF_WEIGHTS, dwei},
                                         {DNNL_ARG_SCRATCHPAD, scratch(ws, p.bw_scratch)}};
    if (g_.bias) args.emplace(DNNL_ARG_DIFF_BIAS, memory(p.bias, eng_, db));
    p.bwd_weights.execute(strm_, args);
    p.w_dwei.finish(strm_, dwei, dw, false);
  }

  memory scratch(ThreadWorkspaces& ws, const memory::desc& d) { return memory(d, eng_, ws.scratch.get(d.get_size())); }

  // Only ever called on the stream's thread, so the cache needs no lock.
  Prims& prims(int n) {
    auto it = cache_.find(n);
    if (it != cache_.end()) return *it->second;
    auto p = std::make_unique<Prims>();
    const memory::desc src({n, g_.cin, g_.h, g_.w}, dt::f32, tag::nchw);
    const memory::desc wei({g_.cout, g_.cin, g_.k, g_.k}, dt::f32, tag::oihw);
    const memory::desc dst({n, g_.cout, g_.oh, g_.ow}, dt::f32, tag::nchw);
    const memory::desc src_any({n, g_.cin, g_.h, g_.w}, dt::f32, tag::any);
    const memory::desc wei_any({g_.cout, g_.cin, g_.k, g_.k}, dt::f32, tag::any);
    const memory::desc dst_any({n, g_.cout, g_.oh, g_.ow}, dt::f32, tag::any);
    p->bias = memory::desc({g_.cout}, dt::f32, tag::x);
    const memory::dims strides{g_.stride, g_.stride}, pad{g_.pad, g_.pad};
    const auto alg = dnnl::algorithm::convolution_direct;
    auto fwd_d = g_.bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, src_any, wei_any,
                                                           p->bias, dst_any, strides, pad, pad)
                         : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, src_any, wei_any,
                                                           dst_any, strides, pad, pad);
    // A user-managed scratchpad, kept across calls: the library-managed one is
    // allocated (and page-faulted in) on every execution.
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::convolution_forward::primitive_desc fwd_pd(fwd_d, attr, eng_);
    dnnl::convolution_backward_data::desc bd_d(alg, src_any, wei_any, dst_any, strides, pad, pad);
    dnnl::convolution_backward_data::primitive_desc bd_pd(bd_d, attr, eng_, fwd_pd);
    auto bw_d = g_.bias
                    ? dnnl::convolution_backward_weights::desc(alg, src_any, wei_any, p->bias, dst_any, strides, pad, pad)
                    : dnnl::convolution_backward_weights::desc(alg, src_any, wei_any, dst_any, strides, pad, pad);
    dnnl::convolution_backward_weights::primitive_desc bw_pd(bw_d, attr, eng_, fwd_pd);
    p->f_src = Layout(eng_, src, fwd_pd.src_desc());
    p->f_wei = Layout(eng_, wei, fwd_pd.weights_desc());
    p->f_dst = Layout(eng_, dst, fwd_pd.dst_desc());
    p->d_ddst = Layout(eng_, dst, bd_pd.diff_dst_desc());
    p->d_wei = Layout(eng_, wei, bd_pd.weights_desc());
    p->d_dsrc = Layout(eng_, src, bd_pd.diff_src_desc());
    p->w_src = Layout(eng_, src, bw_pd.src_desc());
    p->w_ddst = Layout(eng_, dst, bw_pd.diff_dst_desc());
    p->w_dwei = Layout(eng_, wei, bw_pd.diff_weights_desc());
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
  std::map<int, std::unique_ptr<Prims>> cache_;
};

}  // namespace

std::unique_ptr<ConvImpl> make_onednn_conv(DeviceContext& ctx, const ConvGeometry& g, int max_batch) {
  return std::make_unique<OneDnnConv>(ctx, g, max_batch);
}

}  // namespace nbsgd::nets
