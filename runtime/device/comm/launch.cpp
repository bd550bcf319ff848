// The launch across processes: detection, MPI's lifetime, and bounded collectives.
#include "runtime/device/comm/launch.h"

#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "runtime/device/check.h"

#if NBSGD_HAVE_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: no C++ bindings (deprecated, and -Wcast-function-type)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace nbsgd::comm {

namespace {

Launch g_launch;  // MPI's state is process-wide: so is this (launch.h)
bool g_init = false;
int64_t g_sent = 0;                             // the collectives' (one thread)
std::atomic<int64_t> g_messages_sent_p2p{0};  // ranks_send's (any thread)

bool parse_int(const char* s, int& out) {
  if (!s || !*s) return false;
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (*end != '\0' || v < 0 || v > INT_MAX) return false;
  out = static_cast<int>(v);
  return true;
}

#if NBSGD_HAVE_MPI
MPI_Comm g_comm = MPI_COMM_NULL;  // a copy of MPI_COMM_WORLD: our messages only
MPI_Comm g_msgs = MPI_COMM_NULL;  // another: ranks_send/ranks_recv, never matched by a collective
int g_thread_level = 0;           // what MPI_Init_thread provided

std::string mpi_error(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(buf, static_cast<size_t>(len));
}

// One line, then every rank ends: a rank that cannot finish a collective must not
// leave the others waiting.
[[noreturn]] void die(const std::string& line) {
  std::fprintf(stderr, "nbsgd: error: rank %d: %s\n", g_launch.rank, line.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

void check_mpi(int rc, const char* call) {
  if (rc != MPI_SUCCESS) die(fmt::format("{} failed: {}", call, mpi_error(rc)));
}

// Waits for every request, polling (a blocking MPI_Waitall could wait forever for
// a dead rank). peer[k] is request k's other rank. Spins briefly, then sleeps in
// small steps: on an oversubscribed box (the CI's 2 cores, 4 ranks) a spinning
// rank would steal the time of the rank it waits for.
void wait_bounded(std::vector<MPI_Request>& req, const std::vector<int>& peer, const char* what) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const double limit = rank_timeout_s();
  std::vector<int> done(req.size(), 0);
  size_t left = req.size();
  for (long spin = 0; left > 0; ++spin) {
    for (size_t k = 0; k < req.size(); ++k) {
      if (done[k]) continue;
      int flag = 0;
      const int rc = MPI_Test(&req[k], &flag, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) die(fmt::format("{}: the message with rank {} failed: {}", what, peer[k], mpi_error(rc)));
      if (flag) {
        done[k] = 1;
        --left;
      }
    }
    if (left == 0) break;
    if (spin < 200) {
      sched_yield();
      continue;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    if (std::chrono::duration<double>(clock::now() - t0).count() > limit) {
      std::string missing;
      for (size_t k = 0; k < req.size(); ++k)
        if (!done[k] && missing.find(fmt::format(" {},", peer[k])) == std::string::npos)
          missing += fmt::format(" {},", peer[k]);
      missing.pop_back();
      die(fmt::format("{}: no answer from rank{} within {:g} s (NBSGD_MPI_TIMEOUT_S): it died or hangs; "
                      "stopping every rank (the last complete checkpoint is kept)",
                      what, missing, limit));
    }
  }
}
#endif

}  // namespace

std::string Launch::describe() const {
  if (size <= 1 && launcher.empty()) return "one process";
  return fmt::format("rank {} of {} ({}, local rank {} of {})", rank, size, launcher.empty() ? "?" : launcher,
                     local_rank, local_size);
}

Launch detect_launch(const EnvFn& env_in) {
  const EnvFn env = env_in ? env_in : EnvFn([](const char* k) -> const char* { return std::getenv(k); });
  Launch l;
  int size = 0, rank = 0;
  if (parse_int(env("OMPI_COMM_WORLD_SIZE"), size) && parse_int(env("OMPI_COMM_WORLD_RANK"), rank)) {
    l.launcher = "mpirun";
    parse_int(env("OMPI_COMM_WORLD_LOCAL_RANK"), l.local_rank);
    if (!parse_int(env("OMPI_COMM_WORLD_LOCAL_SIZE"), l.local_size)) l.local_size = size;
  } else if (env("SLURM_STEP_NUM_TASKS") && parse_int(env("SLURM_STEP_NUM_TASKS"), size) &&
             parse_int(env("SLURM_PROCID"), rank)) {
    l.launcher = "srun";
    parse_int(env("SLURM_LOCALID"), l.local_rank);
    l.local_size = size;  // refined by MPI_Comm_split_type once MPI runs
  } else if (parse_int(env("PMI_SIZE"), size) && parse_int(env("PMI_RANK"), rank)) {
    l.launcher = "pmi";
    l.local_size = size;
  } else if (parse_int(env("PMIX_RANK"), rank)) {
    l.launcher = "pmi";
    size = rank + 1;  // PMIx does not export the size: MPI gives it
    l.local_size = size;
  } else {
    return l;
  }
  if (size < 1) size = 1;
  l.size = size;
  l.rank = rank;
  if (l.local_rank >= l.local_size) l.local_size = l.local_rank + 1;
  return l;
}

const Launch& init_launch() {
  if (g_init) return g_launch;
  g_init = true;
  Launch l = detect_launch();
  if (l.launcher.empty()) return g_launch;
#if NBSGD_HAVE_MPI
  int provided = 0;
  // MULTIPLE: the real clock's window (real_driver.cpp) sends from its issuer
  // threads and completion notices while the run loop's thread gathers.
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
    throw InputError("MPI_Init_thread failed under " + l.launcher);
  g_thread_level = provided;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_dup(MPI_COMM_WORLD, &g_comm);
  MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN);
  MPI_Comm_dup(MPI_COMM_WORLD, &g_msgs);
  MPI_Comm_set_errhandler(g_msgs, MPI_ERRORS_RETURN);
  MPI_Comm_rank(g_comm, &l.rank);
  MPI_Comm_size(g_comm, &l.size);
  // The node's ranks from MPI when the launcher did not say (PMI, PMIx).
  MPI_Comm node;
  if (MPI_Comm_split_type(g_comm, MPI_COMM_TYPE_SHARED, l.rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    int lr = 0, ls = 1;
    MPI_Comm_rank(node, &lr);
    MPI_Comm_size(node, &ls);
    if (l.launcher != "mpirun" && l.launcher != "srun") l.local_rank = lr;
    l.local_size = ls;
    MPI_Comm_free(&node);
  }
  l.mpi = true;
  g_launch = l;
#else
  if (l.size > 1)
    throw InputError(fmt::format("started by {} as rank {} of {}, but this nbsgd was built without MPI "
                                 "(NBSGD_MPI=OFF, or no MPI found): rebuild with libopenmpi-dev installed",
                                 l.launcher, l.rank, l.size));
  g_launch = l;
#endif
  return g_launch;
}

const Launch& launch() { return g_launch; }

void finalize_launch() {
#if NBSGD_HAVE_MPI
  if (g_launch.mpi) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
      MPI_Comm_free(&g_comm);
      MPI_Comm_free(&g_msgs);
      MPI_Finalize();
    }
  }
#endif
}

