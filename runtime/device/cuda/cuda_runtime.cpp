// The CUDA backend's streams, events, memory and device queries (cudart through
// g++: no kernels here).
#include <functional>

#include "runtime/device/cuda/cuda_backend.h"
#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/device.h"
#include "runtime/device/nvtx.h"

namespace nbsgd::cuda_backend {
namespace {

class CudaEventImpl final : public EventImpl {
 public:
  explicit CudaEventImpl(int device) : device_(device) {
    NBSGD_CUDA_CHECK(device_, cudaSetDevice(device_));
    NBSGD_CUDA_CHECK(device_, cudaEventCreateWithFlags(&ev_, cudaEventDefault));
  }
  ~CudaEventImpl() override { NBSGD_CUDA_LOG(device_, cudaEventDestroy(ev_)); }
  Backend backend() const override { return Backend::Cuda; }
  bool query() const override {
    cudaError_t e = cudaEventQuery(ev_);
    if (e == cudaErrorNotReady) return false;
    NBSGD_CUDA_CHECK(device_, e);
    return true;
  }
  void synchronize() const override { NBSGD_CUDA_CHECK(device_, cudaEventSynchronize(ev_)); }
  double host_timestamp() const override {
    throw Error("CUDA events carry no host timestamp: use Event::elapsed_s", device_);
  }
  cudaEvent_t get() const { return ev_; }
  int device() const { return device_; }

 private:
  int device_;
  cudaEvent_t ev_ = nullptr;
};

void CUDART_CB run_host_fn(void* p) {
  std::unique_ptr<std::function<void()>> fn(static_cast<std::function<void()>*>(p));
  try {
    (*fn)();
  } catch (const std::exception& e) {
    log_error(__FILE__, __LINE__, -1, "host task", e.what());
  }
}

class CudaStreamImpl final : public StreamImpl {
 public:
  CudaStreamImpl(int device, void* native, bool owned, std::string name)
      : device_(device), owned_(owned), name_(std::move(name)) {
    NBSGD_CUDA_CHECK(device_, cudaSetDevice(device_));
    if (native) {
      s_ = static_cast<cudaStream_t>(native);
    } else {
      NBSGD_CUDA_CHECK(device_, cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
      owned_ = true;
    }
    nvtx::name_cuda_stream(s_, name_.c_str());
  }
  ~CudaStreamImpl() override {
    if (owned_) NBSGD_CUDA_LOG(device_, cudaStreamDestroy(s_));
  }
  Backend backend() const override { return Backend::Cuda; }
  int device() const override { return device_; }
  const std::string& name() const override { return name_; }
  ClockKind clock() const override { return ClockKind::Real; }
  void host_task(std::function<void()> fn, double) override {
    auto* p = new std::function<void()>(std::move(fn));
    cudaError_t e = cudaLaunchHostFunc(s_, run_host_fn, p);
    if (e != cudaSuccess) {
      delete p;
      NBSGD_CUDA_CHECK(device_, e);
    }
  }
  void hold(double) override {
    throw Error("Stream::hold is host-only; CUDA streams are held by kernels::delay", device_);
  }
  void record(EventImpl& e) override {
    NBSGD_CUDA_CHECK(device_, cudaEventRecord(static_cast<CudaEventImpl&>(e).get(), s_));
  }
  void wait(const EventImpl& e) override {
    NBSGD_CUDA_CHECK(device_, cudaStreamWaitEvent(s_, static_cast<const CudaEventImpl&>(e).get(), 0));
  }
  void synchronize() override { NBSGD_CUDA_CHECK(device_, cudaStreamSynchronize(s_)); }
  bool query() override {
    cudaError_t e = cudaStreamQuery(s_);
    if (e == cudaErrorNotReady) return false;
    NBSGD_CUDA_CHECK(device_, e);
    return true;
  }
  double host_time() const override { return steady_now_s(); }
  void* native() const override { return s_; }

 private:
  int device_;
  bool owned_;
  std::string name_;
  cudaStream_t s_ = nullptr;
};

}  // namespace

std::unique_ptr<EventImpl> make_event(int device) { return std::make_unique<CudaEventImpl>(device); }

double event_elapsed_s(const EventImpl& a, const EventImpl& b) {
  const auto& ea = static_cast<const CudaEventImpl&>(a);
  const auto& eb = static_cast<const CudaEventImpl&>(b);
  float ms = 0;
  NBSGD_CUDA_CHECK(ea.device(), cudaEventElapsedTime(&ms, ea.get(), eb.get()));
  return ms * 1e-3;
}

std::unique_ptr<StreamImpl> make_stream(int device, void* native, bool owned, const std::string& name) {
  return std::make_unique<CudaStreamImpl>(device, native, owned, name);
}

bool query_devices(std::vector<Device>& out, std::vector<std::vector<int>>& peer, std::string& why) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    why = "no usable CUDA driver: cudaGetDeviceCount returned " + std::to_string(int(e)) + " (" +
          cudaGetErrorString(e) + ")";
    cudaGetLastError();  // clear the sticky-free error state for later calls
    return false;
  }
  if (n == 0) {
    why = "cudaGetDeviceCount found no CUDA devices";
    return false;
  }
  out.clear();
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    NBSGD_CUDA_CHECK(i, cudaGetDeviceProperties(&p, i));
    Device d;
    d.backend = Backend::Cuda;
    d.index = d.ordinal = i;
    d.name = p.name;
    d.kind = "cuda";
    d.cc_major = p.major;
    d.cc_minor = p.minor;
    d.sms = p.multiProcessorCount;
    d.memory_bytes = p.totalGlobalMem;
    char bus[32] = {0};
    NBSGD_CUDA_CHECK(i, cudaDeviceGetPCIBusId(bus, sizeof bus, i));
    d.pci_bus_id = bus;
    out.push_back(d);
  }
  peer.assign(n, std::vector<int>(n, 0));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      if (i == j) {
        peer[i][j] = 1;
        continue;
      }
      NBSGD_CUDA_CHECK(i, cudaDeviceCanAccessPeer(&peer[i][j], i, j));
    }
  return true;
}

