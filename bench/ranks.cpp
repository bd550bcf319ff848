// What crossing processes costs per step (issue 15), run under mpirun:
//   close         rank 0 broadcasts a close record (one int per rank: its counted
//                 mini-batches), then every rank all-gathers a 4-byte ack, so rank 0
//                 knows every rank holds the close: the round trip a coordinator's
//                 decision would take. Not the coordinator itself (not built yet).
//   accumulators  the virtual clock's per-step all-gather of each rank's
//                 accumulators (--floats per rank; runtime/train/ranks.h).
// Validates the all-gather with integer data first, warms up, then reports rank 0's
// median and p99 per step and the messages one step sends (all ranks together).
//
//   mpirun -np 4 [--mca btl tcp,self] bench_ranks [--floats F] [--iters K] [--btl NAME] [--json FILE]
// bench/ranks.sh runs 2, 4 and 8 ranks on shared memory and on TCP.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/device/comm/launch.h"

namespace comm = nbsgd::comm;

namespace {

double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Row {
  std::string what;
  size_t bytes;
  double median_us, p99_us;
  long long messages;
};

template <class F>
Row time_it(const std::string& what, size_t bytes, int warmup, int iters, long long messages, F&& body) {
  for (int k = 0; k < warmup; ++k) body();
  std::vector<double> t;
  for (int k = 0; k < iters; ++k) {
    const double a = now_us();
    body();
    t.push_back(now_us() - a);
  }
  std::sort(t.begin(), t.end());
  const double p99 = t[std::min(t.size() - 1, static_cast<size_t>(0.99 * static_cast<double>(t.size())))];
  return {what, bytes, t[t.size() / 2], p99, messages};
}

}  // namespace

int main(int argc, char** argv) {
  size_t floats = 535818 + 2;  // the MLP's P + 2
  int iters = 200, warmup = 20;
  std::string json, btl = "default";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_ranks: error: %s needs a value\n", flag);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--floats") floats = std::strtoull(next("--floats").c_str(), nullptr, 10);
    else if (a == "--iters") iters = std::atoi(next("--iters").c_str());
    else if (a == "--json") json = next("--json");
    else if (a == "--btl") btl = next("--btl");
    else {
      std::fprintf(stderr, "bench_ranks: error: unknown flag %s (--floats F, --iters K, --btl NAME, --json FILE)\n",
                   a.c_str());
      return 2;
    }
  }
  if (iters < 1) {
    std::fprintf(stderr, "bench_ranks: error: --iters must be at least 1\n");
    return 2;
  }
  const comm::Launch& l = comm::init_launch();
  const int R = l.size;
  // Validate: integer-valued data, every block where it belongs.
  std::vector<float> mine(floats), all(floats * static_cast<size_t>(R));
  for (size_t e = 0; e < floats; ++e) mine[e] = static_cast<float>((l.rank * 7919 + static_cast<long>(e)) % 100000);
  comm::ranks_allgather(mine.data(), floats * sizeof(float), all.data());
  for (int r = 0; r < R; ++r)
    for (size_t e = 0; e < floats; e += 997)
      if (all[static_cast<size_t>(r) * floats + e] != static_cast<float>((r * 7919 + static_cast<long>(e)) % 100000)) {
        std::fprintf(stderr, "bench_ranks: rank %d: the all-gather is wrong at block %d element %zu\n", l.rank, r, e);
        comm::abort_launch(1);
      }
  std::vector<int32_t> close(static_cast<size_t>(R), 8), acks(static_cast<size_t>(R));
  int32_t ack = 1;
  const long long rr = static_cast<long long>(R) * (R - 1);
  std::vector<Row> rows;
  rows.push_back(time_it("close", close.size() * 4, warmup, iters, (R - 1) + rr, [&] {
    comm::ranks_bcast(close.data(), close.size() * 4, 0);
    comm::ranks_allgather(&ack, sizeof ack, acks.data());
  }));
  rows.push_back(time_it("accumulators", floats * 4, warmup / 4 + 1, std::max(1, iters / 4), rr,
                         [&] { comm::ranks_allgather(mine.data(), floats * sizeof(float), all.data()); }));
  if (l.rank == 0) {
    std::printf("%6s %-8s %-13s %12s %11s %11s %10s\n", "ranks", "btl", "what", "bytes/rank", "median_us", "p99_us",
                "msgs/step");
    for (const Row& r : rows)
      std::printf("%6d %-8s %-13s %12zu %11.1f %11.1f %10lld\n", R, btl.c_str(), r.what.c_str(), r.bytes, r.median_us,
                  r.p99_us, r.messages);
    if (!json.empty()) {
      std::ofstream f(json, std::ios::app);
      for (const Row& r : rows)
        f << "{\"ranks\":" << R << ",\"btl\":\"" << btl << "\",\"what\":\"" << r.what << "\",\"bytes_per_rank\":"
          << r.bytes << ",\"median_us\":" << r.median_us << ",\"p99_us\":" << r.p99_us
          << ",\"messages_per_step\":" << r.messages << "}\n";
    }
  }
  std::fflush(stdout);
  comm::finalize_launch();
  return 0;
}
