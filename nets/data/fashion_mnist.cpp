#include "nets/data/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "runtime/device/check.h"

namespace nbsgd::data {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension
constexpr int kSide = 28;
constexpr int kClasses = 10;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// The plain file if present, else the .gz one; the error lists both names tried.
std::string find_file(const std::string& dir, const std::string& base) {
  namespace fs = std::filesystem;
  const fs::path plain = fs::path(dir) / base;
  const fs::path gz = fs::path(dir) / (base + ".gz");
  std::error_code ec;
  if (fs::is_regular_file(plain, ec)) return plain.string();
  if (fs::is_regular_file(gz, ec)) return gz.string();
  throw InputError("Fashion-MNIST file " + gz.string() + " not found (nor " + plain.string() +
                   "): set the data directory to where the IDX files are");
}

// A whole IDX file, decompressed, with its header parsed. Reading to the end makes
// zlib check the gzip CRC and length, so a corrupt or cut file is caught here.
class IdxReader {
 public:
  explicit IdxReader(std::string path) : path_(std::move(path)) {
    file_.reset(gzopen(path_.c_str(), "rb"));
    if (!file_) throw InputError("cannot open " + path_ + ": " + std::strerror(errno));
    gzbuffer(file_.get(), 1 << 18);
  }

  const std::string& path() const { return path_; }

  uint32_t read_u32_be(const char* what) {
    std::array<unsigned char, 4> b{};
    read_exact(b.data(), b.size(), what);
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  }

  void read_exact(void* dst, size_t bytes, const char* what) {
    auto* p = static_cast<unsigned char*>(dst);
    size_t done = 0;
    while (done < bytes) {
      const size_t chunk = std::min<size_t>(bytes - done, 1u << 30);
      const int got = gzread(file_.get(), p + done, static_cast<unsigned>(chunk));
      if (got < 0) throw_zlib_error();
      if (got == 0) {
        check_zlib_state();
        throw InputError(path_ + ": file ends early while reading the " + what + " (" +
                         std::to_string(done) + " of " + std::to_string(bytes) +
                         " bytes): truncated download?");
      }
      done += static_cast<size_t>(got);
    }
  }

  // Reads `bytes` into `out` in chunks, so a corrupt header claiming a huge count
  // fails with "file ends early" instead of an attempt to allocate it all up front.
  void read_vector(std::vector<unsigned char>& out, size_t bytes, const char* what) {
    constexpr size_t kChunk = size_t{1} << 24;
    out.clear();
    out.reserve(std::min(bytes, kChunk));
    size_t done = 0;
    while (done < bytes) {
      const size_t chunk = std::min(bytes - done, kChunk);
      out.resize(done + chunk);
      const int got = gzread(file_.get(), out.data() + done, static_cast<unsigned>(chunk));
      if (got < 0) throw_zlib_error();
      done += static_cast<size_t>(got);
      if (static_cast<size_t>(got) < chunk) {
        check_zlib_state();
        throw InputError(path_ + ": file ends early while reading the " + what + " (" +
                         std::to_string(done) + " of " + std::to_string(bytes) +
                         " bytes): truncated download?");
      }
    }
  }

  // After the payload: there must be nothing left, and the gzip trailer must check.
  void expect_end() {
    unsigned char extra = 0;
    const int got = gzread(file_.get(), &extra, 1);
    if (got < 0) throw_zlib_error();
    if (got > 0) throw InputError(path_ + ": unexpected data after the last item (header dimensions wrong?)");
    check_zlib_state();
  }

 private:
  void check_zlib_state() {
    int err = Z_OK;
    gzerror(file_.get(), &err);
    if (err != Z_OK) throw_zlib_error();
  }

  [[noreturn]] void throw_zlib_error() {
    int err = Z_OK;
    const char* msg = gzerror(file_.get(), &err);
    std::string detail = (err == Z_ERRNO) ? std::strerror(errno) : (msg ? msg : "unknown zlib error");
    throw InputError(path_ + ": corrupt or truncated gzip data (" + detail + ")");
  }

