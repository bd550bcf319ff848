// One error-check header for the whole project.
//
// Every failure becomes an nbsgd::Error carrying where it happened (file:line),
// the failing call or condition, and the device it concerns (-1 for "host /
// not device specific"). The CUDA-library variants (cudart, cuBLAS, cuDNN,
// NCCL) live in runtime/device/cuda/cuda_check.h so that host-only files need no CUDA
// headers; they format their messages through the same make_error().
//
// Destructors must not throw: use NBSGD_LOG_ON_ERROR there.
#pragma once

#include <stdexcept>
#include <string>

namespace nbsgd {

class Error : public std::runtime_error {
 public:
  Error(std::string what, int device = -1) : std::runtime_error(std::move(what)), device_(device) {}
  int device() const { return device_; }

 private:
  int device_;
};

// Bad user input (a flag, a file, a field): the message names what is wrong and is
// printed as-is, as one line, by the CLI; no source location.
class InputError : public Error {
 public:
  explicit InputError(std::string what) : Error(std::move(what), -1) {}
};

// "file.cpp:42: [device 1] cudaMalloc(&p, n): out of memory"
std::string format_error(const char* file, int line, int device, const std::string& call,
                         const std::string& detail);

[[noreturn]] void throw_error(const char* file, int line, int device, const std::string& call,
                              const std::string& detail);

// Logs (to stderr, one line) instead of throwing: for destructors.
void log_error(const char* file, int line, int device, const std::string& call,
               const std::string& detail);

}  // namespace nbsgd

// Condition check for host-side invariants and user input.
#define NBSGD_CHECK(cond, msg)                                               \
  do {                                                                       \
    if (!(cond)) ::nbsgd::throw_error(__FILE__, __LINE__, -1, #cond, (msg)); \
  } while (0)

#define NBSGD_CHECK_DEV(dev, cond, msg)                                         \
  do {                                                                          \
    if (!(cond)) ::nbsgd::throw_error(__FILE__, __LINE__, (dev), #cond, (msg)); \
  } while (0)

// Unconditional failure with a message (no call to name).
#define NBSGD_FAIL(msg) ::nbsgd::throw_error(__FILE__, __LINE__, -1, "", (msg))
