// Conv2d: the layer around nets/layers/conv.h, which picks the library per backend.
#include "nets/layers/conv.h"
#include "nets/layers/impl.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"

namespace nbsgd::nets::detail {
namespace {

class Conv2d final : public Layer {
 public:
  Conv2d(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out, int max_batch)
      : Layer(spec, std::vector<Shape>(in.begin(), in.end()), out) {
    g_.cin = in[0].c;
    g_.h = in[0].h;
    g_.w = in[0].w;
    g_.cout = spec.out;
    g_.k = spec.kernel;
    g_.stride = spec.stride;
    g_.pad = spec.pad;
    g_.oh = out.h;
    g_.ow = out.w;
    g_.bias = spec.bias;
    if (ctx.backend() == Backend::Cuda) {
#if NBSGD_HAVE_CUDA
      impl_ = make_cudnn_conv(ctx, g_, max_batch);
#else
      NBSGD_FAIL("CUDA context in a build without the CUDA backend");
#endif
    } else {
      impl_ = make_onednn_conv(ctx, g_, max_batch);
    }
  }

  std::vector<TensorDecl> params() const override {
    const int64_t fan_in = int64_t(g_.cin) * g_.k * g_.k;
    std::vector<TensorDecl> p{{"weight", {g_.cout, g_.cin, g_.k, g_.k}, Init::KaimingNormal, fan_in}};
    if (g_.bias) p.push_back({"bias", {g_.cout}, Init::Zero, 0});
    return p;
  }
  void bind(float* params, float*) override {
    w_ = params;
    b_ = g_.bias ? params + weight_count() : nullptr;
  }

  void forward(std::span<const float* const> x, float* y, int n, bool) override { impl_->forward(n, x[0], w_, b_, y); }

  void backward(std::span<const float* const> x, const float*, const float* dy, std::span<float* const> dx,
                std::span<const bool> acc, float* dparams, int n) override {
    impl_->backward(n, x[0], dy, w_, dparams, g_.bias ? dparams + weight_count() : nullptr, dx[0], acc[0]);
  }

  double macs_per_sample() const override { return double(g_.cout) * g_.oh * g_.ow * g_.cin * g_.k * g_.k; }

 private:
  int64_t weight_count() const { return int64_t(g_.cout) * g_.cin * g_.k * g_.k; }
  ConvGeometry g_;
  std::unique_ptr<ConvImpl> impl_;
  float* w_ = nullptr;
  float* b_ = nullptr;
};

}  // namespace

std::unique_ptr<Layer> make_conv2d(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out,
                                   int max_batch) {
  return std::make_unique<Conv2d>(ctx, spec, in, out, max_batch);
}

}  // namespace nbsgd::nets::detail
