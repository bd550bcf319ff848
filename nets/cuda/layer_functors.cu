// CUDA instantiations of the layer functors (nets/layers/functors.h): one line per
// functor the layers launch; a missing one is a link error.
#include "kernels/cuda/launch.cuh"
#include "nets/layers/functors.h"

NBSGD_INSTANTIATE_1D(nbsgd::nets::CopyOrAddOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::AddOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::ReluForwardOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::ReluBackwardOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::BiasAddOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::ChannelPartialOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::ChannelFinishOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::BnStatsOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::BnEvalStatsOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::BnApplyOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::BnParamGradOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::BnBackwardDataOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::MaxPoolForwardOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::MaxPoolBackwardOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::AvgPoolForwardOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::AvgPoolBackwardOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::SoftmaxXentOp);
NBSGD_INSTANTIATE_1D(nbsgd::nets::LossTotalsOp);
