// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors),
// so they can be read by PyTorch/NumPy tools as they are:
//   8 bytes   little-endian u64 N, the header length
//   N bytes   JSON: {"<name>": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]},
//                    "__metadata__": {"<key>": "<value>", ...}}, padded with spaces
//             so the data section starts 8-byte aligned
//   rest      the tensors' raw little-endian bytes; offsets are relative to it,
//             the tensors tile it exactly (no gaps, no overlap)
// Only F32 is written or read: weights, momentum and accumulators are fp32 here.
//
// Integrity: save_safetensors adds the metadata key "nbsgd.data_crc32" (8 hex digits,
// zlib's CRC-32 of the whole data section). load_safetensors verifies it when present
// and removes it from LoadedTensors::metadata; files from other tools have no such key
// and load with data_checksum_verified = false (nbsgd's own resume requires it).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nbsgd {

struct TensorView {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;  // host memory, product(shape) floats
};

// Writes durably through write_file_atomically (runtime/device/file_io.h):
// `path.tmp.<pid>`, every write checked, fsync, rename over `path`, fsync the folder.
// On any failure (a full disk included) the temporary file is removed, an existing
// `path` is left as it was, and an InputError naming the file and the cause is thrown.
// `metadata` must not use the key "nbsgd.data_crc32" (it is added here).
void save_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata);

struct LoadedTensors {
  // name -> (shape, values)
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> tensors;
  std::map<std::string, std::string> metadata;  // without "nbsgd.data_crc32"
  bool data_checksum_verified = false;           // the file carried the CRC and it matched
};

inline constexpr const char* kDataChecksumKey = "nbsgd.data_crc32";

// Reads and validates the whole file; throws a one-line InputError naming the file
// and the problem (too short, header length beyond the file, bad JSON, a dtype
// other than F32, offsets out of range, overlapping, leaving gaps or not matching
// the shape, metadata that is not string to string, a checksum that does not match).
LoadedTensors load_safetensors(const std::string& path);
// The same from bytes in memory; `path` only names them in messages (the fuzz target
// and tests use it).
LoadedTensors parse_safetensors(std::string_view bytes, const std::string& path);

// ------------------------------------------------------------- validated metadata
// Readers of checkpoint metadata (the trainer's resume) call these instead of
// std::stoll/std::stod, so every value is checked for presence, type and range, and a
// bad one is one InputError line naming the file and the key:
//   "checkpoint run/ckpt.safetensors: metadata 'nbsgd.step' = 'x9': not an integer"
//   "checkpoint run/ckpt.safetensors: metadata 'nbsgd.step' = '-3': out of range [0, 1000000000000]"
//   "checkpoint run/ckpt.safetensors: metadata has no 'nbsgd.seed'"
// Integers: optional sign, decimal digits only, no spaces, no overflow.
int64_t meta_int(const LoadedTensors& t, const std::string& key, int64_t lo, int64_t hi, const std::string& path);
// Unsigned 64-bit (seeds): decimal digits only, in [lo, hi].
uint64_t meta_u64(const LoadedTensors& t, const std::string& key, uint64_t lo, uint64_t hi, const std::string& path);
// Finite decimal or scientific notation (what "{:.17g}" writes), in [lo, hi].
double meta_double(const LoadedTensors& t, const std::string& key, double lo, double hi, const std::string& path);
// Present, and at most max_bytes long (guards the JSON blobs: queue, timeline, config).
const std::string& meta_string(const LoadedTensors& t, const std::string& key, const std::string& path,
                               size_t max_bytes = size_t{64} << 20);

// Throws InputError("checkpoint <path> was made for another net: ...") naming the
// first tensor the net expects that is missing or has another shape, or the first
// tensor in the file the net does not have.
void check_matches(const LoadedTensors& loaded, const std::vector<TensorView>& expected,
                   const std::string& path);

}  // namespace nbsgd
