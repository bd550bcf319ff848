// The parameter-free layers: ReLU, MaxPool2d, global average pool, Flatten and the
// residual Add, each a functor launch per pass.
#include <cstdint>

#include "nets/layers/functors.h"
#include "nets/layers/impl.h"
#include "nets/layers/launch.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"

namespace nbsgd::nets::detail {
namespace {

class ElementwiseBase : public Layer {
 public:
  ElementwiseBase(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out)
      : Layer(spec, std::vector<Shape>(in.begin(), in.end()), out), ctx_(ctx) {}

 protected:
  Stream& stream() { return ctx_.compute(); }
  bool host() const { return ctx_.backend() == Backend::Host; }
  size_t in_count(int n, int i = 0) const { return size_t(n) * size_t(in_[i].size()); }
  size_t out_count(int n) const { return size_t(n) * size_t(out_.size()); }
  DeviceContext& ctx_;
};

class Relu final : public ElementwiseBase {
 public:
  using ElementwiseBase::ElementwiseBase;
  void forward(std::span<const float* const> x, float* y, int n, bool) override {
    launch(stream(), out_count(n), ReluForwardOp{x[0], y});
  }
  void backward(std::span<const float* const>, const float* y, const float* dy, std::span<float* const> dx,
                std::span<const bool> acc, float*, int n) override {
    if (dx[0]) launch(stream(), out_count(n), ReluBackwardOp{y, dy, dx[0], acc[0]});
  }
};

// Also used on its own (tests); a model aliases a Flatten's output to its input
// instead of calling it, since NCHW is already the flattened layout.
class Flatten final : public ElementwiseBase {
 public:
  using ElementwiseBase::ElementwiseBase;
  void forward(std::span<const float* const> x, float* y, int n, bool) override {
    launch(stream(), out_count(n), CopyOrAddOp{x[0], y, false});
  }
  void backward(std::span<const float* const>, const float*, const float* dy, std::span<float* const> dx,
                std::span<const bool> acc, float*, int n) override {
    if (dx[0]) launch(stream(), out_count(n), CopyOrAddOp{dy, dx[0], acc[0]});
  }
};

class Add final : public ElementwiseBase {
 public:
  using ElementwiseBase::ElementwiseBase;
  void forward(std::span<const float* const> x, float* y, int n, bool) override {
    launch(stream(), out_count(n), AddOp{x[0], x[1], y});
  }
  void backward(std::span<const float* const>, const float*, const float* dy, std::span<float* const> dx,
                std::span<const bool> acc, float*, int n) override {
    for (int i = 0; i < 2; ++i)
      if (dx[i]) launch(stream(), out_count(n), CopyOrAddOp{dy, dx[i], acc[i]});
  }
};

class MaxPool final : public ElementwiseBase {
 public:
  MaxPool(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out, int max_batch)
      : ElementwiseBase(ctx, spec, in, out),
        argmax_(ctx.backend(), ctx.device().ordinal, size_t(max_batch) * out.size() * sizeof(int32_t)) {}
  // The host runs a row per task (no division per output) and, for windows that do
  // not overlap, scatters dy instead of gathering it per input row.
  void forward(std::span<const float* const> x, float* y, int n, bool) override {
    const Shape& s = in_[0];
    const int k = spec_.kernel, st = spec_.stride;
    if (host())
      launch_host(stream(), size_t(n) * s.c * out_.h,
                  MaxPoolRowForwardOp{x[0], y, argmax_.as<int32_t>(), s.h, s.w, out_.h, out_.w, k, st},
                  size_t(k) * k * out_.w);
    else
      launch(stream(), out_count(n), MaxPoolForwardOp{x[0], y, argmax_.as<int32_t>(), s.h, s.w, out_.h, out_.w, k, st},
             size_t(k) * k);
  }
  void backward(std::span<const float* const>, const float*, const float* dy, std::span<float* const> dx,
                std::span<const bool> acc, float*, int n) override {
    if (!dx[0]) return;
    const Shape& s = in_[0];
    if (host() && spec_.kernel <= spec_.stride) {
      launch_host(stream(), size_t(n) * s.c * out_.h,
                  MaxPoolScatterBackwardOp{dy, argmax_.as<int32_t>(), dx[0], s.h, s.w, out_.h, out_.w, spec_.stride,
                                           acc[0]},
                  size_t(s.w) * spec_.stride + out_.w);
      return;
    }
    launch(stream(), size_t(n) * s.c * s.h,
           MaxPoolBackwardOp{dy, argmax_.as<int32_t>(), dx[0], s.h, s.w, out_.h, out_.w, spec_.kernel, spec_.stride,
                             acc[0]},
           size_t(s.w) * 2);
  }

 private:
  Buffer argmax_;
};

class GlobalAvgPool final : public ElementwiseBase {
 public:
  using ElementwiseBase::ElementwiseBase;
  void forward(std::span<const float* const> x, float* y, int n, bool) override {
    const int64_t hw = int64_t(in_[0].h) * in_[0].w;
    launch(stream(), out_count(n), AvgPoolForwardOp{x[0], y, hw}, size_t(hw));
  }
  void backward(std::span<const float* const>, const float*, const float* dy, std::span<float* const> dx,
                std::span<const bool> acc, float*, int n) override {
    if (dx[0]) launch(stream(), in_count(n), AvgPoolBackwardOp{dy, dx[0], int64_t(in_[0].h) * in_[0].w, acc[0]});
  }
};

}  // namespace

std::unique_ptr<Layer> make_elementwise(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out,
                                        int max_batch) {
  switch (spec.kind) {
    case LayerKind::ReLU: return std::make_unique<Relu>(ctx, spec, in, out);
    case LayerKind::Flatten: return std::make_unique<Flatten>(ctx, spec, in, out);
    case LayerKind::Add: return std::make_unique<Add>(ctx, spec, in, out);
    case LayerKind::MaxPool2d: return std::make_unique<MaxPool>(ctx, spec, in, out, max_batch);
    case LayerKind::GlobalAvgPool: return std::make_unique<GlobalAvgPool>(ctx, spec, in, out);
    default: NBSGD_FAIL(std::string("not an element-wise layer: ") + to_string(spec.kind));
  }
}

}  // namespace nbsgd::nets::detail
