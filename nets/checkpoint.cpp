#include "nets/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "runtime/device/check.h"

namespace nbsgd {

// The data section is copied as raw bytes both ways.
static_assert(std::endian::native == std::endian::little, "safetensors data are little-endian");

namespace {

constexpr const char* kMetadataKey = "__metadata__";
// The reference implementation refuses larger headers; so do we, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  s += ']';
  return s;
}

// Element count, or -1 when a dimension is negative or the product overflows.
int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(sizeof(float)) / d) return -1;
    n *= d;
  }
  return n;
}

std::string errno_str() { return std::strerror(errno); }

// Removes the temporary file unless release()d after the rename.
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string path) : path_(std::move(path)) {}
  ~TempFileGuard() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void set_fd(int fd) { fd_ = fd; }
  int close_fd() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
  int fd_ = -1;
};

void write_all(int fd, const void* data, size_t bytes, const std::string& tmp) {
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd, p, std::min<size_t>(bytes, size_t{1} << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw InputError("cannot write checkpoint " + tmp + ": " + errno_str());
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Header first: every name and shape is checked before the file is touched.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorView& t : tensors) {
    NBSGD_CHECK(!t.name.empty() && t.name != kMetadataKey, "checkpoint: bad tensor name '" + t.name + "'");
    NBSGD_CHECK(names.insert(t.name).second, "checkpoint: tensor '" + t.name + "' given twice");
    const int64_t count = numel(t.shape);
    NBSGD_CHECK(count >= 0, "checkpoint: tensor '" + t.name + "' has a bad shape " + shape_str(t.shape));
    NBSGD_CHECK(count == 0 || t.data != nullptr, "checkpoint: tensor '" + t.name + "' has no data");
    const uint64_t bytes = static_cast<uint64_t>(count) * sizeof(float);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  TempFileGuard guard(tmp);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    guard.release();  // nothing was created
    throw InputError("cannot write checkpoint " + path + ": cannot create " + tmp + ": " + errno_str());
  }
  guard.set_fd(fd);
  write_all(fd, &header_len, sizeof header_len, tmp);
  write_all(fd, text.data(), text.size(), tmp);
  for (const TensorView& t : tensors)
    write_all(fd, t.data, static_cast<size_t>(numel(t.shape)) * sizeof(float), tmp);
  if (::fsync(fd) != 0) throw InputError("cannot write checkpoint " + tmp + ": fsync: " + errno_str());
  if (guard.close_fd() != 0) throw InputError("cannot write checkpoint " + tmp + ": close: " + errno_str());
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw InputError("cannot write checkpoint " + path + ": rename from " + tmp + ": " + errno_str());
  guard.release();
  // Make the rename itself durable; a failure here leaves a complete file, so it
  // is not an error worth failing the run for.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

LoadedTensors load_safetensors(const std::string& path) {
  const auto bad = [&](const std::string& what) -> InputError {
    return InputError("checkpoint " + path + ": " + what);
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open checkpoint " + path + ": " + errno_str());
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw bad("cannot get its size: " + ec.message());
  if (file_size < 8) throw bad("file too short (" + std::to_string(file_size) + " bytes) for a safetensors header");
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), sizeof header_len);
  if (header_len > file_size - 8)
    throw bad("header length " + std::to_string(header_len) + " runs past the end of the file (" +
              std::to_string(file_size) + " bytes)");
  if (header_len > kMaxHeaderBytes) throw bad("header length " + std::to_string(header_len) + " is implausibly large");
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  const uint64_t data_size = file_size - 8 - header_len;
  std::vector<char> data(data_size);
  in.read(data.data(), static_cast<std::streamsize>(data_size));
  if (!in) throw bad("read failed: " + errno_str());

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    throw bad("header is not valid JSON (" + msg + ")");
  }
  if (!header.is_object()) throw bad("header is not a JSON object");

  LoadedTensors out;
  struct Extent {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Extent> extents;
  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      if (!entry.is_object()) throw bad("__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) throw bad("__metadata__ value of '" + key + "' is not a string");
        out.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      throw bad(where + "entry needs dtype, shape and data_offsets");
    if (!entry["dtype"].is_string()) throw bad(where + "dtype is not a string");
    const std::string dtype = entry["dtype"].get<std::string>();
    if (dtype != "F32") throw bad(where + "dtype " + dtype + " is not supported (only F32)");
    if (!entry["shape"].is_array()) throw bad(where + "shape is not a list of sizes");
    std::vector<int64_t> shape;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) throw bad(where + "shape is not a list of sizes");
      shape.push_back(d.get<int64_t>());
    }
    const auto& offs = entry["data_offsets"];
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      throw bad(where + "data_offsets is not a pair of byte offsets");
    const uint64_t b = offs[0].get<uint64_t>(), e = offs[1].get<uint64_t>();
    if (b > e || e > data_size)
      throw bad(where + "data_offsets [" + std::to_string(b) + "," + std::to_string(e) +
                "] out of range of the data section (" + std::to_string(data_size) + " bytes)");
    const int64_t count = numel(shape);
    if (count < 0 || static_cast<uint64_t>(count) * sizeof(float) != e - b)
      throw bad(where + "data_offsets span " + std::to_string(e - b) + " bytes but shape " + shape_str(shape) +
                " needs " + (count < 0 ? std::string("too many") : std::to_string(count * 4)));
    std::vector<float> values(static_cast<size_t>(count));
    if (count > 0) std::memcpy(values.data(), data.data() + b, e - b);
    extents.push_back({b, e, name});
    out.tensors.emplace(name, std::make_pair(std::move(shape), std::move(values)));
  }
  // The tensors must tile the data section: no overlap, no gap, nothing after.
  std::sort(extents.begin(), extents.end(),
            [](const Extent& x, const Extent& y) { return std::tie(x.begin, x.end) < std::tie(y.begin, y.end); });
  uint64_t pos = 0;
  for (const Extent& x : extents) {
    if (x.begin < pos) throw bad("tensor '" + x.name + "' overlaps the tensor before it");
    if (x.begin > pos) throw bad("gap in the data section before tensor '" + x.name + "'");
    pos = x.end;
  }
  if (pos != data_size)
    throw bad(std::to_string(data_size - pos) + " bytes after the last tensor (truncated header or extra data)");
  return out;
}

void check_matches(const LoadedTensors& loaded, const std::vector<TensorView>& expected, const std::string& path) {
  const std::string prefix = "checkpoint " + path + " was made for another net: ";
  std::set<std::string> wanted;
  for (const TensorView& t : expected) {
    wanted.insert(t.name);
    auto it = loaded.tensors.find(t.name);
    if (it == loaded.tensors.end()) throw InputError(prefix + "it has no tensor '" + t.name + "'");
    if (it->second.first != t.shape)
      throw InputError(prefix + "tensor '" + t.name + "' has shape " + shape_str(it->second.first) +
                       ", the net expects " + shape_str(t.shape));
  }
  for (const auto& [name, tensor] : loaded.tensors)
    if (!wanted.count(name)) throw InputError(prefix + "it has tensor '" + name + "' that the net does not have");
}

}  // namespace nbsgd
