#include "runtime/device/check.h"

#include <cstdio>
#include <cstring>

namespace nbsgd {

static const char* basename_of(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

std::string format_error(const char* file, int line, int device, const std::string& call,
                         const std::string& detail) {
  std::string s = std::string(basename_of(file)) + ":" + std::to_string(line) + ": ";
  if (device >= 0) s += "[device " + std::to_string(device) + "] ";
  if (!call.empty()) s += call + ": ";
  s += detail;
  return s;
}

void throw_error(const char* file, int line, int device, const std::string& call,
                 const std::string& detail) {
  throw Error(format_error(file, line, device, call, detail), device);
}

void log_error(const char* file, int line, int device, const std::string& call,
               const std::string& detail) {
  std::fprintf(stderr, "nbsgd: error (ignored in destructor): %s\n",
               format_error(file, line, device, call, detail).c_str());
}

}  // namespace nbsgd
