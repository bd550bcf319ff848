// The launch across processes (issue 15): `mpirun -np N nbsgd train ...` or
// `srun -n N nbsgd train ...` starts one nbsgd per rank, and MPI (Open MPI in this
// project) carries what crosses processes. One process that no launcher started
// never calls MPI at all, so a plain `nbsgd train` is unchanged, and a build
// without MPI (NBSGD_MPI=OFF) still runs as one process.
//
// The launch is process-wide state because MPI's is: MPI_Init once per process,
// MPI_Finalize once. main() calls init_launch() before a command runs.
//
// Every collective here is made by one thread per rank (the run loop's), in the
// same order on every rank, and none waits without bound: a rank that died or hangs
// makes the others stop within rank_timeout_s() (NBSGD_MPI_TIMEOUT_S, default 120 s)
// with one line naming it, then MPI_Abort ends every rank. mpirun itself also ends
// the job at once when a rank is killed; srun does not (without
// --kill-on-bad-exit), so the timeout is what bounds a run under srun.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace nbsgd::comm {

struct Launch {
  int rank = 0, size = 1;              // this process among all of the launch
  int local_rank = 0, local_size = 1;  // among the ranks on this node
  std::string launcher;                // "mpirun", "srun", "pmi", or "" (one process)
  bool mpi = false;                    // MPI was initialised (a launcher started us)
  bool spans() const { return size > 1; }
  // "rank 1 of 4 (mpirun, local rank 1 of 4)", or "one process".
  std::string describe() const;
};

// What the environment says a launcher set, without calling MPI:
//   mpirun (Open MPI): OMPI_COMM_WORLD_SIZE, _RANK, _LOCAL_RANK, _LOCAL_SIZE;
//   srun:  SLURM_STEP_NUM_TASKS with SLURM_PROCID, SLURM_LOCALID (a batch script
//          has SLURM_PROCID but no step, and is one process);
//   PMI (MPICH's Hydra, PMIx): PMI_SIZE and PMI_RANK, or PMIX_RANK.
// `env` is getenv by default (tests pass their own).
using EnvFn = std::function<const char*(const char*)>;
Launch detect_launch(const EnvFn& env = {});

// Once per process, from main(): detect_launch(), then MPI_Init_thread when a
// launcher started us (rank and size then come from MPI_COMM_WORLD, the local rank
// from the environment or MPI_Comm_split_type). Throws InputError when a launcher
// started several ranks of a build without MPI.
const Launch& init_launch();
const Launch& launch();  // what init_launch() found; one process before it
void finalize_launch();  // MPI_Finalize, when MPI was initialised
// Ends every rank at once (MPI_Abort), or this process (std::exit) in one process.
[[noreturn]] void abort_launch(int code);

// The bound on any wait for another rank, in seconds: NBSGD_MPI_TIMEOUT_S, default 120.
double rank_timeout_s();

// ---- collectives over every rank (MPI_COMM_WORLD's copy), bounded as above.
// `all` receives size() blocks of `bytes`, rank r's at r * bytes; `mine` goes to
// every other rank by point-to-point messages (so a timeout can name the ranks
// that sent nothing). In one process, a copy.
void ranks_allgather(const void* mine, size_t bytes, void* all);
// The sum of every rank's v, added in rank order.
int64_t ranks_sum(int64_t v);
// Rank `root`'s bytes to every rank.
void ranks_bcast(void* data, size_t bytes, int root);
// Point-to-point messages sent so far by this rank (for the bench), ranks_send's included.
int64_t ranks_messages_sent();

// ---- messages between two ranks: the real clock's window across ranks
// (real_driver.cpp). They travel on a communicator of their own, so no collective
// ever matches them; any thread may send or receive (MPI_THREAD_MULTIPLE).
// Whether MPI gave MPI_THREAD_MULTIPLE (true in one process).
bool ranks_threads_multiple();
// `bytes` to rank `dest` with `tag` (>= 0), waiting until it is sent, bounded by
// rank_timeout_s() (then every rank stops with one line naming `what`).
void ranks_send(int dest, int tag, const void* data, size_t bytes, const char* what);
// The next message with `tag` from rank `src` (< 0: any rank), into `out`; returns
// its source. Waits at most timeout_s (0: rank_timeout_s(); < 0: without bound),
// then stops every rank with one line naming `what` and the rank; returns -1 when
// `cancel` is set first.
int ranks_recv(int src, int tag, std::vector<unsigned char>& out, const char* what, double timeout_s = 0,
               const std::atomic<bool>* cancel = nullptr);
// One line (naming this rank), then every rank ends (MPI_Abort); in one process,
// throws InputError(line).
[[noreturn]] void ranks_fail(const std::string& line);

}  // namespace nbsgd::comm
