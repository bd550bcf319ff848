// One macro makes element-wise math single-source: __host__ __device__ under nvcc,
// plain inline under g++. Functors written with it run in a CUDA kernel or in the
// host backend's loop unchanged.
#pragma once

#if defined(__CUDACC__)
#define NBSGD_HD __host__ __device__ __forceinline__
#else
#define NBSGD_HD inline
#endif
