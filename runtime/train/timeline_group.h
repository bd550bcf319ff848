// Timeline's window groups (private to timeline*.cpp): one StepController per
// window of a step, its members and the workers whose own window it is.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "runtime/device/check.h"
#include "runtime/train/controller.h"
#include "runtime/train/timeline.h"

namespace nbsgd::engine {

struct Timeline::Group {
  std::unique_ptr<StepController> ctl;
  std::vector<int> members;  // ascending
  std::vector<int> owners;   // the workers whose own window this is
  int64_t step = 0;
  bool handled = false;
  double start = -1;  // S: the window's clock (deadline, adaptive guard) starts here
  int local(int w) const {
    auto it = std::lower_bound(members.begin(), members.end(), w);
    NBSGD_CHECK(it != members.end() && *it == w, "worker is not a member of this window");
    return static_cast<int>(it - members.begin());
  }
};

}  // namespace nbsgd::engine
