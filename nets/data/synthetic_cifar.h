// A CIFAR-shaped synthetic data set (3x32x32, 10 classes) for runs and tests that
// must not depend on files: learnable, and the same bytes on every platform.
#pragma once

#include <cstdint>

#include "nets/data/dataset.h"

namespace nbsgd::data {

// Each class has a fixed pattern (a colour cast, an oriented stripe texture and a
// coloured blob, the same for every seed); a sample is its class pattern shifted by
// up to 3 pixels (wrapping), scaled in contrast, plus Gaussian noise. Labels are
// balanced and shuffled. Both splits are normalised per channel with the training
// split's mean and std. Everything is drawn from seed with the portable generator in
// rng.h, so the same (n_train, n_test, seed) gives the same data everywhere; the
// test split does not depend on n_train.
DataSplit make_synthetic_cifar(int64_t n_train, int64_t n_test, uint64_t seed);

}  // namespace nbsgd::data
