// Linear: y[n, out] = x[n, in] W^T + b, W stored [out, in] as in PyTorch. The input
// may be any C x H x W; it is read as its flattened NCHW row.
#include "nets/layers/blas.h"
#include "nets/layers/functors.h"
#include "nets/layers/impl.h"
#include "nets/layers/launch.h"
#include "runtime/device/buffer.h"
#include "runtime/device/context.h"

namespace nbsgd::nets::detail {
namespace {

class Linear final : public Layer {
 public:
  Linear(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out, int max_batch)
      : Layer(spec, std::vector<Shape>(in.begin(), in.end()), out), ctx_(ctx), host_(ctx.backend() == Backend::Host),
        in_f_(int(in[0].size())), out_f_(spec.out),
        partial_(ctx.backend(), ctx.device().ordinal, size_t(out_f_) * kMaxReduceParts * sizeof(float)) {}

  std::vector<TensorDecl> params() const override {
    std::vector<TensorDecl> p{{"weight", {out_f_, in_f_}, Init::KaimingNormal, in_f_}};
    if (spec_.bias) p.push_back({"bias", {out_f_}, Init::Zero, 0});
    return p;
  }
  void bind(float* params, float*) override {
    w_ = params;
    b_ = spec_.bias ? params + int64_t(out_f_) * in_f_ : nullptr;
  }

  void forward(std::span<const float* const> x, float* y, int n, bool) override {
    gemm(ctx_, false, true, n, out_f_, in_f_, 1.0f, x[0], in_f_, w_, in_f_, 0.0f, y, out_f_);
    if (b_) launch(ctx_.compute(), size_t(n) * out_f_, BiasAddOp{y, b_, out_f_, 1});
  }

  void backward(std::span<const float* const> x, const float*, const float* dy, std::span<float* const> dx,
                std::span<const bool> acc, float* dparams, int n) override {
    // dW[out, in] = dy^T x
    gemm(ctx_, true, false, out_f_, in_f_, n, 1.0f, dy, out_f_, x[0], in_f_, 0.0f, dparams, in_f_);
    if (b_) {
      const int parts = reduce_parts(n);
      float* part = partial_.as<float>();
      launch(ctx_.compute(), size_t(out_f_) * parts,
             ChannelPartialOp{dy, nullptr, nullptr, part, ChannelReduce::Sum, n, out_f_, parts, 1, host_},
             size_t(n / parts + 1));
      launch(ctx_.compute(), size_t(out_f_), ChannelFinishOp{part, dparams + int64_t(out_f_) * in_f_, parts, 1.0f});
    }
    // dx[n, in] = dy W
    if (dx[0]) gemm(ctx_, false, false, n, in_f_, out_f_, 1.0f, dy, out_f_, w_, in_f_, acc[0] ? 1.0f : 0.0f, dx[0], in_f_);
  }

  double macs_per_sample() const override { return double(in_f_) * out_f_; }

 private:
  DeviceContext& ctx_;
  bool host_;  // contiguous reduction parts (see ChannelPartialOp)
  int in_f_, out_f_;
  Buffer partial_;
  float* w_ = nullptr;
  float* b_ = nullptr;
};

}  // namespace

std::unique_ptr<Layer> make_linear(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out,
                                   int max_batch) {
  return std::make_unique<Linear>(ctx, spec, in, out, max_batch);
}

}  // namespace nbsgd::nets::detail
