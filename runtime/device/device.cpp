#include "runtime/device/device.h"

#include <cstdlib>
#include <sstream>

#include "runtime/device/check.h"
#include "runtime/device/cuda/cuda_backend.h"

namespace nbsgd {

DeviceList host_devices(int n, const std::string& reason) {
  DeviceList list;
  list.backend = Backend::Host;
  list.fallback_reason = reason;
  for (int i = 0; i < n; ++i) {
    Device d;
    d.backend = Backend::Host;
    d.index = d.ordinal = i;
    d.name = "host-worker-" + std::to_string(i);
    d.kind = "host";
    list.devices.push_back(d);
  }
  list.peer_access.assign(n, std::vector<int>(n, 1));
  return list;
}

DeviceList discover_devices(const DiscoverOptions& opt) {
  if (opt.host_workers > 0) {
    return host_devices(opt.host_workers,
                        "host backend requested with --host-workers " + std::to_string(opt.host_workers));
  }
  DeviceList list;
  std::string why;
  if (cuda_backend::query_devices(list.devices, list.peer_access, why)) {
    list.backend = Backend::Cuda;
    return list;
  }
  return host_devices(opt.default_host_workers, why);
}

static int parse_int(const std::string& s, const std::string& flag_value) {
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0') throw InputError("--devices " + flag_value + ": '" + s + "' is not a device index");
  return static_cast<int>(v);
}

DeviceList select_devices(const DeviceList& available, const std::string& spec) {
  DeviceList out;
  out.backend = available.backend;
  out.fallback_reason = available.fallback_reason;
  std::vector<int> picked;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::string idx = item, frac;
    if (auto c = item.find(':'); c != std::string::npos) {
      idx = item.substr(0, c);
      frac = item.substr(c + 1);
    }
    int i = parse_int(idx, spec);
    if (i < 0 || i >= static_cast<int>(available.devices.size())) {
      throw InputError("--devices " + spec + ": device " + std::to_string(i) + " does not exist (" +
                       std::to_string(available.devices.size()) + " " + to_string(available.backend) +
                       " device(s): 0.." + std::to_string(int(available.devices.size()) - 1) + ")");
    }
    Device d = available.devices[i];
    if (!frac.empty()) {
      char* end = nullptr;
      double f = std::strtod(frac.c_str(), &end);
      if (*end != '\0' || !(f > 0.0 && f <= 1.0))
        throw InputError("--devices " + spec + ": SM fraction '" + frac + "' must be in (0, 1]");
      d.sm_fraction = f;
      if (d.backend == Backend::Cuda) d.kind = "cuda-partition";
    }
    d.index = static_cast<int>(out.devices.size());
    out.devices.push_back(d);
    picked.push_back(i);
  }
  if (out.devices.empty()) throw InputError("--devices: empty device list");
  out.peer_access.assign(picked.size(), std::vector<int>(picked.size(), 0));
  for (size_t a = 0; a < picked.size(); ++a)
    for (size_t b = 0; b < picked.size(); ++b)
      out.peer_access[a][b] = picked[a] == picked[b] ? 1 : available.peer_access[picked[a]][picked[b]];
  return out;
}

void bind_thread_to_device(int ordinal) { cuda_backend::set_current_device(ordinal); }

std::string fallback_line(const DeviceList& list) {
  return "nbsgd: using " + std::to_string(list.devices.size()) + " host worker(s): " + list.fallback_reason;
}

}  // namespace nbsgd
