// DeviceContext: everything one worker owns on its device: a compute stream, a
// communication stream, a copy stream, and (CUDA) the cuBLAS and cuDNN handles,
// created on first use. Move-only; there is no process-wide state.
#pragma once

#include <memory>

#include "runtime/device.h"
#include "runtime/stream.h"

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

 private:
  struct Handles;
  Device device_;
  ClockKind clock_;
  Stream compute_, comm_, copy_;
  std::unique_ptr<Handles> handles_;
};

}  // namespace nbsgd
