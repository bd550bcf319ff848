// Run under mpirun (tests/mpi_launch.cpp starts it): the bounded collectives of
// runtime/device/comm/launch.h, checked bit for bit with integer-valued data (exact
// in float whatever the order), on block sizes that do not divide by the number of
// ranks, and the rank-order sum the virtual clock across ranks relies on. Prints
// one line per failure and exits 1 when any check failed.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "runtime/device/comm/launch.h"

namespace comm = nbsgd::comm;

int main() {
  const comm::Launch& l = comm::init_launch();
  int bad = 0;
  auto expect = [&](bool ok, const char* what, long long a, long long b) {
    if (!ok) {
      std::fprintf(stderr, "rank %d: %s: got %lld, expected %lld\n", l.rank, what, a, b);
      ++bad;
    }
  };
  const int R = l.size;
  expect(R > 1, "launched with several ranks", R, 2);
  // All-gather of float blocks: rank r, element e holds r * 100003 + e (< 2^24: exact).
  for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1000}, size_t{4097}}) {
    std::vector<float> mine(count), all(count * static_cast<size_t>(R), -1.0f);
    for (size_t e = 0; e < count; ++e) mine[e] = static_cast<float>(l.rank * 100003 + static_cast<long>(e));
    comm::ranks_allgather(mine.data(), count * sizeof(float), all.data());
    for (int r = 0; r < R; ++r)
      for (size_t e = 0; e < count; ++e) {
        const float want = static_cast<float>(r * 100003 + static_cast<long>(e));
        const float got = all[static_cast<size_t>(r) * count + e];
        if (std::memcmp(&got, &want, sizeof got) != 0) {
          expect(false, "all-gather element", static_cast<long long>(got), static_cast<long long>(want));
          r = R;
          break;
        }
      }
    // The sum in rank order of the gathered blocks: sum_r (r*100003 + e) exactly.
    if (count > 0) {
      const size_t e = count - 1;
      float s = all[e];
      for (int r = 1; r < R; ++r) s += all[static_cast<size_t>(r) * count + e];
      const long long want = static_cast<long long>(100003) * R * (R - 1) / 2 + static_cast<long long>(e) * R;
      expect(static_cast<long long>(s) == want, "rank-order sum", static_cast<long long>(s), want);
    }
  }
  // In place: `mine` is this rank's own block of `all`.
  {
    std::vector<int32_t> all(static_cast<size_t>(R) * 3, 0);
    for (int k = 0; k < 3; ++k) all[static_cast<size_t>(l.rank) * 3 + k] = l.rank * 10 + k;
    comm::ranks_allgather(all.data() + l.rank * 3, 3 * sizeof(int32_t), all.data());
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < 3; ++k) expect(all[static_cast<size_t>(r) * 3 + k] == r * 10 + k, "in-place all-gather",
                                         all[static_cast<size_t>(r) * 3 + k], r * 10 + k);
  }
  // Sums of int64 values beyond 2^53 (exact, any order would do; ours is rank order).
  const int64_t big = (int64_t{1} << 60) / 8;
  expect(comm::ranks_sum(big + l.rank) == big * R + int64_t{R} * (R - 1) / 2, "ranks_sum",
         comm::ranks_sum(big + l.rank), big * R + int64_t{R} * (R - 1) / 2);
  // Broadcast of 13 bytes from the last rank.
  unsigned char b[13];
  for (int k = 0; k < 13; ++k) b[k] = static_cast<unsigned char>(l.rank == R - 1 ? 200 + k : 0);
  comm::ranks_bcast(b, sizeof b, R - 1);
  for (int k = 0; k < 13; ++k) expect(b[k] == 200 + k, "broadcast byte", b[k], 200 + k);
  expect(comm::ranks_messages_sent() > 0, "messages sent", comm::ranks_messages_sent(), 1);
  if (bad == 0) std::printf("rank %d of %d: collectives exact\n", l.rank, R);
  std::fflush(stdout);
  comm::finalize_launch();
  return bad == 0 ? 0 : 1;
}
