// Choosing a communicator, and the checks every implementation shares.
#include <set>
#include <string>

#include "runtime/device/check.h"
#include "runtime/device/comm/comm.h"
#include "runtime/device/comm/in_process.h"
#include "runtime/device/comm/nccl.h"
#include "runtime/device/comm/ops.h"
#include "runtime/device/peer.h"

namespace nbsgd::comm {

bool nccl_applies(const std::vector<DeviceContext*>& workers) {
  if (!cuda_built() || workers.size() < 2) return false;
  std::set<int> ordinals;
  for (auto* w : workers) {
    if (w->backend() != Backend::Cuda) return false;
    ordinals.insert(w->device().ordinal);
  }
  return ordinals.size() == workers.size();
}

std::unique_ptr<AllReduce> make_all_reduce(const std::vector<DeviceContext*>& workers) {
  enable_peer_access(workers);
#if NBSGD_HAVE_CUDA
  if (nccl_applies(workers)) return make_nccl_all_reduce(workers);
#endif
  return std::make_unique<InProcessAllReduce>(workers);
}

std::unique_ptr<GossipExchange> make_gossip_exchange(const std::vector<DeviceContext*>& workers) {
  enable_peer_access(workers);
#if NBSGD_HAVE_CUDA
  if (nccl_applies(workers)) return make_nccl_gossip(workers);
#endif
  return std::make_unique<InProcessGossip>(workers);
}

std::vector<std::vector<int>> check_weights(const MixWeights& w, int n) {
  NBSGD_CHECK(static_cast<int>(w.size()) == n,
              "mixing weights: " + std::to_string(w.size()) + " lists for " + std::to_string(n) + " workers");
  std::vector<std::vector<int>> readers(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const auto& list = w[static_cast<size_t>(i)];
    NBSGD_CHECK(static_cast<int>(list.size()) <= kMaxSources, "mixing weights: too many neighbours");
    bool self = false;
    for (size_t s = 0; s < list.size(); ++s) {
      const int j = list[s].first;
      NBSGD_CHECK(j >= 0 && j < n, "mixing weights of worker " + std::to_string(i) + ": worker " +
                                       std::to_string(j) + " out of range");
      NBSGD_CHECK(s == 0 || list[s - 1].first < j,
                  "mixing weights of worker " + std::to_string(i) + ": not strictly ascending");
      if (j == i) {
        self = true;
      } else {
        readers[static_cast<size_t>(j)].push_back(i);
      }
    }
    NBSGD_CHECK(self, "mixing weights of worker " + std::to_string(i) + ": no self weight");
  }
  return readers;
}

}  // namespace nbsgd::comm
