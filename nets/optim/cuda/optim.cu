// CUDA instantiations of the optimizer's functors (nets/optim/ops.h).
#include "nets/optim/ops.h"
#include "kernels/cuda/launch.cuh"

NBSGD_INSTANTIATE_1D(nbsgd::optim::CommitOp);
NBSGD_INSTANTIATE_1D(nbsgd::optim::ZeroOp);
NBSGD_INSTANTIATE_1D(nbsgd::optim::SgdUpdateOp);
