// Without the CUDA backend, its entry points exist and say why they cannot run.
#if !NBSGD_HAVE_CUDA
#include "runtime/device/check.h"
#include "runtime/device/cuda/cuda_backend.h"
#include "runtime/device/device.h"

namespace nbsgd::cuda_backend {
namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw Error(std::string(what) + ": nbsgd was built without the CUDA backend (NBSGD_CUDA=OFF)");
}
}  // namespace

std::unique_ptr<EventImpl> make_event(int, bool) { no_cuda("CUDA event"); }
double event_elapsed_s(const EventImpl&, const EventImpl&) { no_cuda("cudaEventElapsedTime"); }
std::unique_ptr<StreamImpl> make_stream(int, void*, bool, const std::string&) { no_cuda("CUDA stream"); }
bool query_devices(std::vector<Device>&, std::vector<std::vector<int>>&, std::string& why) {
  why = "nbsgd was built without the CUDA backend (NBSGD_CUDA=OFF)";
  return false;
}
void* device_alloc(int, size_t) { no_cuda("cudaMalloc"); }
void device_free(int, void*) {}
void* pinned_alloc(size_t) { no_cuda("cudaMallocHost"); }
void pinned_free(void*) {}
void* mapped_alloc(size_t, void**) { no_cuda("cudaHostAlloc"); }
void copy_async(void*, int, void*, const void*, size_t) { no_cuda("cudaMemcpyAsync"); }
void copy_peer_async(void*, void*, int, const void*, int, size_t) { no_cuda("cudaMemcpyPeerAsync"); }
void enable_peer_access(int, int) { no_cuda("cudaDeviceEnablePeerAccess"); }
void set_current_device(int) { no_cuda("cudaSetDevice"); }
int current_device() { no_cuda("cudaGetDevice"); }
void restore_current_device(int) noexcept {}
bool can_access_peer(int, int) { return false; }
void* create_cublas(int, int) { no_cuda("cublasCreate"); }
void destroy_cublas(int, void*) {}
void* create_cudnn(int) { no_cuda("cudnnCreate"); }
void destroy_cudnn(int, void*) {}
}  // namespace nbsgd::cuda_backend
#endif
