#include "runtime/train/ranks.h"

#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "runtime/device/check.h"
#include "runtime/device/comm/launch.h"
#include "runtime/train/exchange.h"
#include "runtime/train/setup.h"

namespace nbsgd::engine {

namespace {

// NBSGD_MPI_FAULT=R:S:kill|stop, read once.
struct Fault {
  int rank = -1;
  int64_t step = -1;
  int signo = 0;
};

Fault fault_from_env() {
  Fault f;
  const char* v = std::getenv("NBSGD_MPI_FAULT");
  if (!v || !*v) return f;
  long r = -1;
  long long st = -1;
  char what[8] = {0};
  if (std::sscanf(v, "%ld:%lld:%7s", &r, &st, what) != 3 ||
      (std::strcmp(what, "kill") && std::strcmp(what, "stop") && std::strcmp(what, "term")))
    throw InputError(fmt::format("NBSGD_MPI_FAULT={}: expected RANK:STEP:kill, RANK:STEP:stop or RANK:STEP:term", v));
  f.rank = static_cast<int>(r);
  f.step = st;
  f.signo = std::strcmp(what, "kill") == 0 ? SIGKILL : std::strcmp(what, "stop") == 0 ? SIGSTOP : SIGTERM;
  return f;
}

uint64_t fnv1a(const void* data, size_t bytes, uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// Every rank must run the same run: the same flags (but the per-rank output ones),
// the same data, the same weights at the first step (a resumed run's included).
void check_same_run(Setup& s, int64_t step) {
  TrainConfig c = s.cfg;
  c.out_dir.clear();
  c.trace.clear();
  c.quiet = false;
  const std::string cfg = config_json(c);
  uint64_t h = fnv1a(cfg.data(), cfg.size());
  const int64_t sizes[] = {s.data.train.n, s.data.test.n, static_cast<int64_t>(s.P), step};
  h = fnv1a(sizes, sizeof sizes, h);
  h = fnv1a(s.data.train.labels.data(), s.data.train.labels.size() * sizeof(int32_t), h);
  const std::vector<float> w0 = s.workers[0]->download_params();
  h = fnv1a(w0.data(), w0.size() * sizeof(float), h);
  std::vector<uint64_t> all(static_cast<size_t>(s.span.ranks));
  comm::ranks_allgather(&h, sizeof h, all.data());
  for (int r = 0; r < s.span.ranks; ++r)
    if (all[static_cast<size_t>(r)] != all[0])
      throw InputError(fmt::format("rank {} runs another run than rank 0 (its flags, data or weights at step {} "
                                   "differ): every rank must run the same command on the same files",
                                   r, step));
  s.span.agreed = true;
}

}  // namespace

void spread_over_ranks(Setup& s, DiscoverOptions& d) {
  const comm::Launch& l = comm::launch();
  const TrainConfig& c = s.cfg;
  const std::string where = fmt::format("under {} ({} ranks)", l.launcher, l.size);
  if (s.devices.backend != Backend::Host)
    throw InputError(fmt::format("--devices: GPU workers {} need the exchange over an NCCL communicator of "
                                 "ranks wired into the engine, which is not built yet; use --host-workers N, "
                                 "or one process",
                                 where));
  if (!s.virtual_clock) {
    if (is_gossip_exchange(c.exchange))
      throw InputError(fmt::format("--exchange {} --clock real: {} gossip runs on the virtual clock only (its "
                                   "exchange across ranks is an all-gather, a barrier the gossip baselines must "
                                   "not have): use --clock virtual, or one process",
                                   c.exchange, where));
    if (!c.trace.empty())
      throw InputError(fmt::format("--trace: {} the real clock's trace is written in one process only; use "
                                   "--clock virtual, or one process",
                                   where));
    if (!comm::ranks_threads_multiple())
      throw InputError(fmt::format("--clock real: {} the window across ranks needs MPI_THREAD_MULTIPLE, which "
                                   "this MPI does not provide: use --clock virtual",
                                   where));
  }
  if (c.exchange == "adpsgd")
    throw InputError(fmt::format("--exchange adpsgd: runs in one process only, not {}", where));
  if (!c.devices.empty())
    throw InputError(fmt::format("--devices {}: {} host workers are --host-workers N per rank", c.devices, where));
  const int per = c.host_workers > 0 ? c.host_workers : 1;
  d.host_workers = per * l.size;
  s.devices = discover_devices(d);
  s.span.rank = l.rank;
  s.span.ranks = l.size;
  s.span.first = l.rank * per;
  s.span.count = per;
}

void share_accumulators(Setup& s, const std::vector<const Event*>& ready, int64_t step) {
  const RankSpan& sp = s.span;
  if (!sp.spans()) return;
  static const Fault fault = fault_from_env();
  if (fault.rank == sp.rank && fault.step == step) {
    std::fprintf(stderr, "nbsgd: rank %d: NBSGD_MPI_FAULT: %s at step %lld\n", sp.rank,
                 fault.signo == SIGKILL ? "SIGKILL" : fault.signo == SIGSTOP ? "SIGSTOP" : "SIGTERM",
                 static_cast<long long>(step));
    std::fflush(stderr);
    std::raise(fault.signo);
  }
  NBSGD_CHECK(s.devices.backend == Backend::Host, "share_accumulators: host workers only");
  if (!s.span.agreed) check_same_run(s, step);
  const size_t floats = s.P + 2;
  // Each rank's block: its workers' accumulators, then its signal flag.
  const size_t block = static_cast<size_t>(sp.count) * floats + 1;
  std::vector<float> mine(block);
  mine[block - 1] = sp.signal && sp.signal->load() ? 1.0f : 0.0f;
  for (int k = 0; k < sp.count; ++k) {
    const int w = sp.first + k;
    if (const Event* e = ready[static_cast<size_t>(w)]) e->synchronize();
    Worker& wk = *s.workers[static_cast<size_t>(w)];
    // The real clock: the accumulator is complete once its last writer is; a
    // cancelled mini-batch may still run, and no one waits for it here.
    if (s.virtual_clock) wk.ctx().compute().synchronize();
    std::memcpy(mine.data() + static_cast<size_t>(k) * floats, wk.accumulator(step), floats * sizeof(float));
  }
  std::vector<float> all(block * static_cast<size_t>(sp.ranks));
  comm::ranks_allgather(mine.data(), block * sizeof(float), all.data());
  for (int r = 0; r < sp.ranks; ++r)
    if (all[static_cast<size_t>(r) * block + block - 1] != 0.0f) s.span.stop_all.store(true);
  // Every worker's block is its owner's (rank w / count, slot w % count); a remote
  // worker computes nothing here; its accumulator is free once its update of two
  // steps back is done (the virtual clock's has completed already).
  for (int w = 0; w < s.n(); ++w) {
    if (sp.owns(w)) continue;
    Worker& wk = *s.workers[static_cast<size_t>(w)];
    wk.ctx().comm().synchronize();
    wk.accumulator_free(step).synchronize();  // the update of step-2 has zeroed it (the real clock runs ahead)
    const size_t at = static_cast<size_t>(w / sp.count) * block + static_cast<size_t>(w % sp.count) * floats;
    std::memcpy(wk.accumulator(step), all.data() + at, floats * sizeof(float));
  }
}

}  // namespace nbsgd::engine
