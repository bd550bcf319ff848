// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors),
// so they can be read by PyTorch/NumPy tools as they are:
//   8 bytes   little-endian u64 N, the header length
//   N bytes   JSON: {"<name>": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]},
//                    "__metadata__": {"<key>": "<value>", ...}}, padded with spaces
//             so the data section starts 8-byte aligned
//   rest      the tensors' raw little-endian bytes; offsets are relative to it,
//             the tensors tile it exactly (no gaps, no overlap)
// Only F32 is written or read: weights, momentum and accumulators are fp32 here.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace nbsgd {

struct TensorView {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;  // host memory, product(shape) floats
};

// Writes atomically: `path.tmp.<pid>`, fsync, rename over `path`, fsync the folder.
// On any failure the temporary file is removed, an existing `path` is left as it
// was, and an InputError naming the file and the cause is thrown.
void save_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata);

struct LoadedTensors {
  // name -> (shape, values)
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> tensors;
  std::map<std::string, std::string> metadata;
};

// Reads and validates the whole file; throws a one-line InputError naming the file
// and the problem (too short, header length beyond the file, bad JSON, a dtype
// other than F32, offsets out of range, overlapping, leaving gaps or not matching
// the shape, metadata that is not string to string).
LoadedTensors load_safetensors(const std::string& path);

// Throws InputError("checkpoint <path> was made for another net: ...") naming the
// first tensor the net expects that is missing or has another shape, or the first
// tensor in the file the net does not have.
void check_matches(const LoadedTensors& loaded, const std::vector<TensorView>& expected,
                   const std::string& path);

}  // namespace nbsgd
