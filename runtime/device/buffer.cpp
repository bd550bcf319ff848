#include "runtime/device/buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "runtime/device/check.h"
#include "runtime/device/cuda/cuda_backend.h"
#include "runtime/device/stream.h"

namespace nbsgd {

static void* host_alloc(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  return p;
}

Buffer::Buffer(Backend backend, int device, size_t bytes)
    : bytes_(bytes), backend_(backend), device_(device), kind_(MemKind::Device) {
  ptr_ = backend == Backend::Cuda ? cuda_backend::device_alloc(device, bytes == 0 ? 1 : bytes) : host_alloc(bytes);
}

Buffer Buffer::pinned(Backend backend, size_t bytes) {
  Buffer b;
  b.bytes_ = bytes;
  b.backend_ = backend;
  b.kind_ = MemKind::Pinned;
  b.ptr_ = backend == Backend::Cuda ? cuda_backend::pinned_alloc(bytes == 0 ? 1 : bytes) : host_alloc(bytes);
  return b;
}

Buffer Buffer::mapped(Backend backend, size_t bytes) {
  Buffer b;
  b.bytes_ = bytes;
  b.backend_ = backend;
  b.kind_ = MemKind::Mapped;
  if (backend == Backend::Cuda) {
    b.ptr_ = cuda_backend::mapped_alloc(bytes == 0 ? 1 : bytes, &b.dev_ptr_);
    std::memset(b.ptr_, 0, bytes);
  } else {
    b.ptr_ = host_alloc(bytes);
  }
  return b;
}

Buffer::Buffer(Buffer&& o) noexcept { *this = std::move(o); }

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = std::exchange(o.ptr_, nullptr);
    dev_ptr_ = std::exchange(o.dev_ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    backend_ = o.backend_;
    device_ = o.device_;
    kind_ = o.kind_;
  }
  return *this;
}

Buffer::~Buffer() { release(); }

void Buffer::release() {
  if (!ptr_) return;
  if (backend_ == Backend::Host) {
    std::free(ptr_);
  } else if (kind_ == MemKind::Device) {
    cuda_backend::device_free(device_, ptr_);
  } else {
    cuda_backend::pinned_free(ptr_);
  }
  ptr_ = dev_ptr_ = nullptr;
}

void copy_async(Stream& s, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (s.backend() == Backend::Cuda) {
    s.note(Issue::Copy);
    cuda_backend::copy_async(s.native(), s.device(), dst, src, bytes);
  } else {
    s.device_task([dst, src, bytes] { std::memcpy(dst, src, bytes); }, Issue::Copy);
  }
}

void copy_peer_async(Stream& s, void* dst, int dst_device, const void* src, int src_device, size_t bytes) {
  if (bytes == 0) return;
  if (s.backend() == Backend::Cuda) {
    s.note(Issue::Copy);
    cuda_backend::copy_peer_async(s.native(), dst, dst_device, src, src_device, bytes);
  } else {
    s.device_task([dst, src, bytes] { std::memcpy(dst, src, bytes); }, Issue::Copy);
  }
}

}  // namespace nbsgd
