// Peer access between the GPUs of a run: where two GPUs support it, each may read
// and write the other's memory directly, so cudaMemcpyPeerAsync (the in-process
// communicators) goes over NVLink/PCIe peer-to-peer instead of staging through host
// memory. Enabled once, when a communicator is set up over CUDA workers.
#pragma once

#include <functional>
#include <utility>
#include <vector>

namespace nbsgd {

class DeviceContext;

// The ordered (device, peer) pairs to enable among `ordinals`: distinct devices,
// each ordered pair once, only where can_access(device, peer). Pure, for tests.
std::vector<std::pair<int, int>> peer_pairs(const std::vector<int>& ordinals,
                                            const std::function<bool(int, int)>& can_access);

// Enables peer access between the CUDA workers' GPUs that support it (a no-op for
// host workers and for workers sharing one GPU). Returns the pairs it enabled.
std::vector<std::pair<int, int>> enable_peer_access(const std::vector<DeviceContext*>& workers);

}  // namespace nbsgd
