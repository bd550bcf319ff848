// SM partitions of one GPU through green contexts, for virtual devices
// (`--devices 0:0.5,0:0.25,0:0.25`): each partition holds its own share of the
// GPU's SMs, and streams made in it run only there.
//
// The driver API is reached only through cudaGetDriverEntryPointByVersion: nbsgd
// never links libcuda, so its binaries still start on machines without a driver
// (runtime/cuda is compiled only with the CUDA backend; this header has no CUDA
// includes). Green contexts need a 12.4+ driver; where they are missing, create()
// throws and the caller falls back (DeviceContext: a plain stream plus the throttle).
#pragma once

#include <memory>
#include <string>

namespace nbsgd::cuda_backend {

class GreenPartition {
 public:
  // About `fraction` of GPU `ordinal`'s SMs, rounded to the hardware's granularity
  // (sm_90: multiples of 8), disjoint from the partitions of that GPU that are
  // still alive. Throws nbsgd::Error with a one-line reason where green contexts
  // are unavailable or too few SMs are left.
  static std::shared_ptr<GreenPartition> create(int ordinal, double fraction);
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
  int sms_ = 0;
  int total_ = 0;
  void* ctx_ = nullptr;  // CUgreenCtx
};

// Whether green contexts can be used on GPU `ordinal`; `why` says why not.
bool green_contexts_available(int ordinal, std::string& why);

}  // namespace nbsgd::cuda_backend
