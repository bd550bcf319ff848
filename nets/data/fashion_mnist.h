// Fashion-MNIST (Xiao et al. 2017) from its IDX files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nets/data/dataset.h"

namespace nbsgd::data {

inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";
// Pixel statistics of the training set after scaling to [0, 1].
inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStd = 0.3530f;

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from `dir` (the plain name
// is tried first, then the .gz one; zlib reads both). Images come out as 1x28x28,
// scaled to [0, 1] and normalised with the mean and std above. limit_train > 0 keeps
// only the first limit_train training samples (for quick runs); the test split is
// always complete. Throws InputError naming the file for a missing, truncated or
// corrupt file, a wrong IDX magic, unexpected dimensions, image and label counts
// that differ, or a label outside 0..9.
DataSplit load_fashion_mnist(const std::string& dir = kFashionMnistDefaultDir,
                             int64_t limit_train = -1);

// One IDX file each (plain or gzipped), the readers load_fashion_mnist uses; the fuzz
// target (tests/fuzz/fuzz_idx.cpp) calls them directly. Images come out normalised,
// n x 28 x 28 floats; labels 0..9. Both return the item count of the header and throw
// InputError naming `path` for anything else.
// `bytes` (optional) receives the stored bytes as well, with the table that turns
// them into `out`'s floats (Dataset::bytes).
int64_t read_idx_images(const std::string& path, std::vector<float>& out,
                        std::shared_ptr<const BytePixels>* bytes = nullptr);
int64_t read_idx_labels(const std::string& path, std::vector<int32_t>& out);

}  // namespace nbsgd::data
