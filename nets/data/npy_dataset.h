// A data set from a directory of NumPy files (--data npy:DIR):
//   x_train.npy, x_test.npy  images, uint8 or float32, shape (N, C, H, W) or
//                            (N, H, W, C) (told apart by which end is a channel
//                            count <= 4), or (N, H, W) for one channel
//   y_train.npy, y_test.npy  integer labels, shape (N,) or (N, 1)
// The image arrays are memory-mapped and read in place, one sample at a time as
// mini-batches are staged; only the labels are copied (to int32). float32 pixels
// are taken as stored (normalise them in NumPy); uint8 ones are scaled to [0, 1]
// and normalised per channel with the training split's mean and std.
#pragma once

#include <cstdint>
#include <string>

#include "nets/data/dataset.h"

namespace nbsgd::data {

struct NpyDirOptions {
  int64_t train_limit = 0;  // > 0: the first N training samples only
  int64_t test_limit = 0;   // > 0: the first N test samples only
  // The net's sample shape and classes where known (> 0): the data must match
  // them, and they settle the layout where the shape alone cannot.
  int c = 0, h = 0, w = 0, classes = 0;
  std::string net;  // the net's name, for the messages
};

// Throws InputError naming the file and the problem, in one line.
DataSplit load_npy_dir(const std::string& dir, const NpyDirOptions& o = {});

}  // namespace nbsgd::data
