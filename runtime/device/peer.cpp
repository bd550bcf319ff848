#include "runtime/device/peer.h"

#include <set>

#include "runtime/device/context.h"
#include "runtime/device/cuda/cuda_backend.h"

namespace nbsgd {

std::vector<std::pair<int, int>> peer_pairs(const std::vector<int>& ordinals,
                                            const std::function<bool(int, int)>& can_access) {
  const std::set<int> devs(ordinals.begin(), ordinals.end());
  std::vector<std::pair<int, int>> out;
  for (int a : devs)
    for (int b : devs)
      if (a != b && can_access(a, b)) out.emplace_back(a, b);
  return out;
}

std::vector<std::pair<int, int>> enable_peer_access(const std::vector<DeviceContext*>& workers) {
  std::vector<int> ordinals;
  for (const DeviceContext* w : workers)
    if (w && w->backend() == Backend::Cuda) ordinals.push_back(w->device().ordinal);
  const auto pairs = peer_pairs(ordinals, [](int a, int b) { return cuda_backend::can_access_peer(a, b); });
  for (auto [a, b] : pairs) cuda_backend::enable_peer_access(a, b);
  return pairs;
}

}  // namespace nbsgd
