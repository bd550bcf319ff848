// TOML straggler profiles (runtime/train/straggler/profile_parse.cpp), then resolved
// for a few device lists and sampled, as a run would. Only InputError may come out;
// any other exception, a crash or a sanitizer report (UBSan included: a delay that
// does not fit the clock) is a bug.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/device/check.h"
#include "runtime/train/straggler/profile.h"

namespace st = nbsgd::straggler;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  st::Profile p;
  try {
    p = st::parse_profile(text, "fuzz.toml");
  } catch (const nbsgd::InputError&) {
    return 0;
  }
  const std::vector<std::string> names = {"Tesla T4", "NVIDIA A100-SXM4-40GB", "NVIDIA L4", "NVIDIA H100"};
  for (int n : {1, 4}) {
    try {
      const std::vector<std::string> devs(names.begin(), names.begin() + n);
      const st::ResolvedProfile r = st::resolve(p, n, devs);
      for (const st::DeviceStraggler& d : r.devices) {
        (void)d.describe();
        st::Rng delay = r.delay_stream(d.device), stall = r.stall_stream(d.device);
        for (int64_t step : {int64_t{0}, int64_t{1}, int64_t{1000}}) {
          const double s = d.slowdown(step);
          const double a = d.draw_delay_s(delay, step), b = d.draw_stall_s(stall, step);
          if (!(s >= 1) || !std::isfinite(s) || !(a >= 0) || !(b >= 0) || !std::isfinite(a) || !std::isfinite(b))
            std::abort();
        }
      }
    } catch (const nbsgd::InputError&) {
    }
  }
  return 0;
}
