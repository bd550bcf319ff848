#include "runtime/train/device_data.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "runtime/device/check.h"
#include "runtime/device/device_guard.h"
#include "runtime/device/stream.h"

namespace nbsgd::engine {

size_t DeviceData::device_bytes(const data::Dataset& ds) {
  const size_t values = size_t(ds.n) * size_t(ds.sample_size());
  const size_t labels = size_t(ds.n) * sizeof(int32_t);
  if (ds.bytes) return values + ds.bytes->lut.size() * sizeof(float) + labels;
  return values * sizeof(float) + labels;
}

bool DeviceData::fits(const data::Dataset& ds, const Device& dev, std::string* why) {
  if (dev.backend == Backend::Host) return true;
  const size_t need = device_bytes(ds), limit = dev.memory_bytes / 4;
  if (need <= limit) return true;
  if (why)
    *why = fmt::format("{}: {:.1f} MB on the device is more than a quarter of {}'s {:.1f} GB; its mini-batches are "
                       "gathered on the host",
                       ds.name, need / 1e6, dev.name, dev.memory_bytes / 1e9);
  return false;
}

namespace {

// Copies `bytes` from host memory to a new device buffer through `s`.
Buffer upload(Stream& s, const Device& dev, const void* src, size_t bytes) {
  Buffer b(dev.backend, dev.ordinal, std::max<size_t>(bytes, 1));
  if (bytes) copy_async(s, b.data(), src, bytes);
  return b;
}

}  // namespace

DeviceData::DeviceData(const data::Dataset& ds, const Device& dev) : device_(dev.ordinal) {
  NBSGD_CHECK(ds.n > 0, ds.name + ": an empty set cannot be put on a device");
  op_.sample = ds.sample_size();
  op_.plane = int64_t(ds.h) * ds.w;
  op_.channels = ds.c;
  const size_t values = size_t(ds.n) * size_t(op_.sample);
  if (dev.backend == Backend::Host) {
    op_.labels = ds.labels.data();
    if (ds.bytes) {
      op_.bytes = ds.bytes->base;
      op_.lut = ds.bytes->lut.data();
      op_.nhwc = ds.bytes->nhwc;
    } else if (!ds.mapped || ds.mapped->in_place()) {
      op_.floats = ds.image(0);
    } else {
      pixels_ = Buffer(dev.backend, dev.ordinal, values * sizeof(float));
      ds.copy_range(0, ds.n, pixels_.as<float>());
      op_.floats = pixels_.as<float>();
    }
    return;
  }
  DeviceGuard guard(dev.backend, dev.ordinal);
  Stream s = Stream::cuda(dev.ordinal, {"data upload"});
  labels_ = upload(s, dev, ds.labels.data(), size_t(ds.n) * sizeof(int32_t));
  if (ds.bytes) {
    pixels_ = upload(s, dev, ds.bytes->base, values);
    lut_ = upload(s, dev, ds.bytes->lut.data(), ds.bytes->lut.size() * sizeof(float));
    op_.bytes = pixels_.as<uint8_t>();
    op_.lut = lut_.as<float>();
    op_.nhwc = ds.bytes->nhwc;
  } else if (!ds.mapped || ds.mapped->in_place()) {
    pixels_ = upload(s, dev, ds.image(0), values * sizeof(float));
    op_.floats = pixels_.as<float>();
  } else {
    // Converted a chunk at a time: the float set need never exist in host memory.
    pixels_ = Buffer(dev.backend, dev.ordinal, values * sizeof(float));
    const int64_t chunk = std::max<int64_t>(1, (int64_t(64) << 20) / (op_.sample * int64_t(sizeof(float))));
    std::vector<float> host(size_t(chunk * op_.sample));
    for (int64_t i = 0; i < ds.n; i += chunk) {
      const int64_t n = std::min(chunk, ds.n - i);
      ds.copy_range(i, n, host.data());
      copy_async(s, pixels_.as<float>() + i * op_.sample, host.data(), size_t(n * op_.sample) * sizeof(float));
      s.synchronize();  // `host` is refilled next
    }
    op_.floats = pixels_.as<float>();
  }
  s.synchronize();
  op_.labels = labels_.as<int32_t>();
}

}  // namespace nbsgd::engine
