#include "runtime/device/cuda/green_context.h"

#include <cuda.h>  // types and constants only: the functions come from the entry points
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <type_traits>
#include <vector>

#include "runtime/device/check.h"

namespace nbsgd::cuda_backend {

namespace {

// Green contexts came with CUDA 12.4: ask for the 12.4 ABI of every function.
constexpr unsigned kDriverAbi = 12040;

struct DriverApi {
  CUresult (*cuDeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*cuDeviceGetDevResource)(CUdevice, CUdevResource*, CUdevResourceType) = nullptr;
  CUresult (*cuDevSmResourceSplitByCount)(CUdevResource*, unsigned*, const CUdevResource*, CUdevResource*, unsigned,
                                          unsigned) = nullptr;
  CUresult (*cuDevResourceGenerateDesc)(CUdevResourceDesc*, CUdevResource*, unsigned) = nullptr;
  CUresult (*cuGreenCtxCreate)(CUgreenCtx*, CUdevResourceDesc, CUdevice, unsigned) = nullptr;
  CUresult (*cuGreenCtxDestroy)(CUgreenCtx) = nullptr;
  CUresult (*cuGreenCtxGetDevResource)(CUgreenCtx, CUdevResource*, CUdevResourceType) = nullptr;
  CUresult (*cuGreenCtxStreamCreate)(CUstream*, CUgreenCtx, unsigned, int) = nullptr;
  CUresult (*cuGetErrorName)(CUresult, const char**) = nullptr;
  std::string missing;  // empty when every function was found
};

const DriverApi& driver() {
  static const DriverApi api = [] {
    DriverApi a;
    auto load = [&a](const char* name, auto& fn) {
      if (!a.missing.empty()) return;
      void* p = nullptr;
      cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
      const cudaError_t e = cudaGetDriverEntryPointByVersion(name, &p, kDriverAbi, cudaEnableDefault, &q);
      if (e != cudaSuccess) {
        a.missing = fmt::format("cudaGetDriverEntryPointByVersion({}) failed: {}", name, cudaGetErrorString(e));
      } else if (q != cudaDriverEntryPointSuccess || p == nullptr) {
        a.missing = fmt::format("the driver has no {} (green contexts need a CUDA 12.4+ driver)", name);
      } else {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
      }
    };
    load("cuGetErrorName", a.cuGetErrorName);
    load("cuDeviceGet", a.cuDeviceGet);
    load("cuDeviceGetDevResource", a.cuDeviceGetDevResource);
    load("cuDevSmResourceSplitByCount", a.cuDevSmResourceSplitByCount);
    load("cuDevResourceGenerateDesc", a.cuDevResourceGenerateDesc);
    load("cuGreenCtxCreate", a.cuGreenCtxCreate);
    load("cuGreenCtxDestroy", a.cuGreenCtxDestroy);
    load("cuGreenCtxGetDevResource", a.cuGreenCtxGetDevResource);
    load("cuGreenCtxStreamCreate", a.cuGreenCtxStreamCreate);
    return a;
  }();
  return api;
}

void check(CUresult r, const char* call, int ordinal) {
  if (r == CUDA_SUCCESS) return;
  const char* name = nullptr;
  if (driver().cuGetErrorName) driver().cuGetErrorName(r, &name);
  throw Error(fmt::format("GPU {}: {} failed: {} ({})", ordinal, call, name ? name : "unknown error", int(r)),
              ordinal);
}
#define NBSGD_CU(ordinal, call) check((call), #call, (ordinal))

// What is left of each GPU's SMs for further partitions. One process drives all
// virtual devices of a GPU, and their SM sets must not overlap, so the split state
// is per GPU, not per context. A split's remainder can only be split again once it
// backs a green context ("holder"), which is kept until the GPU's last partition goes.
struct GpuSplit {
  int live = 0;
  CUdevResource remaining{};
  std::vector<CUgreenCtx> holders;
};
std::mutex g_mutex;
std::map<int, GpuSplit> g_split;

void release_holders(GpuSplit& s) {
  for (CUgreenCtx h : s.holders) driver().cuGreenCtxDestroy(h);
  s.holders.clear();
}

}  // namespace

bool green_contexts_available(int ordinal, std::string& why) {
  const DriverApi& api = driver();
  if (!api.missing.empty()) {
    why = api.missing;
    return false;
  }
  int major = 0;
  const cudaError_t e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ordinal);
  if (e != cudaSuccess) {
    why = fmt::format("GPU {}: {}", ordinal, cudaGetErrorString(e));
    return false;
  }
  return true;
}

