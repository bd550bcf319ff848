#include "runtime/device/context.h"

#include <fmt/format.h>

#include <cstdio>

#include "runtime/device/check.h"
#include "runtime/device/cuda/cuda_backend.h"
#if NBSGD_HAVE_CUDA
#include "runtime/device/cuda/green_context.h"
#endif

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
  if (device.backend == Backend::Cuda && device.kind == "cuda-partition") {
    make_partition_streams();
    return;
  }
  compute_ = make_stream(device, clock, "compute");
  comm_ = make_stream(device, clock, "comm");
  copy_ = make_stream(device, clock, "copy");
  update_ = make_stream(device, clock, "update");
}

void DeviceContext::make_partition_streams() {
  // A partition that cannot be made is an error: running the worker on the whole
  // GPU instead (with a throttle standing in for the missing SMs) would measure
  // another machine than the one asked for.
  std::string why = "this build has no CUDA backend (NBSGD_CUDA=OFF)";
#if NBSGD_HAVE_CUDA
  const std::vector<double> shares = device_.gpu_shares.empty() ? std::vector<double>{device_.sm_fraction}
                                                                 : device_.gpu_shares;
  const int index = device_.gpu_shares.empty() ? 0 : device_.share_index;
  try {
    auto part = cuda_backend::GreenPartition::create(device_.ordinal, shares, index);
    for (auto [stream, role] : {std::pair{&compute_, "compute"}, std::pair{&comm_, "comm"}, std::pair{&copy_, "copy"},
                                std::pair{&update_, "update"}}) {
      StreamOptions opt;
      opt.name = std::string(role) + "/" + std::to_string(device_.index);
      opt.clock = clock_;
      *stream = Stream::adopt_cuda(device_.ordinal, part->create_stream(), true, opt);
    }
    partition_sms_ = part->sm_count();
    partition_ = std::move(part);
    return;
  } catch (const Error& e) {
    why = e.what();
  }
#endif
  throw Error("device " + std::to_string(device_.index) + " (GPU " + std::to_string(device_.ordinal) +
                  ", SM share " + fmt::format("{:g}", device_.sm_fraction) + "): cannot make its SM partition: " + why,
              device_.index);
}

DeviceContext::DeviceContext(DeviceContext&&) noexcept = default;
DeviceContext& DeviceContext::operator=(DeviceContext&&) noexcept = default;
DeviceContext::~DeviceContext() = default;

void* DeviceContext::cublas() {
  NBSGD_CHECK_DEV(device_.index, backend() == Backend::Cuda, "cuBLAS handle on a host device");
  // On a partition, cuBLAS sizes its grids for the partition's SMs, not the GPU's.
  if (!handles_->cublas) handles_->cublas = cuda_backend::create_cublas(device_.ordinal, partition_sms_);
  return handles_->cublas;
}

void* DeviceContext::cudnn() {
  NBSGD_CHECK_DEV(device_.index, backend() == Backend::Cuda, "cuDNN handle on a host device");
  if (!handles_->cudnn) handles_->cudnn = cuda_backend::create_cudnn(device_.ordinal);
  return handles_->cudnn;
}

}  // namespace nbsgd
