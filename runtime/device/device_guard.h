// DeviceGuard: makes a CUDA device current for a scope and restores the previous one
// when the scope ends. Every place that enqueues work (kernels, copies, cuBLAS and
// cuDNN calls, allocations) uses one: one host thread may drive the workers of
// several GPUs, a kernel launched into a stream of a device that is not current
// fails, and leaving another device current behind would misdirect the caller's
// next call that relies on the current device.
//
// A host-backend guard does nothing. BasicDeviceGuard takes the get/set calls as a
// parameter so that its set-and-restore logic is tested on the host with a fake.
#pragma once

#include "runtime/device/backend.h"

namespace nbsgd {

namespace cuda_backend {
int current_device();                          // cudaGetDevice
void set_current_device(int device);           // cudaSetDevice; throws
void restore_current_device(int device) noexcept;  // cudaSetDevice; logs instead of throwing
}  // namespace cuda_backend

// Api: int get(); void set(int); void restore(int) noexcept.
template <class Api>
class BasicDeviceGuard {
 public:
  BasicDeviceGuard(bool active, int device, Api api = Api{}) : api_(api) {
    if (!active) return;
    prev_ = api_.get();
    if (prev_ != device) {
      api_.set(device);
      changed_ = true;
    }
  }
  ~BasicDeviceGuard() {
    if (changed_) api_.restore(prev_);
  }
  BasicDeviceGuard(const BasicDeviceGuard&) = delete;
  BasicDeviceGuard& operator=(const BasicDeviceGuard&) = delete;

 private:
  Api api_;
  int prev_ = -1;
  bool changed_ = false;
};

struct CudaDeviceApi {
  int get() const { return cuda_backend::current_device(); }
  void set(int d) const { cuda_backend::set_current_device(d); }
  void restore(int d) const noexcept { cuda_backend::restore_current_device(d); }
};

class DeviceGuard : public BasicDeviceGuard<CudaDeviceApi> {
 public:
  // CUDA device `device` current until the guard goes.
  explicit DeviceGuard(int device) : BasicDeviceGuard(true, device) {}
  // Only for Backend::Cuda; a no-op on the host backend.
  DeviceGuard(Backend b, int device) : BasicDeviceGuard(b == Backend::Cuda, device) {}
};

}  // namespace nbsgd
