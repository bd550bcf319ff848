// .npy reader (nets/data/npy.cpp). The first byte picks the entry point: even, the
// header parser on the bytes in memory (the data need not follow); odd, open_npy on
// the rest given as a file through a memfd, so the mapping and the data-size checks
// run too. Only InputError may come out; any other exception, a crash, a sanitizer
// report or a header that contradicts the bytes it came from is a bug.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "nets/data/npy.h"
#include "runtime/device/check.h"

namespace {

// What a parsed header promises, checked against the input it came from.
void check_header(const nbsgd::data::NpyHeader& h, size_t size) {
  if (h.data_offset > size) std::abort();
  int64_t n = 1;
  for (int64_t d : h.shape) {
    if (d < 0) std::abort();
    n *= d;  // the parser bounds the product (UBSan reports an overflow here)
  }
  if (h.numel() != n || h.data_bytes() != size_t(n) * nbsgd::data::itemsize(h.type)) std::abort();
  if (h.data_bytes() > (size_t(1) << 62)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t* p = data + 1;
  const size_t len = size - 1;
  if ((data[0] & 1) == 0) {
    try {
      check_header(nbsgd::data::parse_npy_header(p, len, "fuzz.npy"), len);
    } catch (const nbsgd::InputError&) {
    }
    return 0;
  }
  const int fd = memfd_create("npy", MFD_CLOEXEC);
  if (fd < 0) std::abort();
  for (size_t left = len; left > 0;) {
    const ssize_t n = write(fd, p + (len - left), left);
    if (n <= 0) std::abort();
    left -= static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    const nbsgd::data::NpyArray a = nbsgd::data::open_npy(path);
    check_header(a.header, len);
    if (a.header.data_offset + a.header.data_bytes() != len) std::abort();
    // Touch the first and last byte of the data through the mapping.
    if (a.header.data_bytes() > 0) {
      volatile unsigned char sink = a.data()[0];
      sink = a.data()[a.header.data_bytes() - 1];
      (void)sink;
    }
  } catch (const nbsgd::InputError&) {
  }
  close(fd);
  return 0;
}
