// An in-memory image classification data set, already normalised, in host memory.
// Staging to devices is done elsewhere; the epoch queue hands out indices into it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nbsgd::data {

struct Dataset {
  std::string name;  // e.g. "fashion-mnist/train"
  int64_t n = 0;     // number of samples
  int c = 0, h = 0, w = 0;
  int classes = 0;
  std::vector<float> images;     // n*c*h*w, NCHW, normalised
  std::vector<int32_t> labels;   // n, each in [0, classes)

  int64_t sample_size() const { return static_cast<int64_t>(c) * h * w; }
  const float* image(int64_t i) const { return images.data() + i * sample_size(); }
};

struct DataSplit {
  Dataset train, test;
};

}  // namespace nbsgd::data