void abort_launch(int code) {
  std::fflush(stderr);
  std::fflush(stdout);
#if NBSGD_HAVE_MPI
  if (g_launch.mpi && g_launch.size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

double rank_timeout_s() {
  const char* v = std::getenv("NBSGD_MPI_TIMEOUT_S");
  if (!v || !*v) return 120.0;
  char* end = nullptr;
  const double t = std::strtod(v, &end);
  if (*end != '\0' || !(t > 0)) throw InputError(fmt::format("NBSGD_MPI_TIMEOUT_S={}: expected seconds > 0", v));
  return t;
}

void ranks_allgather(const void* mine, size_t bytes, void* all) {
  const Launch& l = g_launch;
  auto* out = static_cast<unsigned char*>(all);
  if (bytes > 0) std::memmove(out + static_cast<size_t>(l.rank) * bytes, mine, bytes);
  if (l.size <= 1 || bytes == 0) return;
#if NBSGD_HAVE_MPI
  NBSGD_CHECK(bytes <= static_cast<size_t>(INT_MAX), "ranks_allgather: a block of more than 2 GiB");
  std::vector<MPI_Request> req;
  std::vector<int> peer;
  const int n = static_cast<int>(bytes);
  for (int p = 0; p < l.size; ++p) {
    if (p == l.rank) continue;
    req.emplace_back();
    peer.push_back(p);
    check_mpi(MPI_Irecv(out + static_cast<size_t>(p) * bytes, n, MPI_BYTE, p, 1, g_comm, &req.back()), "MPI_Irecv");
  }
  for (int p = 0; p < l.size; ++p) {
    if (p == l.rank) continue;
    req.emplace_back();
    peer.push_back(p);
    check_mpi(MPI_Isend(mine, n, MPI_BYTE, p, 1, g_comm, &req.back()), "MPI_Isend");
    ++g_sent;
  }
  wait_bounded(req, peer, "all-gather");
#else
  NBSGD_FAIL("ranks_allgather: several ranks in a build without MPI");
#endif
}

int64_t ranks_sum(int64_t v) {
  std::vector<int64_t> all(static_cast<size_t>(g_launch.size));
  ranks_allgather(&v, sizeof v, all.data());
  int64_t s = 0;
  for (int64_t x : all) s += x;
  return s;
}

void ranks_bcast(void* data, size_t bytes, int root) {
  const Launch& l = g_launch;
  NBSGD_CHECK(root >= 0 && root < l.size, "ranks_bcast: no such root rank");
  if (l.size <= 1 || bytes == 0) return;
#if NBSGD_HAVE_MPI
  NBSGD_CHECK(bytes <= static_cast<size_t>(INT_MAX), "ranks_bcast: more than 2 GiB");
  std::vector<MPI_Request> req;
  std::vector<int> peer;
  const int n = static_cast<int>(bytes);
  if (l.rank == root) {
    for (int p = 0; p < l.size; ++p) {
      if (p == root) continue;
      req.emplace_back();
      peer.push_back(p);
      check_mpi(MPI_Isend(data, n, MPI_BYTE, p, 2, g_comm, &req.back()), "MPI_Isend");
      ++g_sent;
    }
  } else {
    req.emplace_back();
    peer.push_back(root);
    check_mpi(MPI_Irecv(data, n, MPI_BYTE, root, 2, g_comm, &req.back()), "MPI_Irecv");
  }
  wait_bounded(req, peer, "broadcast");
#else
  NBSGD_FAIL("ranks_bcast: several ranks in a build without MPI");
#endif
}

int64_t ranks_messages_sent() { return g_sent + g_messages_sent_p2p.load(); }

bool ranks_threads_multiple() {
#if NBSGD_HAVE_MPI
  return !g_launch.mpi || g_thread_level >= MPI_THREAD_MULTIPLE;
#else
  return true;
#endif
}

void ranks_fail(const std::string& line) {
#if NBSGD_HAVE_MPI
  if (g_launch.mpi) die(line);
#endif
  throw InputError(line);
}

void ranks_send(int dest, int tag, const void* data, size_t bytes, const char* what) {
#if NBSGD_HAVE_MPI
  NBSGD_CHECK(g_launch.mpi && dest >= 0 && dest < g_launch.size && dest != g_launch.rank, "ranks_send: no such peer");
  NBSGD_CHECK(bytes <= static_cast<size_t>(INT_MAX) && tag >= 0, "ranks_send: a message of more than 2 GiB");
  std::vector<MPI_Request> req(1);
  check_mpi(MPI_Isend(data, static_cast<int>(bytes), MPI_BYTE, dest, tag, g_msgs, &req[0]), "MPI_Isend");
  g_messages_sent_p2p.fetch_add(1, std::memory_order_relaxed);
  wait_bounded(req, {dest}, what);
#else
  (void)dest, (void)tag, (void)data, (void)bytes, (void)what;
  NBSGD_FAIL("ranks_send: several ranks in a build without MPI");
#endif
}

int ranks_recv(int src, int tag, std::vector<unsigned char>& out, const char* what, double timeout_s,
               const std::atomic<bool>* cancel) {
#if NBSGD_HAVE_MPI
  NBSGD_CHECK(g_launch.mpi, "ranks_recv: one process");
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const double limit = timeout_s == 0 ? rank_timeout_s() : timeout_s;
  // A matched probe (MPI_Improbe + MPI_Mrecv): another thread's probe cannot take
  // the message in between, as a plain MPI_Iprobe then MPI_Recv could.
  for (long spin = 0;; ++spin) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    check_mpi(MPI_Improbe(src < 0 ? MPI_ANY_SOURCE : src, tag, g_msgs, &flag, &msg, &st), "MPI_Improbe");
    if (flag) {
      int n = 0;
      check_mpi(MPI_Get_count(&st, MPI_BYTE, &n), "MPI_Get_count");
      out.resize(static_cast<size_t>(n));
      check_mpi(MPI_Mrecv(out.data(), n, MPI_BYTE, &msg, MPI_STATUS_IGNORE), "MPI_Mrecv");
      return st.MPI_SOURCE;
    }
    if (cancel && cancel->load()) return -1;
    if (spin < 200) {
      sched_yield();
      continue;
    }
    // Then 50 us naps: a close waits at most that long to be seen, at ~1 us a look.
    std::this_thread::sleep_for(std::chrono::microseconds(spin < 2000 ? 20 : 50));
    if (limit > 0 && std::chrono::duration<double>(clock::now() - t0).count() > limit)
      die(fmt::format("{}: no message from {} within {:g} s (NBSGD_MPI_TIMEOUT_S): it died or hangs; "
                      "stopping every rank (the last complete checkpoint is kept)",
                      what, src < 0 ? std::string("any rank") : fmt::format("rank {}", src), limit));
  }
#else
  (void)src, (void)tag, (void)out, (void)what, (void)timeout_s, (void)cancel;
  NBSGD_FAIL("ranks_recv: several ranks in a build without MPI");
#endif
}

}  // namespace nbsgd::comm
