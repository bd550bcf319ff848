// Devices: what a worker runs on. A CUDA GPU, an SM partition of one (a virtual
// device), or a host worker of the host backend.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "runtime/device/backend.h"

namespace nbsgd {

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
};

struct DeviceList {
  Backend backend = Backend::Host;
  std::vector<Device> devices;
  std::vector<std::vector<int>> peer_access;  // [i][j] = 1 if i can access j's memory
  std::string fallback_reason;               // why the host backend is used, if it is
};

struct DiscoverOptions {
  int host_workers = 0;       // > 0: use this many host devices, whatever the GPUs
  int default_host_workers = 4;  // the fallback's size when no GPU is usable
};

// CUDA devices when usable; otherwise host devices and a one-line reason, e.g.
// "no usable CUDA driver: cudaGetDeviceCount returned 35 (...)".
DeviceList discover_devices(const DiscoverOptions& opt = {});

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
