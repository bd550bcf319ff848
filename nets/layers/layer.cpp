#include "nets/layers/layer.h"

#include <string>

#include "nets/layers/impl.h"
#include "runtime/device/check.h"

namespace nbsgd::nets {

const char* to_string(LayerKind k) {
  switch (k) {
    case LayerKind::Conv2d: return "conv2d";
    case LayerKind::Linear: return "linear";
    case LayerKind::BatchNorm2d: return "batchnorm2d";
    case LayerKind::ReLU: return "relu";
    case LayerKind::MaxPool2d: return "maxpool2d";
    case LayerKind::GlobalAvgPool: return "global_avg_pool";
    case LayerKind::Flatten: return "flatten";
    case LayerKind::Add: return "add";
  }
  return "?";
}

static std::string where(const LayerSpec& s) {
  return std::string(to_string(s.kind)) + (s.name.empty() ? "" : " '" + s.name + "'");
}

Shape infer_shape(const LayerSpec& spec, std::span<const Shape> in) {
  const size_t want = spec.kind == LayerKind::Add ? 2 : 1;
  NBSGD_CHECK(in.size() == want, where(spec) + " takes " + std::to_string(want) + " input(s)");
  const Shape x = in[0];
  NBSGD_CHECK(x.size() > 0, where(spec) + ": empty input");
  switch (spec.kind) {
    case LayerKind::Conv2d: {
      NBSGD_CHECK(spec.out > 0 && spec.kernel > 0 && spec.stride > 0 && spec.pad >= 0, where(spec) + ": bad geometry");
      const int oh = (x.h + 2 * spec.pad - spec.kernel) / spec.stride + 1;
      const int ow = (x.w + 2 * spec.pad - spec.kernel) / spec.stride + 1;
      NBSGD_CHECK(x.h + 2 * spec.pad >= spec.kernel && x.w + 2 * spec.pad >= spec.kernel,
                  where(spec) + ": kernel larger than the padded input");
      return {spec.out, oh, ow};
    }
    case LayerKind::Linear:
      NBSGD_CHECK(spec.out > 0, where(spec) + ": no output features");
      return {spec.out, 1, 1};
    case LayerKind::MaxPool2d: {
      NBSGD_CHECK(spec.kernel > 0 && spec.stride > 0 && x.h >= spec.kernel && x.w >= spec.kernel,
                  where(spec) + ": bad geometry");
      return {x.c, (x.h - spec.kernel) / spec.stride + 1, (x.w - spec.kernel) / spec.stride + 1};
    }
    case LayerKind::GlobalAvgPool: return {x.c, 1, 1};
    case LayerKind::Flatten: return {int(x.size()), 1, 1};
    case LayerKind::Add:
      NBSGD_CHECK(in[0] == in[1], where(spec) + ": inputs of different shapes");
      return x;
    case LayerKind::BatchNorm2d:
    case LayerKind::ReLU: return x;
  }
  NBSGD_FAIL("unknown layer kind");
}

std::unique_ptr<Layer> make_layer(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, int max_batch) {
  NBSGD_CHECK(max_batch > 0, "max_batch must be positive");
  const Shape out = infer_shape(spec, in);
  switch (spec.kind) {
    case LayerKind::Linear: return detail::make_linear(ctx, spec, in, out, max_batch);
    case LayerKind::Conv2d: return detail::make_conv2d(ctx, spec, in, out, max_batch);
    case LayerKind::BatchNorm2d: return detail::make_batchnorm(ctx, spec, in, out, max_batch);
    default: return detail::make_elementwise(ctx, spec, in, out, max_batch);
  }
}

}  // namespace nbsgd::nets
