// CUDA instantiations of the communicators' functors (runtime/device/comm/ops.h).
#include "kernels/cuda/launch.cuh"
#include "runtime/device/comm/ops.h"

NBSGD_INSTANTIATE_1D(nbsgd::comm::ChunkSumOp);
NBSGD_INSTANTIATE_1D(nbsgd::comm::WeightedSumOp);
NBSGD_INSTANTIATE_1D(nbsgd::comm::GossipSgdOp);
NBSGD_INSTANTIATE_1D(nbsgd::comm::LocalSgdStepOp);
NBSGD_INSTANTIATE_1D(nbsgd::comm::GossipFinishOp);
NBSGD_INSTANTIATE_1D(nbsgd::comm::ClearOp);
