// NCCL across the ranks of a launch (issue 15; launch.h): one GPU per rank, one
// communicator over all ranks. Rank 0 makes the ncclUniqueId, ranks_bcast (MPI)
// gives it to every rank, and each rank calls ncclCommInitRank on its own device:
// the bootstrap nccl-tests and PyTorch use under mpirun. Defined in
// runtime/device/comm/cuda/nccl_ranks.cpp, built with the CUDA backend; it needs MPI
// (NBSGD_HAVE_MPI) at run time when the launch has several ranks. No NCCL headers
// here.
//
// Status: the communicators are built and compiled with nvcc; training does not use
// them yet, because GPU workers across processes need the real clock's window
// across ranks, which is refused (runtime/train/ranks.h).
#pragma once

#include <memory>
#include <string>

#include "runtime/device/comm/comm.h"
#include "runtime/device/comm/launch.h"

namespace nbsgd::comm {

// The all-reduce of this rank's one worker with every other rank's (size() = ranks;
// all_reduce_sum takes one buffer, this rank's). NCCL's ring order, not the worker
// order of in_process.h: sums are exact only for integer-valued data.
std::unique_ptr<AllReduce> make_nccl_rank_all_reduce(DeviceContext& worker);
// Gossip over ranks: MixWeights name ranks; x and acc hold this rank's one buffer.
// One group per step: ncclSend of x to every rank that reads it, ncclRecv from every
// neighbour, then the weighted sum in ascending j (as make_nccl_gossip does in one
// process).
std::unique_ptr<GossipExchange> make_nccl_rank_gossip(DeviceContext& worker);

}  // namespace nbsgd::comm
