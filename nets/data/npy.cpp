// The .npy format: the magic "\x93NUMPY", a version byte pair, the header length
// (2 bytes little-endian in version 1, 4 in versions 2 and 3), then a Python dict
// literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
// spaces to an aligned length, then the raw elements in C order.
#include "nets/data/npy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>

#include "runtime/device/check.h"

namespace nbsgd::data {

const char* to_string(NpyType t) {
  switch (t) {
    case NpyType::U8: return "uint8";
    case NpyType::I8: return "int8";
    case NpyType::U16: return "uint16";
    case NpyType::I16: return "int16";
    case NpyType::U32: return "uint32";
    case NpyType::I32: return "int32";
    case NpyType::U64: return "uint64";
    case NpyType::I64: return "int64";
    case NpyType::F32: return "float32";
    case NpyType::F64: return "float64";
  }
  return "?";
}

size_t itemsize(NpyType t) {
  switch (t) {
    case NpyType::U8:
    case NpyType::I8: return 1;
    case NpyType::U16:
    case NpyType::I16: return 2;
    case NpyType::U32:
    case NpyType::I32:
    case NpyType::F32: return 4;
    default: return 8;
  }
}

int64_t NpyHeader::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

// A cursor over the header dict; every error names the file.
class DictParser {
 public:
  DictParser(const char* p, size_t n, const std::string& file) : p_(p), end_(p + n), file_(file) {}

  [[noreturn]] void fail(const std::string& msg) const { throw InputError(file_ + ": malformed .npy header: " + msg); }

  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool eat(char c) {
    ws();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  bool peek(char c) {
    ws();
    return p_ < end_ && *p_ == c;
  }
  std::string string() {
    ws();
    if (p_ >= end_ || (*p_ != '\'' && *p_ != '"')) fail("expected a quoted string");
    const char q = *p_++;
    std::string s;
    while (p_ < end_ && *p_ != q) {
      if (*p_ == '\\') fail("escapes in strings are not supported");
      s += *p_++;
    }
    if (p_ >= end_) fail("unterminated string");
    ++p_;
    return s;
  }
  bool word(const char* w) {
    ws();
    const size_t n = std::strlen(w);
    if (size_t(end_ - p_) >= n && std::memcmp(p_, w, n) == 0) {
      p_ += n;
      return true;
    }
    return false;
  }
  int64_t integer() {
    ws();
    if (p_ >= end_ || *p_ < '0' || *p_ > '9') fail("expected a non-negative integer in 'shape'");
    int64_t v = 0;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
      if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) fail("a dimension of 'shape' is too large");
      v = v * 10 + (*p_++ - '0');
    }
    if (p_ < end_ && *p_ == 'L') ++p_;  // Python 2 longs
    return v;
  }
  // Skips a value of a key this reader does not use.
  void skip_value() {
    ws();
    if (peek('\'') || peek('"')) {
      string();
      return;
    }
    int depth = 0;
    while (p_ < end_) {
      const char c = *p_;
      if (c == '(' || c == '[' || c == '{') ++depth;
      if (c == ')' || c == ']' || c == '}') {
        if (depth == 0) return;
        --depth;
      }
      if (c == ',' && depth == 0) return;
      ++p_;
    }
  }

 private:
  const char* p_;
  const char* end_;
  const std::string& file_;
};

NpyType parse_descr(const std::string& d, const std::string& file) {
  auto bad = [&](const std::string& why) -> NpyType {
    throw InputError(file + ": unsupported dtype '" + d + "'" + why +
                     " (supported: uint8, float32 and float64 images; int8..int64, uint8..uint64 labels, little-endian)");
  };
  if (d.size() < 3) return bad("");
  const char order = d[0];
  const std::string code = d.substr(1);
  if (order == '>') return bad(" (big-endian)");
  if (order != '<' && order != '|' && order != '=') return bad("");
  static const std::pair<const char*, NpyType> kCodes[] = {
      {"u1", NpyType::U8},  {"i1", NpyType::I8},  {"u2", NpyType::U16}, {"i2", NpyType::I16}, {"u4", NpyType::U32},
      {"i4", NpyType::I32}, {"u8", NpyType::U64}, {"i8", NpyType::I64}, {"f4", NpyType::F32}, {"f8", NpyType::F64}};
  for (const auto& [c, t] : kCodes)
    if (code == c) {
      if (order == '|' && itemsize(t) != 1) return bad(" (no byte order)");
      return t;
    }
  return bad("");
}

}  // namespace

