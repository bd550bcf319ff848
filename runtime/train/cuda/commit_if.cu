// The commit kernel: commit_block per block, the mapped flag read once per block.
#include <algorithm>

#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/device_guard.h"
#include "runtime/train/commit_if_op.h"

namespace nbsgd::engine::cuda {
namespace {

// The block's one read of the flag, broadcast through shared memory.
struct SharedFlag {
  const int* counted;
  __device__ bool operator()() const { return *counted != 0; }
};

__global__ void commit_if_kernel(size_t n, CommitIfOp op) {
  __shared__ int counted;
  if (threadIdx.x == 0) counted = op.counted();
  __syncthreads();
  const size_t begin = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  commit_block(op, begin, n, stride, SharedFlag{&counted});
}

}  // namespace

void commit_if(void* stream, int device, size_t n, const CommitIfOp& op) {
  if (n == 0) return;
  constexpr int kBlock = 256;
  // Few enough blocks that the flag's reads stay few (one per block), enough to
  // fill any current GPU; the grid-stride loop covers the rest.
  const size_t blocks = std::min<size_t>((n + kBlock - 1) / kBlock, 1024);
  DeviceGuard guard(device);
  commit_if_kernel<<<static_cast<unsigned>(blocks), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(n, op);
  NBSGD_CUDA_CHECK(device, cudaGetLastError());
}

}  // namespace nbsgd::engine::cuda
