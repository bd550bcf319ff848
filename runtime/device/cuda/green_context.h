// SM partitions of one GPU through green contexts, for virtual devices
// (`--devices 0:0.5,0:0.25,0:0.25`): each partition holds its own share of the
// GPU's SMs, and streams made in it run only there.
//
// The driver API is reached only through cudaGetDriverEntryPointByVersion: nbsgd
// never links libcuda, so its binaries still start on machines without a driver
// (runtime/cuda is compiled only with the CUDA backend; this header has no CUDA
// includes). Green contexts need a 12.4+ driver; where they are missing, create()
// throws, and DeviceContext turns that into an error naming the device and its
// share: a partition never silently becomes a throttled whole GPU.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace nbsgd::cuda_backend {

class GreenPartition {
 public:
  // Partition `index` of GPU `ordinal` split into `shares` (every partition of that
  // GPU, in order; runtime/device/sm_split.h): its share of the SMs rounded down to
  // the hardware's step (sm_90: 8), disjoint from the others. The first partition
  // made while none of the GPU's is alive does the one split for all of them; later
  // ones must name the same shares. Throws nbsgd::Error with a one-line reason
  // naming the GPU and the share where green contexts are unavailable or the
  // shares cannot be met.
  static std::shared_ptr<GreenPartition> create(int ordinal, const std::vector<double>& shares, int index);
  ~GreenPartition();
  GreenPartition(const GreenPartition&) = delete;
  GreenPartition& operator=(const GreenPartition&) = delete;

  int ordinal() const { return ordinal_; }
  int sm_count() const { return sms_; }          // SMs of this partition
  int device_sm_count() const { return total_; } // SMs of the whole GPU
  // A new non-blocking stream of the partition (cudaStream_t as void*). The caller
  // destroys it (cudaStreamDestroy) before the partition goes.
  void* create_stream();

 private:
  GreenPartition() = default;
  int ordinal_ = 0;
  int index_ = 0;
  int sms_ = 0;
  int total_ = 0;
  void* ctx_ = nullptr;  // CUgreenCtx
};

// Whether green contexts can be used on GPU `ordinal`; `why` says why not.
bool green_contexts_available(int ordinal, std::string& why);

}  // namespace nbsgd::cuda_backend
