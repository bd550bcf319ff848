// The commit's body, single-source for the CUDA kernel and the host twin.
//
// The flag is mapped host memory: every read of it from the GPU is an uncached
// PCIe round trip. It is read once per block (thread 0, broadcast through shared
// memory), not once per element; a block whose flag says "not counted" exits at
// once. The host twin runs the whole range as one block: one read, then the adds.
// Both are all-or-nothing per block, and the host writes the flag before the
// commit starts (the completion notice runs ahead of it in stream order), so every
// block sees the same value and the two give identical results.
#pragma once

#include <cstddef>

#include "kernels/hd.h"

namespace nbsgd::engine {

struct CommitIfOp {
  const float* scratch;
  float* acc;
  const volatile int* flag;
  NBSGD_HD bool counted() const { return *flag != 0; }
  NBSGD_HD void add(size_t i) const { acc[i] += scratch[i]; }
};

// One block's share of the commit: elements begin, begin + stride, ... < n, after
// one read of the flag through `read_flag` (the kernel passes the shared-memory
// broadcast; tests pass a counting reader).
template <class ReadFlag>
NBSGD_HD void commit_block(const CommitIfOp& op, size_t begin, size_t n, size_t stride, ReadFlag read_flag) {
  if (!read_flag()) return;
  for (size_t i = begin; i < n; i += stride) op.add(i);
}

}  // namespace nbsgd::engine
