// Entry points of the CUDA backend that host-side code calls. This header has no
// CUDA includes; without the CUDA backend every function throws a clear Error
// (runtime/cuda_stubs.cpp), so host-only builds link and say why.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "runtime/device/stream.h"

namespace nbsgd {
struct Device;
}

namespace nbsgd::cuda_backend {

// timed = false: cudaEventDisableTiming. Every event blocks its waiter
// (cudaEventBlockingSync; runtime/device/event_flags.h).
std::unique_ptr<EventImpl> make_event(int device, bool timed);
double event_elapsed_s(const EventImpl& start, const EventImpl& end);
// native == nullptr: create a new non-blocking stream.
std::unique_ptr<StreamImpl> make_stream(int device, void* native, bool owned, const std::string& name);

// Device discovery. Returns false and sets `why` when CUDA devices cannot be used
// (no driver: cudaGetDeviceCount's error 35; no devices).
bool query_devices(std::vector<Device>& out, std::vector<std::vector<int>>& peer, std::string& why);

void* device_alloc(int device, size_t bytes);
void device_free(int device, void* p);
void* pinned_alloc(size_t bytes);
void pinned_free(void* p);
// Host memory mapped into the device's address space; *device_ptr receives its
// device-side address.
void* mapped_alloc(size_t bytes, void** device_ptr);
void copy_async(void* stream, int device, void* dst, const void* src, size_t bytes);
void copy_peer_async(void* stream, void* dst, int dst_device, const void* src, int src_device, size_t bytes);
void enable_peer_access(int device, int peer);
void set_current_device(int device);
int current_device();
void restore_current_device(int device) noexcept;
// Peer access from `device` to `peer` memory (cudaDeviceCanAccessPeer).
bool can_access_peer(int device, int peer);

// Library handles owned by a DeviceContext (cublasHandle_t, cudnnHandle_t as void*).
// sm_target > 0 (an SM partition): cublasSetSmCountTarget, so cuBLAS sizes its grids
// for the partition's SMs instead of the whole GPU's.
void* create_cublas(int device, int sm_target = 0);
void destroy_cublas(int device, void* h);
void* create_cudnn(int device);
void destroy_cudnn(int device, void* h);

}  // namespace nbsgd::cuda_backend
