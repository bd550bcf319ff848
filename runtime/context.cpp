#include "runtime/context.h"

#include "runtime/check.h"
#include "runtime/cuda/cuda_backend.h"

namespace nbsgd {

struct DeviceContext::Handles {
  int device = -1;
  void* cublas = nullptr;
  void* cudnn = nullptr;
  ~Handles() {
    if (cublas) cuda_backend::destroy_cublas(device, cublas);
    if (cudnn) cuda_backend::destroy_cudnn(device, cudnn);
  }
};

static Stream make_stream(const Device& d, ClockKind clock, const char* role) {
  StreamOptions opt;
  opt.name = std::string(role) + "/" + std::to_string(d.index);
  opt.clock = clock;
  return d.backend == Backend::Cuda ? Stream::cuda(d.ordinal, opt) : Stream::host(opt);
}

DeviceContext::DeviceContext(const Device& device, ClockKind clock)
    : device_(device), clock_(clock), handles_(std::make_unique<Handles>()) {
  if (device.backend == Backend::Cuda && clock == ClockKind::Virtual) {
    throw InputError("--clock virtual runs only on host workers, not on CUDA device " +
                     std::to_string(device.index) + " (use --clock real, or --host-workers N)");
  }
  handles_->device = device.ordinal;
  compute_ = make_stream(device, clock, "compute");
  comm_ = make_stream(device, clock, "comm");
  copy_ = make_stream(device, clock, "copy");
}

DeviceContext::DeviceContext(DeviceContext&&) noexcept = default;
DeviceContext& DeviceContext::operator=(DeviceContext&&) noexcept = default;
DeviceContext::~DeviceContext() = default;

void* DeviceContext::cublas() {
  NBSGD_CHECK_DEV(device_.index, backend() == Backend::Cuda, "cuBLAS handle on a host device");
  if (!handles_->cublas) handles_->cublas = cuda_backend::create_cublas(device_.ordinal);
  return handles_->cublas;
}

void* DeviceContext::cudnn() {
  NBSGD_CHECK_DEV(device_.index, backend() == Backend::Cuda, "cuDNN handle on a host device");
  if (!handles_->cudnn) handles_->cudnn = cuda_backend::create_cudnn(device_.ordinal);
  return handles_->cudnn;
}

}  // namespace nbsgd
