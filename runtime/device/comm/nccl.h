// NCCL communicators, one worker per GPU (defined in runtime/device/comm/cuda/nccl.cpp,
// built only with the CUDA backend; make_all_reduce / make_gossip_exchange pick
// them). No NCCL headers here.
#pragma once

#include <memory>
#include <vector>

#include "runtime/device/comm/comm.h"

namespace nbsgd::comm {

// One communicator per device from ncclCommInitAll; each collective is issued for
// all workers inside one ncclGroupStart/End, on each worker's comm stream.
std::unique_ptr<AllReduce> make_nccl_all_reduce(const std::vector<DeviceContext*>& workers);
// Gossip: one group per step with an ncclSend of x_i to every worker that reads it
// and an ncclRecv from every neighbour into a receive slice, then a local
// weighted-sum kernel in ascending j.
std::unique_ptr<GossipExchange> make_nccl_gossip(const std::vector<DeviceContext*>& workers);

}  // namespace nbsgd::comm
