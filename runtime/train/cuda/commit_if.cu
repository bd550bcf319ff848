#include "kernels/cuda/launch.cuh"
#include "runtime/train/commit_if_op.h"

NBSGD_INSTANTIATE_1D(nbsgd::engine::CommitIfOp);
