// CUDA instantiations of the optimizer's functors (nets/optim/ops.h).
#include "nets/optim/ops.h"
#include "runtime/device/comm/cuda/device_launch.cuh"

NBSGD_INSTANTIATE_ON_DEVICE(nbsgd::optim::CommitOp);
NBSGD_INSTANTIATE_ON_DEVICE(nbsgd::optim::ZeroOp);
NBSGD_INSTANTIATE_ON_DEVICE(nbsgd::optim::SgdUpdateOp);
