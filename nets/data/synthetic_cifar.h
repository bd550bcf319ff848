// A CIFAR-shaped synthetic data set (3x32x32, 10 classes) for runs and tests that
// must not depend on files: learnable, and reproducible from a seed.
#pragma once

#include <cstdint>

#include "nets/data/dataset.h"

namespace nbsgd::data {

// Each class has a fixed pattern, the same for every seed: a colour cast, an
// oriented stripe texture and a coloured blob at a class-specific place. A sample
// has its class's pattern with a random stripe phase, a jittered blob position, a
// jittered colour cast and contrast, plus Gaussian pixel noise. A nearest class
// mean on raw pixels scores about 0.68 on the test split (chance 0.1). Labels are
// balanced and shuffled. Both splits are normalised per channel with the training
// split's mean and std. All draws come from the portable generator in rng.h, per
// sample, so the same (n_train, n_test, seed) gives the same data on every
// platform (up to libm's last-bit rounding of sin/cos/exp/log), and the test split
// draws do not depend on n_train.
DataSplit make_synthetic_cifar(int64_t n_train, int64_t n_test, uint64_t seed);

}  // namespace nbsgd::data
