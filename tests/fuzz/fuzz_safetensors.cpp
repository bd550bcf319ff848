// safetensors reader (nets/checkpoint.cpp) and the validated metadata reads the
// trainer's resume uses. Only InputError may come out; any other exception (a raw
// JSON error, an internal check), a crash or a sanitizer report is a bug.
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>

#include "nets/checkpoint.h"
#include "runtime/device/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  nbsgd::LoadedTensors t;
  try {
    t = nbsgd::parse_safetensors(bytes, "fuzz.safetensors");
  } catch (const nbsgd::InputError&) {
    return 0;
  }
  // What was accepted must be self-consistent.
  for (const auto& [name, tensor] : t.tensors) {
    int64_t n = 1;
    for (int64_t d : tensor.first) {
      if (d < 0) std::abort();
      n *= d;
    }
    if (static_cast<int64_t>(tensor.second.size()) != n) std::abort();
  }
  for (const auto& [key, value] : t.metadata) {
    try {
      (void)nbsgd::meta_int(t, key, 0, std::numeric_limits<int64_t>::max(), "fuzz.safetensors");
    } catch (const nbsgd::InputError&) {
    }
    try {
      (void)nbsgd::meta_u64(t, key, 0, std::numeric_limits<uint64_t>::max(), "fuzz.safetensors");
    } catch (const nbsgd::InputError&) {
    }
    try {
      (void)nbsgd::meta_double(t, key, -1e300, 1e300, "fuzz.safetensors");
    } catch (const nbsgd::InputError&) {
    }
  }
  return 0;
}
