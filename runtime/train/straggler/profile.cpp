// Profile lookup, the --slowdown shorthand, and resolution of sections into
// per-device stragglers. Parsing lives in profile_parse.cpp.
#include "runtime/train/straggler/profile.h"

#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include <fmt/format.h>

#include "runtime/device/check.h"
#include "runtime/train/limits.h"

// The build normally defines NBSGD_SOURCE_DIR for the library; without it, derive
// the source root from this file's path (runtime/train/straggler/profile.cpp).
#ifndef NBSGD_SOURCE_DIR
#define NBSGD_STRAGGLER_THIS_FILE __FILE__
#endif

namespace nbsgd::straggler {

namespace fs = std::filesystem;

namespace {

std::string fmt_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string source_profiles_dir() {
#ifdef NBSGD_SOURCE_DIR
  return std::string(NBSGD_SOURCE_DIR) + "/profiles";
#else
  fs::path p(NBSGD_STRAGGLER_THIS_FILE);
  if (!p.is_absolute()) return {};
  return (p.parent_path().parent_path().parent_path().parent_path() / "profiles").string();  // runtime/train/straggler/
#endif
}

std::string exe_profiles_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  return (exe.parent_path().parent_path() / "share" / "nbsgd" / "profiles").string();
}

bool is_dir(const std::string& p) {
  std::error_code ec;
  return !p.empty() && fs::is_directory(p, ec);
}

std::string describe_delay(const RandomDelay& d) {
  if (!d.active()) return "none";
  return "p=" + fmt_num(d.probability) + " " + d.dist.describe();
}

}  // namespace

// Heavy tails (Pareto, lognormal) have no largest value: a draw is capped at the
// virtual clock's longest duration (engine::kMaxDurationS), which no sensible
// profile reaches, so the clock's arithmetic stays in range.
double DeviceStraggler::draw_delay_s(Rng& rng, int64_t step) const {
  return std::min(delay_at(step).draw_ms(rng) * 1e-3, engine::kMaxDurationS);
}

double DeviceStraggler::draw_stall_s(Rng& rng, int64_t step) const {
  return std::min(stall_at(step).draw_ms(rng) * 1e-3, engine::kMaxDurationS);
}

bool DeviceStraggler::deterministic() const {
  auto all_det = [](const StepFunction<RandomDelay>& f) {
    if (!f.base.deterministic()) return false;
    return std::all_of(f.segments.begin(), f.segments.end(),
                       [](const auto& s) { return s.value.deterministic(); });
  };
  return all_det(delay_fn) && all_det(stall_fn);
}

std::string DeviceStraggler::describe() const {
  std::string s = "slowdown " + fmt_num(slowdown_fn.base) + ", delay " + describe_delay(delay_fn.base) +
                  ", stall " + describe_delay(stall_fn.base);
  if (sm_fraction < 1) s += ", sm_fraction " + fmt_num(sm_fraction);
  const size_t n = slowdown_fn.segments.size() + delay_fn.segments.size() + stall_fn.segments.size();
  if (n > 0) s += ", " + std::to_string(n) + " scheduled override" + (n == 1 ? "" : "s");
  return s;
}

bool ResolvedProfile::deterministic() const {
  return std::all_of(devices.begin(), devices.end(), [](const DeviceStraggler& d) { return d.deterministic(); });
}

std::string profiles_dir() {
  if (const char* env = std::getenv("NBSGD_PROFILES_DIR"); env && *env) return env;
  for (const std::string& d : {source_profiles_dir(), exe_profiles_dir()})
    if (is_dir(d)) return d;
  return {};
}

std::vector<std::string> list_profiles() {
  std::vector<std::string> names;
  const std::string dir = profiles_dir();
  if (!is_dir(dir)) return names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".toml") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

Profile load_profile(const std::string& path_or_name) {
  if (path_or_name.empty()) throw InputError("profile: empty name");
  const bool is_path = path_or_name.find('/') != std::string::npos ||
                       (path_or_name.size() > 5 && path_or_name.ends_with(".toml"));
  if (is_path) return load_profile_file(path_or_name);

  const std::string dir = profiles_dir();
  if (dir.empty())
    throw InputError("profile '" + path_or_name +
                     "': no profiles directory found (set NBSGD_PROFILES_DIR or give a path to a .toml file)");
  const std::string path = dir + "/" + path_or_name + ".toml";
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    std::string avail;
    for (const auto& n : list_profiles()) avail += (avail.empty() ? "" : ", ") + n;
    throw InputError("profile '" + path_or_name + "': no " + path_or_name + ".toml in " + dir +
                     " (available: " + (avail.empty() ? "none" : avail) + ")");
  }
  return load_profile_file(path);
}

