#include "runtime/device/nvtx.h"

#if NBSGD_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#include <nvtx3/nvToolsExtCudaRt.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace nbsgd::nvtx {
namespace {
nvtxDomainHandle_t domain() {
  static nvtxDomainHandle_t d = nvtxDomainCreateA("nbsgd");
  return d;
}
}  // namespace

void push(const char* name, uint32_t color) {
  nvtxEventAttributes_t a{};
  a.version = NVTX_VERSION;
  a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  a.colorType = NVTX_COLOR_ARGB;
  a.color = color;
  a.messageType = NVTX_MESSAGE_TYPE_ASCII;
  a.message.ascii = name;
  nvtxDomainRangePushEx(domain(), &a);
}
void pop() { nvtxDomainRangePop(domain()); }
void mark(const char* name) {
  nvtxEventAttributes_t a{};
  a.version = NVTX_VERSION;
  a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  a.messageType = NVTX_MESSAGE_TYPE_ASCII;
  a.message.ascii = name;
  nvtxDomainMarkEx(domain(), &a);
}
void name_thread(const char* name) { nvtxNameOsThreadA(static_cast<uint32_t>(syscall(SYS_gettid)), name); }
void name_cuda_stream(void* stream, const char* name) {
  nvtxNameCudaStreamA(static_cast<cudaStream_t>(stream), name);
}
}  // namespace nbsgd::nvtx

#else

namespace nbsgd::nvtx {
void push(const char*, uint32_t) {}
void pop() {}
void mark(const char*) {}
void name_thread(const char*) {}
void name_cuda_stream(void*, const char*) {}
}  // namespace nbsgd::nvtx

#endif
