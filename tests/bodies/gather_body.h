// The mini-batch gather (kernels/gather.h) against the host loader's normalisation,
// bit for bit, on both backends: indices out of order and repeated, labels along.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/gather.h"
#include "nets/data/fashion_mnist.h"
#include "support/backend_test.h"

namespace nbsgd::test {

class GatherTest : public BackendTest {};

TEST_P(GatherTest, GathersAndNormalisesLikeTheLoader) {
  Stream s = stream();
  const int64_t sample = 784, total = 53;
  std::mt19937 rng(11);
  std::vector<uint8_t> images(size_t(total * sample));
  for (auto& v : images) v = static_cast<uint8_t>(rng() & 0xFF);
  std::vector<int32_t> labels(total);
  for (auto& l : labels) l = static_cast<int32_t>(rng() % 10);
  const std::vector<int32_t> index{52, 0, 7, 7, 31, 1, 52, 19, 3};
  const size_t count = index.size();
  Buffer dimg = upload(s, images), dlab = upload(s, labels), didx = upload(s, index);
  Buffer dx = device_buffer(count * sample * sizeof(float)), dy = device_buffer(count * sizeof(int32_t));
  kernels::GatherNormalizeOp op{dimg.as<uint8_t>(), dlab.as<int32_t>(), didx.as<int32_t>(), dx.as<float>(),
                                dy.as<int32_t>(), sample, data::kFashionMnistMean, data::kFashionMnistStd};
  kernels::gather_normalize(s, op, count);
  const auto x = download<float>(s, dx, count * sample);
  const auto y = download<int32_t>(s, dy, count);
  for (size_t k = 0; k < count; ++k) {
    ASSERT_EQ(y[k], labels[size_t(index[k])]) << k;
    for (int64_t p = 0; p < sample; ++p) {
      const uint8_t v = images[size_t(index[k] * sample + p)];
      // The loader's lookup table, nets/data/fashion_mnist.cpp.
      const float want = (static_cast<float>(v) / 255.0f - data::kFashionMnistMean) / data::kFashionMnistStd;
      ASSERT_EQ(x[k * sample + size_t(p)], want) << "sample " << k << " pixel " << p;
    }
  }
}

}  // namespace nbsgd::test
