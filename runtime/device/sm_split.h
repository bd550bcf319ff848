// The plan for splitting one GPU's SMs among its partitions (`--devices
// 0:0.5,0:0.25,0:0.25`), as pure arithmetic so that it is tested on the host.
//
// Green contexts come from one cuDevSmResourceSplitByCount call per GPU, which
// makes `groups` equal groups of `unit` SMs; partition k is made of `counts[k]` of
// them (cuDevResourceGenerateDesc takes several groups of one split). Doing the
// split once for all partitions, instead of splitting what each earlier partition
// left, means no leftover has to back a "holder" context, so none can be smaller
// than the hardware's minimum, and the groups are the driver's symmetric ones.
//
// Every share is rounded DOWN to the step, so the partitions never ask for more SMs
// than the GPU has: four 0.25 shares of a 108-SM A100 are 4 x 24, not 4 x 28 = 112.
#pragma once

#include <string>
#include <vector>

namespace nbsgd {

// What the driver reports for a GPU's SM resource (cuDeviceGetDevResource).
struct SmGeometry {
  int total = 0;      // smCount
  int min_size = 1;   // minSmPartitionSize
  int alignment = 1;  // smCoscheduledAlignment
};

// The CUDA documentation's guideline per architecture, for when no driver can be
// asked (tests, planning): cc 6.x/7.x: at least 2, multiples of 2; 8.x: at least 4,
// multiples of 2; 9.0 and newer: at least 8, multiples of 8.
SmGeometry sm_geometry_guideline(int cc_major, int total_sms);

// The granularity every share is rounded down to: the smallest multiple of the
// alignment that is at least the minimum partition (all groups of one split have
// the same size, and each must be a valid partition): 8 on sm_90, 4 on sm_80.
int sm_split_step(const SmGeometry& g);

struct SmSplitPlan {
  int unit = 0;             // SMs per group (the split's minCount)
  int groups = 0;           // groups the one split makes (sum of counts)
  std::vector<int> counts;  // groups per share, in the shares' order
  int sms(size_t k) const { return counts[k] * unit; }
  int used() const { return groups * unit; }
};

// Throws an Error naming GPU `ordinal` and the offending share when a share is not in
// (0, 1], the shares add up to more than the whole GPU, or a share rounds down below
// the step (a partition smaller than the hardware allows).
SmSplitPlan plan_sm_split(const SmGeometry& g, const std::vector<double>& shares, int ordinal);

}  // namespace nbsgd
