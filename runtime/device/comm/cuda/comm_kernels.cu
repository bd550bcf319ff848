// CUDA instantiations of the communicators' functors (runtime/device/comm/ops.h).
#include "runtime/device/comm/cuda/device_launch.cuh"
#include "runtime/device/comm/ops.h"

NBSGD_INSTANTIATE_ON_DEVICE(nbsgd::comm::ChunkSumOp);
NBSGD_INSTANTIATE_ON_DEVICE(nbsgd::comm::WeightedSumOp);
NBSGD_INSTANTIATE_ON_DEVICE(nbsgd::comm::GossipSgdOp);
NBSGD_INSTANTIATE_ON_DEVICE(nbsgd::comm::LocalSgdStepOp);
NBSGD_INSTANTIATE_ON_DEVICE(nbsgd::comm::GossipFinishOp);
NBSGD_INSTANTIATE_ON_DEVICE(nbsgd::comm::ClearOp);
