#include "runtime/device/sm_split.h"

#include <fmt/format.h>

#include <cmath>
#include <numeric>

#include "runtime/device/check.h"

namespace nbsgd {

SmGeometry sm_geometry_guideline(int cc_major, int total_sms) {
  SmGeometry g;
  g.total = total_sms;
  if (cc_major >= 9) {
    g.min_size = 8;
    g.alignment = 8;
  } else if (cc_major == 8) {
    g.min_size = 4;
    g.alignment = 2;
  } else {
    g.min_size = 2;
    g.alignment = 2;
  }
  return g;
}

int sm_split_step(const SmGeometry& g) {
  const int align = std::max(1, g.alignment);
  const int min_size = std::max(1, g.min_size);
  return (min_size + align - 1) / align * align;
}

SmSplitPlan plan_sm_split(const SmGeometry& g, const std::vector<double>& shares, int ordinal) {
  NBSGD_CHECK_DEV(ordinal, !shares.empty(), fmt::format("GPU {}: no SM shares to plan", ordinal));
  NBSGD_CHECK_DEV(ordinal, g.total > 0, fmt::format("GPU {}: reports {} SMs", ordinal, g.total));
  const int step = sm_split_step(g);
  double sum = 0.0;
  std::vector<int> sizes;
  for (double f : shares) {
    if (!(f > 0.0 && f <= 1.0))
      throw Error(fmt::format("GPU {}: SM share {} is not in (0, 1]", ordinal, f), ordinal);
    sum += f;
    // Down, never to the nearest: the sum of the sizes can then not exceed the GPU.
    // The 1e-9 keeps an exact product (0.25 x 132 = 33) from flooring one step low.
    const int steps = static_cast<int>(std::floor(f * g.total / step + 1e-9));
    if (steps < 1)
      throw Error(fmt::format("GPU {}: SM share {} is {:.3g} of its {} SMs, below the smallest partition "
                              "({} SMs: minimum {}, multiples of {})",
                              ordinal, f, f * g.total, g.total, step, g.min_size, g.alignment),
                  ordinal);
    sizes.push_back(steps * step);
  }
  if (sum > 1.0 + 1e-9)
    throw Error(fmt::format("GPU {}: its SM shares add up to {:.4g}, more than the whole GPU", ordinal, sum),
                ordinal);
  int unit = 0;
  for (int s : sizes) unit = std::gcd(unit, s);  // a multiple of step, so a valid partition
  SmSplitPlan p;
  p.unit = unit;
  for (int s : sizes) {
    p.counts.push_back(s / unit);
    p.groups += s / unit;
  }
  return p;
}

}  // namespace nbsgd
