#include "runtime/device/cuda/green_context.h"

#include <cuda.h>  // types and constants only: the functions come from the entry points
#include <cuda_runtime_api.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <type_traits>
#include <vector>

#include "runtime/device/check.h"
#include "runtime/device/device_guard.h"
#include "runtime/device/sm_split.h"

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

// The one split of each GPU, shared by its live partitions. One process drives all
// virtual devices of a GPU and their SM sets must not overlap, so the split state
// is per GPU, not per context; it is redone only once the GPU's last partition went.
struct GpuSplit {
  int live = 0;
  int total = 0;                     // SMs of the whole GPU
  std::vector<double> shares;        // the plan it was split for
  SmSplitPlan plan;
  std::vector<CUdevResource> groups;  // plan.groups groups of plan.unit SMs
  std::vector<bool> taken;           // per share: a live partition holds it
};
std::mutex g_mutex;
std::map<int, GpuSplit> g_split;

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

std::shared_ptr<GreenPartition> GreenPartition::create(int ordinal, const std::vector<double>& shares, int index) {
  NBSGD_CHECK_DEV(ordinal, index >= 0 && index < static_cast<int>(shares.size()),
                  fmt::format("GPU {}: partition {} of {} shares", ordinal, index, shares.size()));
  std::string why;
  if (!green_contexts_available(ordinal, why)) throw Error(why, ordinal);
  const DriverApi& api = driver();
  // The runtime initialises the driver and the primary context; the green
  // contexts share the primary context's memory, so buffers need no copies.
  {
    DeviceGuard g(ordinal);
    if (cudaFree(nullptr) != cudaSuccess)
      throw Error(fmt::format("GPU {}: cannot initialise the CUDA context", ordinal), ordinal);
  }
  CUdevice dev = 0;
  NBSGD_CU(ordinal, api.cuDeviceGet(&dev, ordinal));

  std::lock_guard<std::mutex> lk(g_mutex);
  GpuSplit& s = g_split[ordinal];
  if (s.live == 0) {
    // The one split for every partition of this GPU.
    CUdevResource full{};
    NBSGD_CU(ordinal, api.cuDeviceGetDevResource(dev, &full, CU_DEV_RESOURCE_TYPE_SM));
    SmGeometry g;
    g.total = static_cast<int>(full.sm.smCount);
    g.min_size = static_cast<int>(std::max(1u, full.sm.minSmPartitionSize));
    g.alignment = static_cast<int>(std::max(1u, full.sm.smCoscheduledAlignment));
    SmSplitPlan plan = plan_sm_split(g, shares, ordinal);
    std::vector<CUdevResource> groups(static_cast<size_t>(plan.groups));
    unsigned made = static_cast<unsigned>(plan.groups);
    CUdevResource rest{};
    NBSGD_CU(ordinal, api.cuDevSmResourceSplitByCount(groups.data(), &made, &full, &rest, 0,
                                                      static_cast<unsigned>(plan.unit)));
    if (made != static_cast<unsigned>(plan.groups))
      throw Error(fmt::format("GPU {}: the driver made {} groups of {} SMs, the plan for shares {} needs {}", ordinal,
                              made, plan.unit, fmt::join(shares, ","), plan.groups),
                  ordinal);
    for (const CUdevResource& r : groups)
      if (r.sm.smCount != static_cast<unsigned>(plan.unit))
        throw Error(fmt::format("GPU {}: the driver made a group of {} SMs, the plan asked for {}", ordinal,
                                r.sm.smCount, plan.unit),
                    ordinal);
    s.total = g.total;
    s.shares = shares;
    s.plan = std::move(plan);
    s.groups = std::move(groups);
    s.taken.assign(shares.size(), false);
  } else if (s.shares != shares) {
    throw Error(fmt::format("GPU {}: partition shares {} differ from those of its live partitions ({})", ordinal,
                            fmt::join(shares, ","), fmt::join(s.shares, ",")),
                ordinal);
  }
  if (s.taken[static_cast<size_t>(index)])
    throw Error(fmt::format("GPU {}: SM share {} (partition {}) is already in use", ordinal, shares[index], index),
                ordinal);
  int first = 0;
  for (int k = 0; k < index; ++k) first += s.plan.counts[static_cast<size_t>(k)];
  const int count = s.plan.counts[static_cast<size_t>(index)];
  CUdevResourceDesc desc = nullptr;
  NBSGD_CU(ordinal, api.cuDevResourceGenerateDesc(&desc, s.groups.data() + first, static_cast<unsigned>(count)));
  CUgreenCtx ctx = nullptr;
  NBSGD_CU(ordinal, api.cuGreenCtxCreate(&ctx, desc, dev, CU_GREEN_CTX_DEFAULT_STREAM));
  s.taken[static_cast<size_t>(index)] = true;
  ++s.live;
  std::shared_ptr<GreenPartition> p(new GreenPartition());
  p->ordinal_ = ordinal;
  p->index_ = index;
  p->sms_ = s.plan.sms(static_cast<size_t>(index));
  p->total_ = s.total;
  p->ctx_ = ctx;
  return p;
}

GreenPartition::~GreenPartition() {
  const DriverApi& api = driver();
  const CUresult r = api.cuGreenCtxDestroy(static_cast<CUgreenCtx>(ctx_));
  if (r != CUDA_SUCCESS) log_error(__FILE__, __LINE__, ordinal_, "cuGreenCtxDestroy", std::to_string(int(r)));
  std::lock_guard<std::mutex> lk(g_mutex);
  GpuSplit& s = g_split[ordinal_];
  s.taken[static_cast<size_t>(index_)] = false;
  if (--s.live == 0) s = GpuSplit{};
}

void* GreenPartition::create_stream() {
  CUstream st = nullptr;
  NBSGD_CU(ordinal_, driver().cuGreenCtxStreamCreate(&st, static_cast<CUgreenCtx>(ctx_), CU_STREAM_NON_BLOCKING, 0));
  return st;
}

}  // namespace nbsgd::cuda_backend
