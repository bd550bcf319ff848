// NumPy .npy files (format versions 1.0, 2.0 and 3.0, as numpy.save writes them),
// memory-mapped read-only. The header parser works on bytes in memory and does no
// I/O, so it is also the fuzz target for this reader (see tests/fuzz).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nbsgd::data {

enum class NpyType { U8, I8, U16, I16, U32, I32, U64, I64, F32, F64 };
const char* to_string(NpyType t);
size_t itemsize(NpyType t);

struct NpyHeader {
  NpyType type = NpyType::U8;
  std::vector<int64_t> shape;  // () for a scalar
  size_t data_offset = 0;      // bytes from the start of the file to the first element
  int64_t numel() const;       // product of shape (1 for a scalar)
  size_t data_bytes() const { return size_t(numel()) * itemsize(type); }
};

// Parses the header at the start of `bytes` (at least the whole header must be
// there; the data need not be). `file` names the source in errors. Throws
// InputError "file: problem" for a wrong magic, an unknown version, a malformed
// header dict, Fortran order, an unsupported dtype (only little-endian integers and
// IEEE floats: big-endian, bool, complex, strings and objects are rejected) or a
// shape whose size overflows.
NpyHeader parse_npy_header(const void* bytes, size_t size, const std::string& file);

// A read-only mapping of a whole file. Move-only; unmaps on destruction.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws InputError naming the file
  MappedFile(MappedFile&&) noexcept;
  MappedFile& operator=(MappedFile&&) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

// An .npy file mapped in place: the header, and a pointer to its data. The data
// must be exactly as long as the shape says ("truncated" otherwise).
struct NpyArray {
  std::shared_ptr<const MappedFile> file;
  NpyHeader header;
  const unsigned char* data() const { return file->data() + header.data_offset; }
};
NpyArray open_npy(const std::string& path);

}  // namespace nbsgd::data
