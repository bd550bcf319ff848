// The mini-batch gather (kernels/gather.h) from a training set on the device
// (runtime/train/device_data.h) against the host loader's copy-out
// (Dataset::copy_images), bit for bit, on both backends: Fashion-MNIST read by the
// IDX reader (bytes through the loader's table), a channel-last uint8 set with a
// table per channel (npy), and a float set; indices out of order and repeated,
// labels along.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <random>
#include <vector>

#include "kernels/gather.h"
#include "nets/data/fashion_mnist.h"
#include "runtime/train/device_data.h"
#include "support/backend_test.h"
#include "support/test_support.h"

namespace nbsgd::test {

class GatherTest : public BackendTest {
 protected:
  // Gathers `index` from `ds` on this backend's device 0 and checks every value
  // against the loader's copy-out.
  void expect_loader_bits(const data::Dataset& ds, const std::vector<int32_t>& index) {
    Stream s = stream();
    Device dev;
    dev.backend = backend();
    dev.memory_bytes = size_t(1) << 40;
    engine::DeviceData on(ds, dev);
    const size_t count = index.size(), sample = size_t(ds.sample_size());
    Buffer didx = upload(s, index);
    Buffer dx = device_buffer(count * sample * sizeof(float)), dy = device_buffer(count * sizeof(int32_t));
    kernels::GatherOp op = on.op();
    op.index = didx.as<int32_t>();
    op.x = dx.as<float>();
    op.y = dy.as<int32_t>();
    kernels::gather(s, op, count);
    const auto x = download<float>(s, dx, count * sample);
    const auto y = download<int32_t>(s, dy, count);
    std::vector<float> want(count * sample);
    ds.copy_images(index.data(), int64_t(count), want.data());
    for (size_t k = 0; k < count; ++k) {
      ASSERT_EQ(y[k], ds.labels[size_t(index[k])]) << k;
      for (size_t p = 0; p < sample; ++p)
        ASSERT_EQ(std::memcmp(&x[k * sample + p], &want[k * sample + p], sizeof(float)), 0)
            << ds.name << ": sample " << k << " value " << p << ": " << x[k * sample + p] << " vs "
            << want[k * sample + p];
    }
  }
  std::vector<int32_t> index_{52, 0, 7, 7, 31, 1, 52, 19, 3};
};

TEST_P(GatherTest, FashionMnistBytesGiveTheLoadersFloats) {
  const int64_t total = 53, sample = 784;
  std::mt19937 rng(11);
  std::vector<unsigned char> pixels(size_t(total * sample));
  for (auto& v : pixels) v = static_cast<unsigned char>(rng() & 0xFF);
  const std::string path = make_temp_dir("gather") + "/images-idx3-ubyte";
  {
    std::ofstream f(path, std::ios::binary);
    const unsigned char head[16] = {0, 0, 8, 3, 0, 0, 0, uint8_t(total), 0, 0, 0, 28, 0, 0, 0, 28};
    f.write(reinterpret_cast<const char*>(head), 16);
    f.write(reinterpret_cast<const char*>(pixels.data()), std::streamsize(pixels.size()));
  }
  data::Dataset ds;
  ds.name = "fashion-like";
  ds.c = 1, ds.h = 28, ds.w = 28, ds.classes = 10;
  ds.n = data::read_idx_images(path, ds.images, &ds.bytes);
  ASSERT_EQ(ds.n, total);
  ASSERT_TRUE(ds.bytes);
  for (int64_t i = 0; i < total; ++i) ds.labels.push_back(static_cast<int32_t>(rng() % 10));
  expect_loader_bits(ds, index_);
}

TEST_P(GatherTest, ChannelLastBytesWithATablePerChannel) {
  const int c = 3, h = 5, w = 4;
  const int64_t total = 53, sample = int64_t(c) * h * w;
  std::mt19937 rng(12);
  auto raw = std::make_shared<std::vector<unsigned char>>(size_t(total * sample));
  for (auto& v : *raw) v = static_cast<unsigned char>(rng() & 0xFF);
  auto m = std::make_shared<data::MappedImages>();
  m->keep = raw;
  m->base = raw->data();
  m->u8 = true;
  m->nhwc = true;
  m->scale = {1.0f / 255 / 0.3f, 1.0f / 255 / 0.25f, 1.0f / 255 / 0.2f};
  m->shift = {-0.5f / 0.3f, -0.4f / 0.25f, -0.45f / 0.2f};
  data::Dataset ds;
  ds.name = "nhwc-u8";
  ds.n = total, ds.c = c, ds.h = h, ds.w = w, ds.classes = 7;
  ds.mapped = m;
  ds.bytes = data::byte_pixels_of(ds.mapped, c);
  ASSERT_TRUE(ds.bytes);
  for (int64_t i = 0; i < total; ++i) ds.labels.push_back(static_cast<int32_t>(rng() % 7));
  expect_loader_bits(ds, index_);
}

TEST_P(GatherTest, FloatSetsAreCopied) {
  const int64_t total = 53, sample = 2 * 3 * 3;
  std::mt19937 rng(13);
  data::Dataset ds;
  ds.name = "float";
  ds.n = total, ds.c = 2, ds.h = 3, ds.w = 3, ds.classes = 5;
  std::normal_distribution<float> g;
  for (int64_t i = 0; i < total * sample; ++i) ds.images.push_back(g(rng));
  for (int64_t i = 0; i < total; ++i) ds.labels.push_back(static_cast<int32_t>(rng() % 5));
  expect_loader_bits(ds, index_);
}

}  // namespace nbsgd::test
