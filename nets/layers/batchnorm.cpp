// BatchNorm2d as in PyTorch: training normalises with the batch statistics (biased
// variance) and updates the running statistics with momentum 0.1 and the unbiased
// variance; eval normalises with the running statistics. eps = 1e-5.
//
// Per-channel sums use the two-pass partial reduction of functors.h; the variance
// is a second pass around the mean (not E[x^2] - E[x]^2, which cancels in float).
#include "nets/layers/functors.h"
#include "nets/layers/impl.h"
#include "nets/layers/launch.h"
#include "runtime/device/buffer.h"
#include "runtime/device/context.h"

namespace nbsgd::nets::detail {
namespace {

constexpr float kEps = 1e-5f;
constexpr float kMomentum = 0.1f;

class BatchNorm2d final : public Layer {
 public:
  BatchNorm2d(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out, int)
      : Layer(spec, std::vector<Shape>(in.begin(), in.end()), out), ctx_(ctx), host_(ctx.backend() == Backend::Host), c_(in[0].c),
        hw_(int64_t(in[0].h) * in[0].w),
        work_(ctx.backend(), ctx.device().ordinal, size_t(c_) * (2 + 2 * kMaxReduceParts) * sizeof(float)) {}

  std::vector<TensorDecl> params() const override {
    return {{"weight", {c_}, Init::One, 0}, {"bias", {c_}, Init::Zero, 0}};
  }
  std::vector<TensorDecl> buffers() const override {
    return {{"running_mean", {c_}, Init::Zero, 0}, {"running_var", {c_}, Init::One, 0}};
  }
  void bind(float* params, float* buffers) override {
    gamma_ = params;
    beta_ = params + c_;
    running_mean_ = buffers;
    running_var_ = buffers + c_;
  }

  void forward(std::span<const float* const> x, float* y, int n, bool train) override {
    Stream& s = ctx_.compute();
    const int64_t m = int64_t(n) * hw_;
    if (train) {
      const int parts = reduce_parts(m);
      const size_t grain = size_t(m / parts + 1);
      launch(s, size_t(c_) * parts,
             ChannelPartialOp{x[0], nullptr, nullptr, part1(), ChannelReduce::Sum, n, c_, parts, hw_, host_}, grain);
      launch(s, size_t(c_), ChannelFinishOp{part1(), mean(), parts, 1.0f / float(m)});
      launch(s, size_t(c_) * parts,
             ChannelPartialOp{x[0], nullptr, mean(), part2(), ChannelReduce::SqDev, n, c_, parts, hw_, host_}, grain);
      launch(s, size_t(c_),
             BnStatsOp{mean(), part2(), invstd(), running_mean_, running_var_, parts, m, kEps, kMomentum});
    } else {
      launch(s, size_t(c_), BnEvalStatsOp{running_mean_, running_var_, mean(), invstd(), kEps});
    }
    launch(s, size_t(m) * c_, BnApplyOp{x[0], mean(), invstd(), gamma_, beta_, y, c_, hw_});
  }

  void backward(std::span<const float* const> x, const float*, const float* dy, std::span<float* const> dx,
                std::span<const bool> acc, float* dparams, int n) override {
    Stream& s = ctx_.compute();
    const int64_t m = int64_t(n) * hw_;
    const int parts = reduce_parts(m);
    const size_t grain = size_t(m / parts + 1);
    float* dgamma = dparams;
    float* dbeta = dparams + c_;
    if (host_) {  // one pass over dy and x for both sums
      launch_host(s, size_t(c_) * parts, BnBackwardPartialOp{dy, x[0], mean(), part1(), part2(), n, c_, parts, hw_},
                  2 * grain);
    } else {
      launch(s, size_t(c_) * parts,
             ChannelPartialOp{dy, nullptr, nullptr, part1(), ChannelReduce::Sum, n, c_, parts, hw_, host_}, grain);
      launch(s, size_t(c_) * parts,
             ChannelPartialOp{dy, x[0], mean(), part2(), ChannelReduce::ProdDev, n, c_, parts, hw_, host_}, grain);
    }
    launch(s, size_t(c_), BnParamGradOp{part1(), part2(), invstd(), dgamma, dbeta, parts});
    if (dx[0])
      launch(s, size_t(m) * c_,
             BnBackwardDataOp{x[0], dy, mean(), invstd(), gamma_, dgamma, dbeta, dx[0], c_, hw_, m, acc[0]});
  }

 private:
  float* mean() { return work_.as<float>(); }
  float* invstd() { return work_.as<float>() + c_; }
  float* part1() { return work_.as<float>() + 2 * c_; }
  float* part2() { return work_.as<float>() + 2 * c_ + int64_t(c_) * kMaxReduceParts; }

  DeviceContext& ctx_;
  bool host_;  // contiguous reduction parts (see ChannelPartialOp)
  int c_;
  int64_t hw_;
  Buffer work_;  // mean, invstd of the latest forward; two partial-sum areas
  float* gamma_ = nullptr;
  float* beta_ = nullptr;
  float* running_mean_ = nullptr;
  float* running_var_ = nullptr;
};

}  // namespace

std::unique_ptr<Layer> make_batchnorm(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out,
                                      int max_batch) {
  return std::make_unique<BatchNorm2d>(ctx, spec, in, out, max_batch);
}

}  // namespace nbsgd::nets::detail
