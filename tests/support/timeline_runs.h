// Shared by the Timeline's by-hand tests: a training set that never runs dry. Every
// hand-out gets the size asked for, and what comes back is not tracked.
#pragma once

#include <cstdint>

#include "runtime/train/timeline.h"

namespace nbsgd::engine::test_runs {

inline Timeline::TakeFn endless_take() {
  return [](int, int size, int& actual) -> int64_t {
    actual = size;
    return 0;
  };
}

inline Timeline::GiveBackFn ignore_give_back() {
  return [](int64_t) {};
}

}  // namespace nbsgd::engine::test_runs
