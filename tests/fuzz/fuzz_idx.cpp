// IDX reader (nets/data/fashion_mnist.cpp). The first byte picks images or labels;
// the rest is the file, given to the reader through a memfd so the real zlib path
// (plain and gzipped) runs. Only InputError may come out; any other exception, a
// crash or a sanitizer report is a bug.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "nets/data/fashion_mnist.h"
#include "runtime/device/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int fd = memfd_create("idx", MFD_CLOEXEC);
  if (fd < 0) std::abort();
  const uint8_t* p = data + 1;
  size_t left = size - 1;
  while (left > 0) {
    const ssize_t n = write(fd, p, left);
    if (n <= 0) std::abort();
    p += n;
    left -= static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    if (data[0] & 1) {
      std::vector<int32_t> labels;
      const int64_t n = nbsgd::data::read_idx_labels(path, labels);
      if (static_cast<int64_t>(labels.size()) != n) std::abort();
      for (int32_t l : labels)
        if (l < 0 || l > 9) std::abort();
    } else {
      std::vector<float> images;
      const int64_t n = nbsgd::data::read_idx_images(path, images);
      if (static_cast<int64_t>(images.size()) != n * 28 * 28) std::abort();
    }
  } catch (const nbsgd::InputError&) {
  }
  close(fd);
  return 0;
}
