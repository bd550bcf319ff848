// DeviceContext: everything one worker owns on its device: a compute stream, a
// communication stream, a copy stream, and (CUDA) the cuBLAS and cuDNN handles,
// created on first use. Move-only; there is no process-wide state.
//
// An SM partition of a GPU (device kind "cuda-partition", `--devices 0:0.25`)
// makes its three streams in a green context holding its share of the SMs
// (runtime/device/cuda/green_context.h); its cuBLAS handle targets that many SMs.
// Where the partition cannot be made, the constructor throws an Error naming the
// device and its share.
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
  // The ring's updates: after the step's sum (comm) and after a cancelled mini-batch
  // still reading the weights (compute), without holding either stream.
  Stream& update() { return update_; }
  // A new event on this device; Timing::On only for events that time something.
  Event event(Timing timing = Timing::Off) const { return Event(device_.backend, device_.ordinal, timing); }

  // CUDA only: cublasHandle_t / cudnnHandle_t as void*, bound to no stream; callers
  // set the stream before each call.
  void* cublas();
  void* cudnn();

  // SM partitions: the SMs its green context holds (0: not a partition). A
  // partition is a green context or an error, never a throttled whole GPU.
  int partition_sms() const { return partition_sms_; }

  // cuDNN: only deterministic algorithms (--deterministic). Read by the
  // convolutions when they pick their algorithms, so set it before building a model.
  void set_deterministic(bool on) { deterministic_ = on; }
  bool deterministic() const { return deterministic_; }

 private:
  void make_partition_streams();
  struct Handles;
  Device device_;
  ClockKind clock_;
  std::shared_ptr<void> partition_;  // the green context: declared first, so it outlives the streams
  int partition_sms_ = 0;
  bool deterministic_ = false;
  Stream compute_, comm_, copy_, update_;
  std::unique_ptr<Handles> handles_;
};

}  // namespace nbsgd
