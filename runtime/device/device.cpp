#include "runtime/device/device.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <cctype>
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

GpuProbe GpuProbe::from_env() {
  GpuProbe p;
  if (const char* d = std::getenv("NBSGD_GPU_PROBE_DEV")) p.dev_dir = d;
  if (const char* s = std::getenv("NBSGD_GPU_PROBE_SMI")) p.nvidia_smi = s;
  return p;
}

// `prefix` followed by one or more digits, then `rest` (or the end when rest is "").
bool prefix_digits(const std::string& s, const std::string& prefix, const std::string& rest) {
  if (s.compare(0, prefix.size(), prefix) != 0) return false;
  size_t i = prefix.size(), d = i;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == d) return false;
  return rest.empty() ? i == s.size() : s.compare(i, rest.size(), rest) == 0;
}

std::string visible_gpu(const GpuProbe& probe) {
  namespace fs = std::filesystem;
  // /dev/nvidia0, /dev/nvidia1, ...: one node per GPU (nvidiactl and nvidia-uvm
  // exist with the driver alone and do not count).
  std::error_code ec;
  for (fs::directory_iterator it(probe.dev_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (prefix_digits(name, "nvidia", "")) return it->path().string();
  }
  if (probe.nvidia_smi.empty()) return "";
  const std::string cmd = probe.nvidia_smi + " -L 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  if (!p) return "";
  char line[512];
  while (std::fgets(line, sizeof line, p.get())) {
    std::string l(line);
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    if (prefix_digits(l, "GPU ", ":")) return "nvidia-smi: " + l;
  }
  return "";
}

bool gpu_required() {
  const char* v = std::getenv("NBSGD_REQUIRE_GPU");
  return v && *v && std::string(v) != "0";
}

std::string raise_cuda_connections(int connections) {
  // overwrite = 0: a value the user chose wins.
  setenv("CUDA_DEVICE_MAX_CONNECTIONS", std::to_string(connections).c_str(), 0);
  return std::getenv("CUDA_DEVICE_MAX_CONNECTIONS");
}

DeviceList discover_devices(const DiscoverOptions& opt) {
  if (opt.host_workers > 0) {
    return host_devices(opt.host_workers,
                        "host backend requested with --host-workers " + std::to_string(opt.host_workers));
  }
  raise_cuda_connections();  // before the first CUDA call below
  DeviceList list;
  std::string why;
  if (cuda_backend::query_devices(list.devices, list.peer_access, why)) {
    list.backend = Backend::Cuda;
    return list;
  }
  // CUDA_VISIBLE_DEVICES="" or -1 hides the GPUs on purpose: host workers then.
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  const bool hidden = cvd && (std::string(cvd).empty() || std::string(cvd) == "-1");
  if (!hidden) {
    const std::string seen = visible_gpu(opt.probe);
    // Not a bug of nbsgd but of the machine's set-up: one line saying what to do
    // (InputError: printed as it is, exit 1).
    if (!seen.empty())
      throw InputError("a GPU is visible (" + seen + ") but CUDA cannot use it: " + why +
                  "; fix the driver or the CUDA set-up, or pass --host-workers N to train on host workers");
  }
  if (gpu_required())
    throw InputError("NBSGD_REQUIRE_GPU is set, but no GPU can be used: " + why +
                " (unset it, or pass --host-workers N, to run on host workers)");
  return host_devices(opt.default_host_workers, why);
}

static int parse_int(const std::string& s, const std::string& flag_value) {
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0') throw InputError("--devices " + flag_value + ": '" + s + "' is not a device index");
  return static_cast<int>(v);
}

// Every partition of a GPU carries the whole GPU's plan: the split is done once.
static void attach_gpu_plans(std::vector<Device>& devices) {
  std::map<int, std::vector<double>> shares;
  for (const Device& d : devices)
    if (d.kind == "cuda-partition") shares[d.ordinal].push_back(d.sm_fraction);
  std::map<int, int> seen;
  for (Device& d : devices)
    if (d.kind == "cuda-partition") {
      d.gpu_shares = shares[d.ordinal];
      d.share_index = seen[d.ordinal]++;
    }
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
  attach_gpu_plans(out.devices);
  // Row by row: GCC 12 misreads the nested assign(n, vector(n)) at -O3 here
  // (a false -Wfree-nonheap-object).
  out.peer_access.resize(picked.size());
  for (size_t a = 0; a < picked.size(); ++a) {
    std::vector<int>& row = out.peer_access[a];
    row.clear();
    for (size_t b = 0; b < picked.size(); ++b)
      row.push_back(picked[a] == picked[b] ? 1 : available.peer_access[picked[a]][picked[b]]);
  }
  return out;
}

void bind_thread_to_device(int ordinal) { cuda_backend::set_current_device(ordinal); }

std::string fallback_line(const DeviceList& list) {
  return "nbsgd: using " + std::to_string(list.devices.size()) + " host worker(s): " + list.fallback_reason;
}

}  // namespace nbsgd