NpyHeader parse_npy_header(const void* bytes, size_t size, const std::string& file) {
  const auto* b = static_cast<const unsigned char*>(bytes);
  static const unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 6 || std::memcmp(b, kMagic, 6) != 0)
    throw InputError(file + ": not a .npy file (wrong magic: expected \\x93NUMPY)");
  if (size < 10) throw InputError(file + ": truncated .npy header");
  const int major = b[6];
  if (major < 1 || major > 3)
    throw InputError(file + ": unsupported .npy format version " + std::to_string(major) + "." + std::to_string(b[7]));
  size_t prefix = 10, len = size_t(b[8]) | size_t(b[9]) << 8;
  if (major >= 2) {
    if (size < 12) throw InputError(file + ": truncated .npy header");
    prefix = 12;
    len = size_t(b[8]) | size_t(b[9]) << 8 | size_t(b[10]) << 16 | size_t(b[11]) << 24;
  }
  if (len > size - prefix)
    throw InputError(file + ": truncated .npy header (it says " + std::to_string(len) + " bytes, the file has " +
                     std::to_string(size - prefix) + ")");

  DictParser p(reinterpret_cast<const char*>(b + prefix), len, file);
  std::optional<NpyType> type;
  std::optional<bool> fortran;
  std::optional<std::vector<int64_t>> shape;
  p.expect('{');
  while (!p.eat('}')) {
    const std::string key = p.string();
    p.expect(':');
    if (key == "descr") {
      if (!p.peek('\'') && !p.peek('"'))
        throw InputError(file + ": unsupported dtype (a structured dtype; save a plain array)");
      type = parse_descr(p.string(), file);
    } else if (key == "fortran_order") {
      if (p.word("True")) fortran = true;
      else if (p.word("False")) fortran = false;
      else p.fail("'fortran_order' must be True or False");
    } else if (key == "shape") {
      std::vector<int64_t> s;
      p.expect('(');
      while (!p.eat(')')) {
        s.push_back(p.integer());
        if (!p.eat(',') && !p.peek(')')) p.fail("expected ',' or ')' in 'shape'");
      }
      shape = std::move(s);
    } else {
      p.skip_value();
    }
    if (!p.eat(',') && !p.peek('}')) p.fail("expected ',' or '}'");
  }
  if (!type) p.fail("no 'descr'");
  if (!fortran) p.fail("no 'fortran_order'");
  if (!shape) p.fail("no 'shape'");
  if (*fortran)
    throw InputError(file + ": Fortran-order array (save a C-order one: np.save(f, np.ascontiguousarray(a)))");

  NpyHeader h;
  h.type = *type;
  h.shape = std::move(*shape);
  h.data_offset = prefix + len;
  // The data size must fit in memory arithmetic: numel * itemsize <= 2^62.
  unsigned __int128 n = 1;
  for (int64_t d : h.shape) {
    n *= uint64_t(d);  // not unsigned(d): that keeps the low 32 bits, and 2^32 x 2^32 passed as 0
    if (n > (unsigned __int128)(int64_t(1) << 62) / itemsize(h.type)) throw InputError(file + ": shape too large");
  }
  return h;
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError("cannot open " + path + ": " + std::strerror(errno));
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file");
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) throw InputError("cannot map " + path + ": " + std::strerror(err));
    data_ = static_cast<const unsigned char*>(p);
  } else {
    ::close(fd);
  }
}

MappedFile::MappedFile(MappedFile&& o) noexcept : path_(std::move(o.path_)), data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}
MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
    path_ = std::move(o.path_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}
MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
}

NpyArray open_npy(const std::string& path) {
  NpyArray a;
  a.file = std::make_shared<const MappedFile>(path);
  a.header = parse_npy_header(a.file->data(), a.file->size(), path);
  const size_t have = a.file->size() - a.header.data_offset, need = a.header.data_bytes();
  if (have < need)
    throw InputError(path + ": truncated: the shape needs " + std::to_string(need) + " bytes of data, the file has " +
                     std::to_string(have));
  if (have > need)
    throw InputError(path + ": " + std::to_string(have - need) + " bytes after the data the shape describes");
  return a;
}

}  // namespace nbsgd::data