  std::string path_;
  GzFile file_;
};

void check_magic(const IdxReader& r, uint32_t got, uint32_t want, const char* kind) {
  if (got != want) {
    char buf[96];
    std::snprintf(buf, sizeof buf, ": wrong IDX magic 0x%08X, expected 0x%08X (%s file)", got, want, kind);
    throw InputError(r.path() + buf);
  }
}

}  // namespace

int64_t read_idx_images(const std::string& path, std::vector<float>& out, std::shared_ptr<const BytePixels>* bytes) {
  IdxReader r(path);
  check_magic(r, r.read_u32_be("magic number"), kImagesMagic, "images");
  const uint32_t n = r.read_u32_be("image count");
  const uint32_t rows = r.read_u32_be("row count");
  const uint32_t cols = r.read_u32_be("column count");
  if (rows != kSide || cols != kSide)
    throw InputError(path + ": images are " + std::to_string(rows) + "x" + std::to_string(cols) +
                     ", expected 28x28");
  const size_t pixels = static_cast<size_t>(n) * kSide * kSide;
  std::vector<unsigned char> raw;
  r.read_vector(raw, pixels, "pixels");
  r.expect_end();
  // One table lookup per pixel; the same float for the same byte everywhere.
  std::array<float, 256> lut{};
  for (int v = 0; v < 256; ++v)
    lut[v] = (static_cast<float>(v) / 255.0f - kFashionMnistMean) / kFashionMnistStd;
  out.resize(pixels);
  for (size_t i = 0; i < pixels; ++i) out[i] = lut[raw[i]];
  if (bytes) {
    auto b = std::make_shared<BytePixels>();
    auto keep = std::make_shared<std::vector<unsigned char>>(std::move(raw));
    b->base = keep->data();
    b->keep = keep;
    b->lut.assign(lut.begin(), lut.end());
    *bytes = std::move(b);
  }
  return n;
}

int64_t read_idx_labels(const std::string& path, std::vector<int32_t>& out) {
  IdxReader r(path);
  check_magic(r, r.read_u32_be("magic number"), kLabelsMagic, "labels");
  const uint32_t n = r.read_u32_be("label count");
  std::vector<unsigned char> raw;
  r.read_vector(raw, n, "labels");
  r.expect_end();
  out.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    if (raw[i] >= kClasses)
      throw InputError(path + ": label " + std::to_string(raw[i]) + " of item " + std::to_string(i) +
                       " is out of range (0..9)");
    out[i] = raw[i];
  }
  return n;
}

namespace {

Dataset load_split(const std::string& dir, const std::string& prefix, const std::string& name,
                   int64_t limit) {
  const std::string images_path = find_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_file(dir, prefix + "-labels-idx1-ubyte");
  Dataset d;
  d.name = name;
  d.c = 1;
  d.h = kSide;
  d.w = kSide;
  d.classes = kClasses;
  const int64_t n_images = read_idx_images(images_path, d.images, &d.bytes);
  const int64_t n_labels = read_idx_labels(labels_path, d.labels);
  if (n_images != n_labels)
    throw InputError(images_path + " has " + std::to_string(n_images) + " images but " + labels_path +
                     " has " + std::to_string(n_labels) + " labels");
  d.n = n_images;
  if (limit > 0 && limit < d.n) {
    d.n = limit;
    d.images.resize(static_cast<size_t>(limit) * kSide * kSide);
    d.labels.resize(static_cast<size_t>(limit));
  }
  d.images.shrink_to_fit();
  d.labels.shrink_to_fit();
  return d;
}

}  // namespace

DataSplit load_fashion_mnist(const std::string& dir, int64_t limit_train) {
  DataSplit s;
  s.train = load_split(dir, "train", "fashion-mnist/train", limit_train);
  s.test = load_split(dir, "t10k", "fashion-mnist/test", -1);
  return s;
}

}  // namespace nbsgd::data
