#include "nets/checkpoint.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <tuple>
#include <type_traits>

#include <nlohmann/json.hpp>
#include <zlib.h>

#include "runtime/device/check.h"
#include "runtime/device/file_io.h"

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

uint32_t crc32_of(std::string_view bytes) {
  const uLong crc = ::crc32_z(0L, Z_NULL, 0);
  if (bytes.empty()) return static_cast<uint32_t>(crc);
  return static_cast<uint32_t>(::crc32_z(crc, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

uint32_t crc32_of(const std::vector<TensorView>& tensors) {
  uLong crc = ::crc32_z(0L, Z_NULL, 0);
  for (const TensorView& t : tensors) {
    const size_t bytes = static_cast<size_t>(numel(t.shape)) * sizeof(float);
    // crc32_z(crc, NULL, 0) returns the *initial* value, not crc: skip empty tensors,
    // whose data pointer may be null.
    if (bytes > 0) crc = ::crc32_z(crc, reinterpret_cast<const Bytef*>(t.data), bytes);
  }
  return static_cast<uint32_t>(crc);
}

std::string hex32(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Header first: every name and shape is checked before the file is touched.
  NBSGD_CHECK(!metadata.count(kDataChecksumKey),
              std::string("checkpoint: the metadata key ") + kDataChecksumKey + " is reserved");
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorView& t : tensors) {
    NBSGD_CHECK(!t.name.empty() && t.name != kMetadataKey, "checkpoint: bad tensor name '" + t.name + "'");
    NBSGD_CHECK(names.insert(t.name).second, "checkpoint: tensor '" + t.name + "' given twice");
    const int64_t count = numel(t.shape);
    NBSGD_CHECK(count >= 0, "checkpoint: tensor '" + t.name + "' has a bad shape " + shape_str(t.shape));
    NBSGD_CHECK(count == 0 || t.data != nullptr, "checkpoint: tensor '" + t.name + "' has no data");
    const uint64_t bytes = static_cast<uint64_t>(count) * sizeof(float);
    offset += bytes;
  }
  // The checksum goes into the header, so the header is built after the names are checked.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::map<std::string, std::string> meta = metadata;
  meta[kDataChecksumKey] = hex32(crc32_of(tensors));
  header[kMetadataKey] = meta;
  offset = 0;
  for (const TensorView& t : tensors) {
    const uint64_t bytes = static_cast<uint64_t>(numel(t.shape)) * sizeof(float);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  std::vector<ByteSpan> chunks{{&header_len, sizeof header_len}, {text.data(), text.size()}};
  for (const TensorView& t : tensors) chunks.push_back({t.data, static_cast<size_t>(numel(t.shape)) * sizeof(float)});
  write_file_atomically(path, chunks, "checkpoint");
}

LoadedTensors load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open checkpoint " + path + ": " + errno_str());
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw InputError("checkpoint " + path + ": cannot get its size: " + ec.message());
  std::string bytes;
  try {
    bytes.resize(file_size);
  } catch (const std::exception&) {
    throw InputError("checkpoint " + path + ": cannot hold its " + std::to_string(file_size) + " bytes in memory");
  }
  in.read(bytes.data(), static_cast<std::streamsize>(file_size));
  if (!in || static_cast<uint64_t>(in.gcount()) != file_size)
    throw InputError("checkpoint " + path + ": read failed (file changed while reading?)");
  return parse_safetensors(bytes, path);
}

LoadedTensors parse_safetensors(std::string_view bytes, const std::string& path) {
  const auto bad = [&](const std::string& what) -> InputError {
    return InputError("checkpoint " + path + ": " + what);
  };
  const uint64_t file_size = bytes.size();
  if (file_size < 8) throw bad("file too short (" + std::to_string(file_size) + " bytes) for a safetensors header");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), sizeof header_len);
  if (header_len > file_size - 8)
    throw bad("header length " + std::to_string(header_len) + " runs past the end of the file (" +
              std::to_string(file_size) + " bytes)");
  if (header_len > kMaxHeaderBytes) throw bad("header length " + std::to_string(header_len) + " is implausibly large");
  const std::string_view text = bytes.substr(8, header_len);
  const uint64_t data_size = file_size - 8 - header_len;
  const std::string_view data = bytes.substr(8 + header_len);

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
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
  if (auto it = out.metadata.find(kDataChecksumKey); it != out.metadata.end()) {
    const std::string want = hex32(crc32_of(data));
    if (it->second != want)
      throw bad(std::string("metadata '") + kDataChecksumKey + "' = '" + it->second +
                "' but the tensor data has CRC-32 " + want + ": the file is corrupt");
    out.metadata.erase(it);
    out.data_checksum_verified = true;
  }
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

// ------------------------------------------------------------- validated metadata

namespace {

// The value, shortened for a one-line message.
std::string shown(const std::string& v) {
  std::string s = v.size() > 40 ? v.substr(0, 40) + "..." : v;
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return s;
}

[[noreturn]] void bad_meta(const std::string& path, const std::string& key, const std::string& value,
                           const std::string& why) {
  throw InputError("checkpoint " + path + ": metadata '" + key + "' = '" + shown(value) + "': " + why);
}

template <typename T>
T parse_whole_integer(const std::string& v, const std::string& key, const std::string& path) {
  T out{};
  const char* first = v.data();
  const char* last = v.data() + v.size();
  if (std::is_signed_v<T> && first != last && *first == '+') ++first;  // from_chars takes '-' only
  const auto [ptr, ec] = std::from_chars(first, last, out);
  if (v.empty() || ec == std::errc::invalid_argument || ptr != last)
    bad_meta(path, key, v, "not an integer");
  if (ec == std::errc::result_out_of_range) bad_meta(path, key, v, "out of the 64-bit range");
  return out;
}

}  // namespace

const std::string& meta_string(const LoadedTensors& t, const std::string& key, const std::string& path,
                               size_t max_bytes) {
  auto it = t.metadata.find(key);
  if (it == t.metadata.end()) throw InputError("checkpoint " + path + ": metadata has no '" + key + "'");
  if (it->second.size() > max_bytes)
    bad_meta(path, key, it->second, "longer than " + std::to_string(max_bytes) + " bytes");
  return it->second;
}

int64_t meta_int(const LoadedTensors& t, const std::string& key, int64_t lo, int64_t hi, const std::string& path) {
  const std::string& v = meta_string(t, key, path);
  const auto x = parse_whole_integer<int64_t>(v, key, path);
  if (x < lo || x > hi)
    bad_meta(path, key, v, "out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

uint64_t meta_u64(const LoadedTensors& t, const std::string& key, uint64_t lo, uint64_t hi, const std::string& path) {
  const std::string& v = meta_string(t, key, path);
  if (!v.empty() && v[0] == '-') bad_meta(path, key, v, "not a non-negative integer");
  const auto x = parse_whole_integer<uint64_t>(v, key, path);
  if (x < lo || x > hi)
    bad_meta(path, key, v, "out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

double meta_double(const LoadedTensors& t, const std::string& key, double lo, double hi, const std::string& path) {
  const std::string& v = meta_string(t, key, path);
  // strtod, not from_chars: libstdc++ 12's floating from_chars is locale-free too,
  // but strtod with a full-consumption check is the portable spelling.
  if (v.empty() || std::isspace(static_cast<unsigned char>(v[0]))) bad_meta(path, key, v, "not a number");
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(v.c_str(), &end);
  if (end != v.c_str() + v.size()) bad_meta(path, key, v, "not a number");
  if (!std::isfinite(x) || errno == ERANGE) bad_meta(path, key, v, "not a finite number");
  if (x < lo || x > hi) {
    char range[80];
    std::snprintf(range, sizeof range, "out of range [%g, %g]", lo, hi);
    bad_meta(path, key, v, range);
  }
  return x;
}

}  // namespace nbsgd
