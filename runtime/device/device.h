// Devices: what a worker runs on. A CUDA GPU, an SM partition of one (a virtual
// device), or a host worker of the host backend.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "runtime/device/backend.h"

namespace nbsgd {

// Hardware work queues per GPU context that nbsgd asks the driver for. The default
// is 8; nbsgd makes 3 streams per worker (compute, comm, copy), so 4 workers on one
// GPU already need 12. With fewer queues than streams, streams share a queue, and a
// throttled worker's spin kernel at the head of a shared queue stalls the fast
// workers' kernels behind it: exactly what Non-blocking SGD exists to avoid. 32 is
// the driver's maximum.
inline constexpr int kCudaMaxConnections = 32;

struct Device {
  Backend backend = Backend::Host;
  int index = 0;    // position in the device list (the worker number)
  int ordinal = 0;  // CUDA device ordinal; host devices: same as index
  std::string name;
  std::string kind;  // "cuda", "cuda-partition" or "host"
  int cc_major = 0, cc_minor = 0;
  int sms = 0;
  size_t memory_bytes = 0;
  std::string pci_bus_id;
  double sm_fraction = 1.0;  // < 1 for an SM partition of a GPU
  // SM partitions: the shares of every partition of this GPU in the list, in list
  // order, and which of them this one is. The GPU is split once for all of them
  // (runtime/device/sm_split.h), so each partition must know the whole plan.
  std::vector<double> gpu_shares;
  int share_index = 0;
};

struct DeviceList {
  Backend backend = Backend::Host;
  std::vector<Device> devices;
  std::vector<std::vector<int>> peer_access;  // [i][j] = 1 if i can access j's memory
  std::string fallback_reason;               // why the host backend is used, if it is
};

// Where discovery looks for a GPU that is present even when CUDA cannot use it.
// The defaults are the real places; NBSGD_GPU_PROBE_DEV and NBSGD_GPU_PROBE_SMI
// replace them (tests fake a visible GPU with them; see GpuProbe::from_env).
struct GpuProbe {
  std::string dev_dir = "/dev";           // a GPU is visible when it holds nvidia<N>
  std::string nvidia_smi = "nvidia-smi";  // ...or when `nvidia_smi -L` lists a "GPU <N>:" line; "" skips it
  static GpuProbe from_env();
};

// The first sign of a GPU ("/dev/nvidia0", or nvidia-smi's "GPU 0: NVIDIA H200 (...)"
// line), or "" when none is visible. nvidia-smi is run only when no device node is
// found, and only by discovery's failure path.
std::string visible_gpu(const GpuProbe& probe);

struct DiscoverOptions {
  int host_workers = 0;       // > 0: use this many host devices, whatever the GPUs
  int default_host_workers = 4;  // the fallback's size when no GPU is usable
  GpuProbe probe = GpuProbe::from_env();
};

// CUDA devices when usable; otherwise host devices and a one-line reason, e.g.
// "no usable CUDA driver: cudaGetDeviceCount returned 35 (...)".
// A broken GPU set-up must not pass for a machine without a GPU: when CUDA cannot be
// used but a GPU is visible (opt.probe), this throws an Error whose one line names
// the GPU seen and why CUDA failed (an old driver, a build without CUDA, ...).
// Likewise under NBSGD_REQUIRE_GPU=1 whenever CUDA cannot be used (bench/gpu_check.sh).
// --host-workers N (opt.host_workers > 0) still gives host workers on such a box.
DeviceList discover_devices(const DiscoverOptions& opt = {});

// NBSGD_REQUIRE_GPU=1 (or any value but "" and "0"): GPU tests, benches and nbsgd
// commands that would skip or fall back for want of a GPU fail instead
// (bench/gpu_check.sh sets it).
bool gpu_required();

// Raises CUDA_DEVICE_MAX_CONNECTIONS to `connections` unless the user set it; returns
// the value in effect. Must run before the first CUDA call (the driver reads it when
// it creates a context); discovery and the CUDA backend's static initialiser call it.
std::string raise_cuda_connections(int connections = kCudaMaxConnections);

// Host devices only (tests, --clock virtual).
DeviceList host_devices(int n, const std::string& reason);

// "--devices 0,1" or "0:0.5,0:0.25,0:0.25" (SM partitions) against what exists.
// Throws InputError naming the flag for an index that does not exist.
DeviceList select_devices(const DeviceList& available, const std::string& spec);

// Makes a CUDA device current for the calling host thread (a worker's thread is
// bound to its device once).
void bind_thread_to_device(int ordinal);

// The one line printed at start when falling back to the host backend.
std::string fallback_line(const DeviceList& list);

}  // namespace nbsgd
