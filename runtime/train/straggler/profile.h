// Straggler profiles: which devices are slow, by how much, and when.
//
// A profile is a TOML file (format: profiles/README.md). It is parsed into a
// Profile, which still speaks in sections (default, name patterns, indices),
// and then resolved for a concrete device list into one DeviceStraggler per
// device, which the engine asks "how slow is this device at step t" and "draw
// this mini-batch's delay". A profile plus its seed is one exact experiment:
// each device draws from its own streams, derived from (seed, device, purpose).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/train/straggler/distribution.h"

namespace nbsgd::straggler {

// What one section, or one schedule entry, sets. Unset values are inherited from
// the lower-precedence sections (or the section itself, for a schedule entry).
struct Settings {
  std::optional<double> slowdown;     // >= 1: duty-cycle throttle
  std::optional<RandomDelay> delay;   // per mini-batch
  std::optional<RandomDelay> stall;   // per step, the whole worker
};

// Overrides `settings` for steps in [from_step, to_step).
struct ScheduleEntry {
  int64_t from_step = 0;
  int64_t to_step = 0;
  Settings settings;
  int line = 0;
};

struct DeviceSection {
  enum Selector { Default, NamePattern, Index };
  Selector selector = Default;
  std::string pattern;  // NamePattern: an fnmatch glob over the device name
  int64_t index = -1;   // Index
  std::string key;      // "device.2", "device.\"*T4*\"": for messages
  int line = 0;         // where the section is defined; 0 when not from a file
  Settings settings;
  std::optional<double> sm_fraction;
  std::vector<ScheduleEntry> schedule;  // sorted by from_step, non-overlapping
};

struct Profile {
  std::string source;  // the file it came from, or "--slowdown"
  std::string name;
  std::string description;
  uint64_t seed = 0;
  std::vector<DeviceSection> sections;
};

// A value that depends on the step: the first segment containing the step wins
// (segments are stored highest precedence first), else `base`.
template <typename T>
struct StepFunction {
  struct Segment {
    int64_t from_step;
    int64_t to_step;
    T value;
  };
  T base{};
  std::vector<Segment> segments;

  const T& at(int64_t step) const {
    for (const auto& s : segments)
      if (step >= s.from_step && step < s.to_step) return s.value;
    return base;
  }
};

// One device's straggling, resolved from every section that applies to it.
struct DeviceStraggler {
  int device = 0;
  std::string device_name;
  StepFunction<double> slowdown_fn{1.0, {}};
  StepFunction<RandomDelay> delay_fn;
  StepFunction<RandomDelay> stall_fn;
  double sm_fraction = 1.0;

  double slowdown(int64_t step) const { return slowdown_fn.at(step); }
  const RandomDelay& delay_at(int64_t step) const { return delay_fn.at(step); }
  const RandomDelay& stall_at(int64_t step) const { return stall_fn.at(step); }
  // Seconds; 0 if the device has no delay at this step or the Bernoulli says no.
  // Pass the device's delay stream (ResolvedProfile::delay_stream), once per mini-batch.
  double draw_delay_s(Rng& rng, int64_t step) const;
  // Seconds; pass the device's stall stream (ResolvedProfile::stall_stream), once per step.
  double draw_stall_s(Rng& rng, int64_t step) const;
  // No random delay or stall at any step (constant delays with probability 1 are
  // not random).
  bool deterministic() const;
  // One line for the start-of-run log: "slowdown 4, delay none, stall p=0.01
  // exponential(mean_ms=500), 1 scheduled range".
  std::string describe() const;
};

struct ResolvedProfile {
  std::string source;
  std::string name;
  std::string description;
  uint64_t seed = 0;
  std::vector<DeviceStraggler> devices;

  bool deterministic() const;
  Rng delay_stream(int device) const { return device_stream(seed, device, RngPurpose::Delay); }
  Rng stall_stream(int device) const { return device_stream(seed, device, RngPurpose::Stall); }
};

// Where bare profile names are looked up: $NBSGD_PROFILES_DIR, else the source
// tree's profiles/, else <exe dir>/../share/nbsgd/profiles. Empty if none exists.
std::string profiles_dir();
// The names (without .toml) of the profiles in profiles_dir(), sorted.
std::vector<std::string> list_profiles();

// `path_or_name` is a path if it contains '/' or ends in ".toml"; otherwise it
// names <profiles_dir()>/<name>.toml. Throws InputError naming file:line and key.
Profile load_profile(const std::string& path_or_name);
// Loads exactly this file (no name lookup).
Profile load_profile_file(const std::string& path);
// Parses TOML text; `source` names it in messages (tests, embedded profiles).
Profile parse_profile(const std::string& toml_text, const std::string& source);

// The `--slowdown 1,1,2,4` shorthand: device i gets slowdown values[i].
Profile profile_from_slowdowns(const std::vector<double>& values);
// "1,1,2,4" (--slowdown): one slowdown (>= 1) per worker; InputError naming --slowdown.
std::vector<double> parse_slowdowns(const std::string& text, int workers);

// Applies the sections to devices 0..n_devices-1, in precedence order
// default < name pattern (later in the file wins among several) < index.
// `device_names` is empty (no pattern matches) or has n_devices entries.
// Throws InputError (with the section's file:line) for an index >= n_devices.
ResolvedProfile resolve(const Profile& profile, int n_devices,
                        const std::vector<std::string>& device_names);

}  // namespace nbsgd::straggler
