// Kokkos-style backend parametrisation: a test body is written once as a TEST_P on
// BackendTest (or a subclass) in tests/bodies/, and instantiated for the host
// backend in tests/test_*.cpp and for CUDA in tests/gpu_*.cpp (ctest label `gpu`).
// CUDA cases skip, printing the reason, when no GPU can be used; with
// NBSGD_REQUIRE_GPU=1 they fail instead (NBSGD_SKIP_WITHOUT_GPU), so that a broken
// GPU set-up cannot pass for a run of the GPU tests.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/device.h"
#include "runtime/device/stream.h"

namespace nbsgd {
// Readable parameter names in ctest listings.
inline void PrintTo(Backend b, std::ostream* os) { *os << to_string(b); }
}  // namespace nbsgd

// In a test's SetUp or body: skips with the reason, or fails with it under
// NBSGD_REQUIRE_GPU=1.
#define NBSGD_SKIP_WITHOUT_GPU(reason)                                                           \
  do {                                                                                           \
    if (::nbsgd::gpu_required()) {                                                               \
      GTEST_FAIL() << "NBSGD_REQUIRE_GPU is set, but no GPU can be used: " << (reason);          \
    } else {                                                                                     \
      GTEST_SKIP() << (reason);                                                                  \
    }                                                                                            \
  } while (0)

namespace nbsgd::test {

inline std::string backend_case_name(const testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::Cuda ? "Cuda" : "Host";
}

class BackendTest : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::Cuda) {
      DeviceList l;
      // Discovery throws for a visible but unusable GPU, and under NBSGD_REQUIRE_GPU=1
      // when none can be used: both are failures, never skips.
      try {
        l = discover_devices();
      } catch (const Error& e) {
        GTEST_FAIL() << e.what();
      }
      if (l.backend != Backend::Cuda) NBSGD_SKIP_WITHOUT_GPU("no GPU: " + l.fallback_reason);
      cuda_devices_ = static_cast<int>(l.devices.size());
    }
  }
  Backend backend() const { return GetParam(); }
  Stream stream(const std::string& name = "test", int device = 0) {
    StreamOptions o;
    o.name = name;
    return backend() == Backend::Cuda ? Stream::cuda(device, o) : Stream::host(o);
  }
  Buffer device_buffer(size_t bytes, int device = 0) { return Buffer(backend(), device, bytes); }

  template <class T>
  Buffer upload(Stream& s, const std::vector<T>& v, int device = 0) {
    Buffer b = device_buffer(v.size() * sizeof(T), device);
    copy_async(s, b.data(), v.data(), v.size() * sizeof(T));
    s.synchronize();
    return b;
  }
  template <class T>
  std::vector<T> download(Stream& s, const Buffer& b, size_t n) {
    std::vector<T> v(n);
    copy_async(s, v.data(), b.data(), n * sizeof(T));
    s.synchronize();
    return v;
  }
  int cuda_devices_ = 0;
};

}  // namespace nbsgd::test

// Instantiates a BackendTest-derived suite for one backend.
#define NBSGD_BACKEND_SUITE(Suite, BackendValue) \
  INSTANTIATE_TEST_SUITE_P(, Suite, ::testing::Values(BackendValue), ::nbsgd::test::backend_case_name)
