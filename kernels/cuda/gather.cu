// CUDA instantiation of the mini-batch gather (kernels/gather.h).
#include "kernels/cuda/launch.cuh"
#include "kernels/gather.h"

NBSGD_INSTANTIATE_1D(nbsgd::kernels::GatherOp);