Profile profile_from_slowdowns(const std::vector<double>& values) {
  Profile p;
  p.source = "--slowdown";
  p.name = "slowdown";
  for (size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (!std::isfinite(v) || v < 1 || v > engine::kMaxSlowdown)
      throw InputError(fmt::format("--slowdown: value {} ({}) must be a number in [1, {}] (1 = full speed)", i + 1,
                                   fmt_num(v), fmt_num(engine::kMaxSlowdown)));
    DeviceSection s;
    s.selector = DeviceSection::Index;
    s.index = static_cast<int64_t>(i);
    s.key = "device " + std::to_string(i);
    s.settings.slowdown = v;
    p.sections.push_back(std::move(s));
  }
  return p;
}

namespace {

// Builds one key's step function for a device from its applicable sections,
// highest precedence first: each section contributes its schedule entries that set
// the key (they apply only in their ranges), and the first section that sets the
// key at its top level supplies the base and hides everything below it.
template <typename T>
StepFunction<T> layer(const std::vector<const DeviceSection*>& sections, std::optional<T> Settings::*field,
                      T fallback) {
  StepFunction<T> fn;
  fn.base = fallback;
  for (const DeviceSection* s : sections) {
    for (const auto& e : s->schedule)
      if (e.settings.*field) fn.segments.push_back({e.from_step, e.to_step, *(e.settings.*field)});
    if (s->settings.*field) {
      fn.base = *(s->settings.*field);
      break;
    }
  }
  return fn;
}

}  // namespace

ResolvedProfile resolve(const Profile& profile, int n_devices, const std::vector<std::string>& device_names) {
  NBSGD_CHECK(n_devices >= 1, "resolve: need at least one device");
  NBSGD_CHECK(device_names.empty() || static_cast<int>(device_names.size()) == n_devices,
              "resolve: device_names must be empty or have one name per device");
  for (const auto& s : profile.sections) {
    if (s.selector == DeviceSection::Index && s.index >= n_devices) {
      const std::string loc = profile.source + (s.line > 0 ? ":" + std::to_string(s.line) : "");
      throw InputError(loc + ": " + s.key + ": device index " + std::to_string(s.index) +
                       " is beyond the device count (" + std::to_string(n_devices) + " devices: 0.." +
                       std::to_string(n_devices - 1) + ")");
    }
  }

  ResolvedProfile r;
  r.source = profile.source;
  r.name = profile.name;
  r.description = profile.description;
  r.seed = profile.seed;
  for (int d = 0; d < n_devices; ++d) {
    const std::string name = device_names.empty() ? std::string() : device_names[d];
    // Precedence, highest first: index sections (later line first), name patterns
    // (later line first), default sections (later line first). profile.sections is
    // in file order, so walk it backwards within each class.
    std::vector<const DeviceSection*> applicable;
    for (auto sel : {DeviceSection::Index, DeviceSection::NamePattern, DeviceSection::Default}) {
      for (auto it = profile.sections.rbegin(); it != profile.sections.rend(); ++it) {
        if (it->selector != sel) continue;
        const bool match = sel == DeviceSection::Default ||
                           (sel == DeviceSection::Index && it->index == d) ||
                           (sel == DeviceSection::NamePattern && !device_names.empty() &&
                            fnmatch(it->pattern.c_str(), name.c_str(), 0) == 0);
        if (match) applicable.push_back(&*it);
      }
    }
    DeviceStraggler ds;
    ds.device = d;
    ds.device_name = name;
    ds.slowdown_fn = layer<double>(applicable, &Settings::slowdown, 1.0);
    ds.delay_fn = layer<RandomDelay>(applicable, &Settings::delay, RandomDelay{});
    ds.stall_fn = layer<RandomDelay>(applicable, &Settings::stall, RandomDelay{});
    for (const DeviceSection* s : applicable) {
      if (s->sm_fraction) {
        ds.sm_fraction = *s->sm_fraction;
        break;
      }
    }
    r.devices.push_back(std::move(ds));
  }
  return r;
}

std::vector<double> parse_slowdowns(const std::string& text, int n) {
  std::vector<double> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double x = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !std::isfinite(x) || x < 1.0 || x > engine::kMaxSlowdown)
      throw InputError(fmt::format("--slowdown {}: '{}' must be a number in [1, {:g}]", text, item, engine::kMaxSlowdown));
    v.push_back(x);
  }
  if (static_cast<int>(v.size()) != n)
    throw InputError(fmt::format("--slowdown {}: {} value(s) for {} worker(s)", text, v.size(), n));
  return v;
}

}  // namespace nbsgd::straggler
