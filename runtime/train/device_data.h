// The training set on a device, uploaded once at set-up, so that a mini-batch is
// formed on the device by one gather kernel from an index buffer (kernels/gather.h)
// instead of a host function that gathers into pinned memory on the copy stream,
// where the GPU would wait for the host once per mini-batch (issue 13).
//   - A set stored as bytes (data::Dataset::bytes: Fashion-MNIST, uint8 npy) is kept
//     as uint8 with the loader's normalisation table: 47 MB for Fashion-MNIST's
//     training set instead of 188 MB of floats.
//   - Any other set is kept as its normalised NCHW floats.
// The host backend runs the same gather functor over the host data set in place
// (its "device" memory is host memory), converting only a mapped float set that
// needs it. One DeviceData serves every worker on the same device (SM partitions of
// one GPU, or all host workers). The Dataset must outlive it.
#pragma once

#include <cstddef>
#include <string>

#include "kernels/gather.h"
#include "nets/data/dataset.h"
#include "runtime/device/buffer.h"
#include "runtime/device/device.h"

namespace nbsgd::engine {

class DeviceData {
 public:
  // Uploads `ds` to `dev` (synchronous: once, at set-up).
  DeviceData(const data::Dataset& ds, const Device& dev);

  // Bytes the set takes on a device: uint8 values and the table, or floats; labels.
  static size_t device_bytes(const data::Dataset& ds);
  // Whether the set is kept on `dev` at all: a GPU keeps it when it takes at most a
  // quarter of the GPU's memory (the rest is for the replicas, their scratch, cuDNN's
  // workspaces); otherwise mini-batches are gathered on the host as before and
  // `why` says so. The host backend always does.
  static bool fits(const data::Dataset& ds, const Device& dev, std::string* why = nullptr);

  // The gather's source fields; the caller sets index, x and y.
  kernels::GatherOp op() const { return op_; }
  bool as_bytes() const { return op_.bytes != nullptr; }
  int backend_device() const { return device_; }

 private:
  Buffer pixels_, lut_, labels_;  // empty where the host backend reads the set in place
  kernels::GatherOp op_;
  int device_ = 0;
};

}  // namespace nbsgd::engine
