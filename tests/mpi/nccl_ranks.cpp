// Run under mpirun, one GPU per rank (tests/gpu_mpi_nccl.cpp starts it): NCCL across
// ranks (runtime/device/comm/nccl_ranks.h), bootstrapped over MPI, checked bit for
// bit with integer-valued data, on a count that does not divide by the ranks.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "runtime/device/buffer.h"
#include "runtime/device/comm/launch.h"
#include "runtime/device/comm/nccl_ranks.h"
#include "runtime/device/context.h"
#include "runtime/device/device.h"

using namespace nbsgd;

int main() {
  const comm::Launch& l = comm::init_launch();
  const DeviceList devs = discover_devices();
  if (devs.backend != Backend::Cuda || static_cast<int>(devs.devices.size()) <= l.local_rank) {
    std::fprintf(stderr, "rank %d: no GPU for local rank %d\n", l.rank, l.local_rank);
    comm::abort_launch(2);
  }
  int bad = 0;
  {
    DeviceContext ctx(devs.devices[static_cast<size_t>(l.local_rank)], ClockKind::Real);
    const size_t count = 1001;
    std::vector<float> v(count), out(count);
    for (size_t e = 0; e < count; ++e) v[e] = static_cast<float>(2 * (l.rank * 1000 + static_cast<int>(e)));
    Buffer b(Backend::Cuda, ctx.device().ordinal, count * sizeof(float));
    copy_async(ctx.comm(), b.data(), v.data(), count * sizeof(float));
    auto ar = comm::make_nccl_rank_all_reduce(ctx);
    ar->all_reduce_sum({b.as<float>()}, count, {});
    copy_async(ctx.comm(), out.data(), b.data(), count * sizeof(float));
    ctx.comm().synchronize();
    for (size_t e = 0; e < count; ++e) {
      double want = 0;
      for (int r = 0; r < l.size; ++r) want += 2.0 * (r * 1000 + static_cast<double>(e));
      if (out[e] != static_cast<float>(want) && bad++ < 3)
        std::fprintf(stderr, "rank %d: all-reduce element %zu: %g, expected %g\n", l.rank, e, out[e], want);
    }
    // Gossip on the ring of ranks with weights 1/2 (self) and 1/4 (each side), or
    // 1/2 and 1/2 on two ranks: exact on even integers.
    comm::MixWeights w(static_cast<size_t>(l.size));
    for (int i = 0; i < l.size; ++i) {
      const int a = (i + l.size - 1) % l.size, c = (i + 1) % l.size;
      if (l.size == 2) {
        w[static_cast<size_t>(i)] = {{0, 0.5}, {1, 0.5}};
      } else {
        std::vector<std::pair<int, double>> list{{i, 0.5}, {a, 0.25}, {c, 0.25}};
        std::sort(list.begin(), list.end());
        w[static_cast<size_t>(i)] = list;
      }
    }
    copy_async(ctx.comm(), b.data(), v.data(), count * sizeof(float));
    auto g = comm::make_nccl_rank_gossip(ctx);
    g->mix({b.as<float>()}, count, w, {});
    copy_async(ctx.comm(), out.data(), b.data(), count * sizeof(float));
    ctx.comm().synchronize();
    for (size_t e = 0; e < count; ++e) {
      double want = 0;
      for (auto [j, wij] : w[static_cast<size_t>(l.rank)]) want += wij * 2.0 * (j * 1000 + static_cast<double>(e));
      if (out[e] != static_cast<float>(want) && bad++ < 6)
        std::fprintf(stderr, "rank %d: gossip element %zu: %g, expected %g\n", l.rank, e, out[e], want);
    }
  }
  if (bad == 0) std::printf("rank %d of %d: nccl across ranks exact\n", l.rank, l.size);
  std::fflush(stdout);
  comm::finalize_launch();
  return bad == 0 ? 0 : 1;
}