std::shared_ptr<GreenPartition> GreenPartition::create(int ordinal, double fraction) {
  if (!(fraction > 0.0 && fraction <= 1.0)) throw Error(fmt::format("SM fraction {} is not in (0, 1]", fraction));
  std::string why;
  if (!green_contexts_available(ordinal, why)) throw Error(why, ordinal);
  const DriverApi& api = driver();
  // The runtime initialises the driver and the primary context; the green
  // contexts share the primary context's memory, so buffers need no copies.
  if (cudaSetDevice(ordinal) != cudaSuccess || cudaFree(nullptr) != cudaSuccess)
    throw Error(fmt::format("GPU {}: cannot initialise the CUDA context", ordinal), ordinal);
  CUdevice dev = 0;
  NBSGD_CU(ordinal, api.cuDeviceGet(&dev, ordinal));
  CUdevResource full{};
  NBSGD_CU(ordinal, api.cuDeviceGetDevResource(dev, &full, CU_DEV_RESOURCE_TYPE_SM));
  const unsigned total = full.sm.smCount;
  const unsigned align = std::max(1u, full.sm.smCoscheduledAlignment);
  const unsigned min_size = std::max(1u, full.sm.minSmPartitionSize);
  unsigned want = static_cast<unsigned>(std::lround(fraction * total / align)) * align;
  want = std::clamp(want, min_size, total);

  std::lock_guard<std::mutex> lk(g_mutex);
  GpuSplit& s = g_split[ordinal];
  if (s.live == 0) {
    release_holders(s);
    s.remaining = full;
  }
  if (want > s.remaining.sm.smCount)
    throw Error(fmt::format("GPU {}: SM fraction {} needs {} of its {} SMs, only {} are left by the other partitions",
                            ordinal, fraction, want, total, s.remaining.sm.smCount),
                ordinal);
  CUdevResource group{}, rest{};
  unsigned groups = 1;
  NBSGD_CU(ordinal, api.cuDevSmResourceSplitByCount(&group, &groups, &s.remaining, &rest, 0, want));
  if (groups < 1) throw Error(fmt::format("GPU {}: could not split off {} SMs", ordinal, want), ordinal);

  CUdevResourceDesc desc = nullptr;
  NBSGD_CU(ordinal, api.cuDevResourceGenerateDesc(&desc, &group, 1));
  CUgreenCtx ctx = nullptr;
  NBSGD_CU(ordinal, api.cuGreenCtxCreate(&ctx, desc, dev, CU_GREEN_CTX_DEFAULT_STREAM));
  try {
    if (rest.sm.smCount > 0) {
      CUdevResourceDesc rest_desc = nullptr;
      NBSGD_CU(ordinal, api.cuDevResourceGenerateDesc(&rest_desc, &rest, 1));
      CUgreenCtx holder = nullptr;
      NBSGD_CU(ordinal, api.cuGreenCtxCreate(&holder, rest_desc, dev, CU_GREEN_CTX_DEFAULT_STREAM));
      s.holders.push_back(holder);
      NBSGD_CU(ordinal, api.cuGreenCtxGetDevResource(holder, &s.remaining, CU_DEV_RESOURCE_TYPE_SM));
    } else {
      s.remaining = rest;
    }
  } catch (...) {
    api.cuGreenCtxDestroy(ctx);
    throw;
  }
  ++s.live;
  std::shared_ptr<GreenPartition> p(new GreenPartition());
  p->ordinal_ = ordinal;
  p->sms_ = static_cast<int>(group.sm.smCount);
  p->total_ = static_cast<int>(total);
  p->ctx_ = ctx;
  return p;
}

GreenPartition::~GreenPartition() {
  const DriverApi& api = driver();
  const CUresult r = api.cuGreenCtxDestroy(static_cast<CUgreenCtx>(ctx_));
  if (r != CUDA_SUCCESS) log_error(__FILE__, __LINE__, ordinal_, "cuGreenCtxDestroy", std::to_string(int(r)));
  std::lock_guard<std::mutex> lk(g_mutex);
  GpuSplit& s = g_split[ordinal_];
  if (--s.live == 0) release_holders(s);
}

void* GreenPartition::create_stream() {
  CUstream st = nullptr;
  NBSGD_CU(ordinal_, driver().cuGreenCtxStreamCreate(&st, static_cast<CUgreenCtx>(ctx_), CU_STREAM_NON_BLOCKING, 0));
  return st;
}

}  // namespace nbsgd::cuda_backend
