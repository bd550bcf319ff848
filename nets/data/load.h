// The one entry point for training data: a named data set or a directory of NumPy
// files, with the limits of a run applied.
#pragma once

#include <cstdint>
#include <string>

#include "nets/data/dataset.h"

namespace nbsgd::data {

struct DataRequest {
  std::string data = "fashion-mnist";  // fashion-mnist | synthetic-cifar | npy:DIR
  std::string data_dir = "/usr/share/datasets/fashion-mnist";  // fashion-mnist's IDX files
  int64_t train_limit = 0;  // > 0: only the first N training samples
  int64_t test_limit = 0;   // > 0: only the first N test samples
  int64_t synthetic_train = 50000, synthetic_test = 10000;  // synthetic-cifar sizes
  uint64_t seed = 1;        // synthetic-cifar draws
  // The net's sample shape and classes where known (> 0): the data is checked
  // against them, with an error naming both (and npy data takes its layout from
  // them where the array shape alone cannot tell).
  int net_c = 0, net_h = 0, net_w = 0, net_classes = 0;
  std::string net;  // the net's name, for messages
};

// Throws InputError naming --data (and the file) for anything unusable. The
// returned split's `summary` is one line saying what was read (empty for the
// named sets).
DataSplit load_data(const DataRequest& r);

}  // namespace nbsgd::data
