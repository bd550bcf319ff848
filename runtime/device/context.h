// DeviceContext: everything one worker owns on its device: a compute stream, a
// communication stream, a copy stream, and (CUDA) the cuBLAS and cuDNN handles,
// created on first use. Move-only; there is no process-wide state.
//
// An SM partition of a GPU (device kind "cuda-partition", `--devices 0:0.25`)
// makes its three streams in a green context holding its share of the SMs
// (runtime/device/cuda/green_context.h). Where green contexts are missing it uses plain
// streams, says so in one line, and asks the engine for a throttle instead.
#pragma once

#include <memory>

#include "runtime/device/device.h"
#include "runtime/device/stream.h"

namespace nbsgd {

class DeviceContext {
 public:
  DeviceContext(const Device& device, ClockKind clock);
  DeviceContext(DeviceContext&&) noexcept;
  DeviceContext& operator=(DeviceContext&&) noexcept;
  ~DeviceContext();

  const Device& device() const { return device_; }
  Backend backend() const { return device_.backend; }
  ClockKind clock() const { return clock_; }
  Stream& compute() { return compute_; }
  Stream& comm() { return comm_; }
  Stream& copy() { return copy_; }
  // A new event on this device.
  Event event() const { return Event(device_.backend, device_.ordinal); }

  // CUDA only: cublasHandle_t / cudnnHandle_t as void*, bound to no stream; callers
  // set the stream before each call.
  void* cublas();
  void* cudnn();

  // SM partitions: the SMs its green context holds (0: not a partition, or no
  // green context), and the slowdown the engine's throttle must add in place of
  // missing green contexts (1 / sm_fraction then, else 1).
  int partition_sms() const { return partition_sms_; }
  double fallback_slowdown() const { return fallback_slowdown_; }

 private:
  void make_partition_streams();
  struct Handles;
  Device device_;
  ClockKind clock_;
  std::shared_ptr<void> partition_;  // the green context: declared first, so it outlives the streams
  int partition_sms_ = 0;
  double fallback_slowdown_ = 1.0;
  Stream compute_, comm_, copy_;
  std::unique_ptr<Handles> handles_;
};

}  // namespace nbsgd
