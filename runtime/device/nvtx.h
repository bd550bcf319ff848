// NVTX3 ranges in the `nbsgd` domain, so Nsight Systems groups everything nbsgd
// marks under one name. Compiles to nothing without the CUDA backend.
#pragma once

#include <cstdint>

namespace nbsgd::nvtx {

// Colours used consistently across the runtime (ARGB).
enum Color : uint32_t {
  kCompute = 0xFF76B900,   // mini-batch forward/backward
  kCommit = 0xFF2E86DE,    // gradient commit
  kExchange = 0xFFE67E22,  // all-reduce / gossip
  kUpdate = 0xFF8E44AD,    // optimizer
  kInjected = 0xFFC0392B,  // injected straggler delay (named "injected:...")
  kHost = 0xFF7F8C8D,
};

void push(const char* name, uint32_t color = kHost);
void pop();
void mark(const char* name);
void name_thread(const char* name);
// Names a CUDA stream (cudaStream_t as void*) in the profiler.
void name_cuda_stream(void* stream, const char* name);

class Range {
 public:
  explicit Range(const char* name, uint32_t color = kHost) { push(name, color); }
  ~Range() { pop(); }
  Range(const Range&) = delete;
  Range& operator=(const Range&) = delete;
};

}  // namespace nbsgd::nvtx

#define NBSGD_NVTX_CAT2(a, b) a##b
#define NBSGD_NVTX_CAT(a, b) NBSGD_NVTX_CAT2(a, b)
#define NBSGD_NVTX_RANGE(name, color) ::nbsgd::nvtx::Range NBSGD_NVTX_CAT(nvtx_range_, __LINE__)(name, color)
