// Internal to nets/layers: the per-kind layer factories make_layer dispatches to,
// and the shared choice of how many parts a per-channel reduction is split into.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>

#include "nets/layers/layer.h"

namespace nbsgd::nets::detail {

std::unique_ptr<Layer> make_linear(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out,
                                   int max_batch);
std::unique_ptr<Layer> make_conv2d(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out,
                                   int max_batch);
std::unique_ptr<Layer> make_batchnorm(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out,
                                      int max_batch);
std::unique_ptr<Layer> make_elementwise(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, Shape out,
                                        int max_batch);

// Parts of a per-channel reduction over m elements (see ChannelPartialOp): about
// 128 elements per part, at most kMaxReduceParts, so a GPU has channels x parts
// threads to run even when there are only 16 channels.
inline constexpr int kMaxReduceParts = 256;
inline int reduce_parts(int64_t m) {
  return static_cast<int>(std::clamp<int64_t>(m / 128, 1, kMaxReduceParts));
}

}  // namespace nbsgd::nets::detail
