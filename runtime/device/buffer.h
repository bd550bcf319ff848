// Owning memory on a device, in pinned host memory, or in host memory mapped into
// a device (for flags the host writes and kernels read). Move-only.
//
// On the host backend all three are ordinary 64-byte-aligned, zero-filled host
// memory, so runtime code is identical on both backends.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/device/backend.h"

namespace nbsgd {

class Stream;

enum class MemKind { Device, Pinned, Mapped };

class Buffer {
 public:
  Buffer() = default;
  // Device memory of `bytes` on (backend, device).
  Buffer(Backend backend, int device, size_t bytes);
  static Buffer pinned(Backend backend, size_t bytes);
  static Buffer mapped(Backend backend, size_t bytes);

  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  void* data() const { return ptr_; }
  // The address kernels use: the device alias for mapped memory, else data().
  void* device_data() const { return dev_ptr_ ? dev_ptr_ : ptr_; }
  size_t bytes() const { return bytes_; }
  Backend backend() const { return backend_; }
  int device() const { return device_; }
  MemKind kind() const { return kind_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  template <class T>
  size_t count() const {
    return bytes_ / sizeof(T);
  }

 private:
  void release();
  void* ptr_ = nullptr;
  void* dev_ptr_ = nullptr;
  size_t bytes_ = 0;
  Backend backend_ = Backend::Host;
  int device_ = -1;
  MemKind kind_ = MemKind::Device;
};

// Asynchronous copy ordered on `s`: host<->device, device<->device on one device
// (the direction follows from the addresses, as with unified addressing).
void copy_async(Stream& s, void* dst, const void* src, size_t bytes);
// Device-to-device copy between two devices (CUDA peer copy; on host, a memcpy).
void copy_peer_async(Stream& s, void* dst, int dst_device, const void* src, int src_device, size_t bytes);

}  // namespace nbsgd
