// The CUDA backend's streams, events, memory and device queries (cudart through
// g++: no kernels here).
#include <functional>

#include "runtime/device/cuda/cuda_backend.h"
#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/device.h"
#include "runtime/device/device_guard.h"
#include "runtime/device/event_flags.h"
#include "runtime/device/nvtx.h"

namespace nbsgd::cuda_backend {

static_assert(kCudaEventBlockingSync == cudaEventBlockingSync);
static_assert(kCudaEventDisableTiming == cudaEventDisableTiming);
static_assert(kCudaDeviceScheduleBlockingSync == cudaDeviceScheduleBlockingSync);

namespace {

// CUDA_DEVICE_MAX_CONNECTIONS is read when the driver makes a context, so it must be
// in the environment before the first CUDA call of the process. Discovery raises it
// too; doing it here as well, at static initialisation of the only file that holds
// the backend's streams, also covers programs (tests, benches) that make a CUDA
// stream without discovering devices first. See kCudaMaxConnections for why.
[[maybe_unused]] const std::string g_connections = raise_cuda_connections();

class CudaEventImpl final : public EventImpl {
 public:
  CudaEventImpl(int device, bool timed) : device_(device), timed_(timed) {
    DeviceGuard g(device_);
    NBSGD_CUDA_CHECK(device_, cudaEventCreateWithFlags(&ev_, cuda_event_flags(timed)));
  }
  ~CudaEventImpl() override { NBSGD_CUDA_LOG(device_, cudaEventDestroy(ev_)); }
  Backend backend() const override { return Backend::Cuda; }
  bool timed() const override { return timed_; }
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
  bool timed_;
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
    DeviceGuard g(device_);
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
    DeviceGuard g(device_);
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
    DeviceGuard g(device_);
    NBSGD_CUDA_CHECK(device_, cudaEventRecord(static_cast<CudaEventImpl&>(e).get(), s_));
  }
  void wait(const EventImpl& e) override {
    DeviceGuard g(device_);
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

std::unique_ptr<EventImpl> make_event(int device, bool timed) {
  return std::make_unique<CudaEventImpl>(device, timed);
}

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
    // Host waits block instead of spinning a core (runtime/device/event_flags.h).
    // cudaSetDeviceFlags applies to the current device and overwrites the flags of
    // a context that exists already; MapHost keeps mapped memory (the commit flag).
    {
      DeviceGuard g(i);
      NBSGD_CUDA_CHECK(i, cudaSetDeviceFlags(kCudaDeviceScheduleBlockingSync | cudaDeviceMapHost));
    }
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
  DeviceGuard g(device);
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
  DeviceGuard g(device);
  NBSGD_CUDA_CHECK(device, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, static_cast<cudaStream_t>(stream)));
}
void copy_peer_async(void* stream, void* dst, int dst_device, const void* src, int src_device, size_t bytes) {
  DeviceGuard g(dst_device);
  NBSGD_CUDA_CHECK(dst_device, cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes,
                                                   static_cast<cudaStream_t>(stream)));
}
void enable_peer_access(int device, int peer) {
  DeviceGuard g(device);
  cudaError_t e = cudaDeviceEnablePeerAccess(peer, 0);
  if (e == cudaErrorPeerAccessAlreadyEnabled) {
    cudaGetLastError();
    return;
  }
  NBSGD_CUDA_CHECK(device, e);
}

void set_current_device(int device) { NBSGD_CUDA_CHECK(device, cudaSetDevice(device)); }
int current_device() {
  int d = 0;
  NBSGD_CUDA_CHECK(-1, cudaGetDevice(&d));
  return d;
}
void restore_current_device(int device) noexcept { NBSGD_CUDA_LOG(device, cudaSetDevice(device)); }
bool can_access_peer(int device, int peer) {
  int ok = 0;
  NBSGD_CUDA_CHECK(device, cudaDeviceCanAccessPeer(&ok, device, peer));
  return ok != 0;
}

void* create_cublas(int device, int sm_target) {
  DeviceGuard g(device);
  cublasHandle_t h = nullptr;
  NBSGD_CUBLAS_CHECK(device, cublasCreate(&h));
  if (sm_target > 0) {
    const cublasStatus_t st = cublasSetSmCountTarget(h, sm_target);
    if (st != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(h);
      NBSGD_CUBLAS_CHECK(device, st);
    }
  }
  return h;
}
void destroy_cublas(int device, void* h) {
  cublasStatus_t s = cublasDestroy(static_cast<cublasHandle_t>(h));
  if (s != CUBLAS_STATUS_SUCCESS) log_error(__FILE__, __LINE__, device, "cublasDestroy", detail::cublas_detail(s));
}
// cuDNN's counterpart of cublasSetSmCountTarget (CUDNN_ATTR_ENGINE_SM_COUNT_TARGET)
// exists only in its graph API; the legacy convolution calls used here have none.
void* create_cudnn(int device) {
  DeviceGuard g(device);
  cudnnHandle_t h = nullptr;
  NBSGD_CUDNN_CHECK(device, cudnnCreate(&h));
  return h;
}
void destroy_cudnn(int device, void* h) {
  cudnnStatus_t s = cudnnDestroy(static_cast<cudnnHandle_t>(h));
  if (s != CUDNN_STATUS_SUCCESS) log_error(__FILE__, __LINE__, device, "cudnnDestroy", detail::cudnn_detail(s));
}

}  // namespace nbsgd::cuda_backend