void* device_alloc(int device, size_t bytes) {
  void* p = nullptr;
  NBSGD_CUDA_CHECK(device, cudaSetDevice(device));
  NBSGD_CUDA_CHECK(device, cudaMalloc(&p, bytes));
  return p;
}
void device_free(int device, void* p) { NBSGD_CUDA_LOG(device, cudaFree(p)); }
void* pinned_alloc(size_t bytes) {
  void* p = nullptr;
  NBSGD_CUDA_CHECK(-1, cudaMallocHost(&p, bytes));
  return p;
}
void pinned_free(void* p) { NBSGD_CUDA_LOG(-1, cudaFreeHost(p)); }
void* mapped_alloc(size_t bytes, void** device_ptr) {
  void* p = nullptr;
  NBSGD_CUDA_CHECK(-1, cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable));
  NBSGD_CUDA_CHECK(-1, cudaHostGetDevicePointer(device_ptr, p, 0));
  return p;
}
void copy_async(void* stream, int device, void* dst, const void* src, size_t bytes) {
  NBSGD_CUDA_CHECK(device, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, static_cast<cudaStream_t>(stream)));
}
void copy_peer_async(void* stream, void* dst, int dst_device, const void* src, int src_device, size_t bytes) {
  NBSGD_CUDA_CHECK(dst_device, cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes,
                                                   static_cast<cudaStream_t>(stream)));
}
void enable_peer_access(int device, int peer) {
  NBSGD_CUDA_CHECK(device, cudaSetDevice(device));
  cudaError_t e = cudaDeviceEnablePeerAccess(peer, 0);
  if (e == cudaErrorPeerAccessAlreadyEnabled) {
    cudaGetLastError();
    return;
  }
  NBSGD_CUDA_CHECK(device, e);
}

void set_current_device(int device) { NBSGD_CUDA_CHECK(device, cudaSetDevice(device)); }

void* create_cublas(int device) {
  NBSGD_CUDA_CHECK(device, cudaSetDevice(device));
  cublasHandle_t h = nullptr;
  NBSGD_CUBLAS_CHECK(device, cublasCreate(&h));
  return h;
}
void destroy_cublas(int device, void* h) {
  cublasStatus_t s = cublasDestroy(static_cast<cublasHandle_t>(h));
  if (s != CUBLAS_STATUS_SUCCESS) log_error(__FILE__, __LINE__, device, "cublasDestroy", detail::cublas_detail(s));
}
void* create_cudnn(int device) {
  NBSGD_CUDA_CHECK(device, cudaSetDevice(device));
  cudnnHandle_t h = nullptr;
  NBSGD_CUDNN_CHECK(device, cudnnCreate(&h));
  return h;
}
void destroy_cudnn(int device, void* h) {
  cudnnStatus_t s = cudnnDestroy(static_cast<cudnnHandle_t>(h));
  if (s != CUDNN_STATUS_SUCCESS) log_error(__FILE__, __LINE__, device, "cudnnDestroy", detail::cudnn_detail(s));
}

}  // namespace nbsgd::cuda_backend
