// Across processes (issue 15): `mpirun -np R nbsgd train ...` against the one-process
// run of the same flags, bit for bit; the collectives with integer data; a rank that
// dies or hangs stops the others. Every case starts mpirun itself, on host workers,
// with --oversubscribe (CI has 2 cores) and --allow-run-as-root (CI runs as root).
// Each run is small (an MLP, 6 steps): the whole file stays within a few tens of
// seconds on 2 cores.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nets/checkpoint.h"
#include "support/test_support.h"

namespace nbsgd::test {
namespace {

struct Shell {
  int code;
  std::string out;
};

// `cmd` through the shell, stdout and stderr together. `timeout` bounds a hang (it
// is a failure, not a timing assertion: a healthy run ends in seconds).
Shell sh(const std::string& cmd) {
  const std::string full = "timeout -k 5 180 " + cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), out};
}

// Why this machine cannot run the cases, or "".
std::string skip_reason() {
#if !NBSGD_HAVE_MPI
  return "built without MPI (NBSGD_MPI=OFF, or no MPI found at configure time)";
#else
  if (sh("sh -c 'command -v mpirun'").code != 0) return "mpirun is not on PATH (Debian: openmpi-bin)";
  return "";
#endif
}

#define SKIP_WITHOUT_MPI()                          \
  do {                                              \
    const std::string why = skip_reason();          \
    if (!why.empty()) GTEST_SKIP() << why;          \
  } while (0)

// Under the sanitizer build, LeakSanitizer reports Open MPI's own allocations (made
// in plug-ins it unloads at MPI_Finalize, so no suppression can name them): leak
// checking is off for the processes mpirun starts; the rest of ASan stays on, and
// every one-process run here and elsewhere is still leak-checked.
std::string mpirun(int np, const std::string& env = "") {
  std::string x = " -x ASAN_OPTIONS";
  for (const char* v : {"NBSGD_MPI_FAULT", "NBSGD_MPI_TIMEOUT_S"})
    if (env.find(v) != std::string::npos) x += std::string(" -x ") + v;
  return "env ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" " + env +
         " mpirun --oversubscribe --allow-run-as-root -np " + std::to_string(np) + x + " ";
}

// A small learnable data set as numpy.save writes it (1x28x28 uint8 images whose
// bright band depends on the label), once per test program: memory-mapped, so the
// runs start at once (Fashion-MNIST's decompression would be most of their time).
std::string npy(const std::string& descr, const std::vector<int64_t>& shape, const void* data, size_t bytes) {
  std::string sh = "(";
  for (size_t i = 0; i < shape.size(); ++i) sh += (i ? ", " : "") + std::to_string(shape[i]);
  sh += shape.size() == 1 ? ",)" : ")";
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + sh + ", }";
  while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += char(dict.size() & 0xff);
  out += char((dict.size() >> 8) & 0xff);
  return out + dict + std::string(static_cast<const char*>(data), bytes);
}

const std::string& data_dir() {
  static const std::string dir = [] {
    const std::string d = make_temp_dir("mpi-data");
    for (auto [split, n] : {std::pair<const char*, int64_t>{"train", 1024}, {"test", 128}}) {
      std::vector<uint8_t> x(static_cast<size_t>(n) * 784);
      std::vector<int64_t> y(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        y[size_t(i)] = (i * 7) % 10;
        for (int64_t p = 0; p < 784; ++p)
          x[size_t(i * 784 + p)] = uint8_t(p / 28 / 3 == y[size_t(i)] ? 200 + (i + p) % 50 : (i * 13 + p * 5) % 60);
      }
      std::ofstream(d + "/x_" + split + ".npy", std::ios::binary) << npy("|u1", {n, 1, 28, 28}, x.data(), x.size());
      std::ofstream(d + "/y_" + split + ".npy", std::ios::binary) << npy("<i8", {n}, y.data(), y.size() * 8);
    }
    return d;
  }();
  return dir;
}

// Without --steps and --clock, which the cases choose.
std::string base(bool quiet = true) {
  return "train --net mlp --data npy:" + data_dir() + " --batch 32 --split 4" + (quiet ? " --quiet" : "");
}
std::string common() { return base() + " --steps 6 --clock virtual"; }

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Every tensor of the two folders' checkpoints (every replica, momentum included),
// bit for bit.
void expect_same_tensors(const std::string& a_dir, const std::string& b_dir) {
  const LoadedTensors ta = load_safetensors(a_dir + "/checkpoint.safetensors");
  const LoadedTensors tb = load_safetensors(b_dir + "/checkpoint.safetensors");
  ASSERT_EQ(ta.tensors.size(), tb.tensors.size());
  for (const auto& [name, t] : tb.tensors) {
    auto it = ta.tensors.find(name);
    ASSERT_NE(it, ta.tensors.end()) << name;
    ASSERT_EQ(it->second.second.size(), t.second.size()) << name;
    EXPECT_EQ(0, std::memcmp(it->second.second.data(), t.second.data(), t.second.size() * sizeof(float)))
        << "tensor " << name << " differs";
  }
}

// The same losses, windows and times (metrics.jsonl, as text) and the same tensors
// (every replica, momentum included), bit for bit.
void expect_same_run(const std::string& mpi_dir, const std::string& one_dir) {
  const std::string a = slurp(mpi_dir + "/metrics.jsonl"), b = slurp(one_dir + "/metrics.jsonl");
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(a, b) << "metrics.jsonl differ";
  // The summary, but for its wall-clock time: each rank computed only its own
  // workers' mini-batches, and together exactly the ones one process computes.
  nlohmann::json sa = nlohmann::json::parse(slurp(mpi_dir + "/summary.json"));
  nlohmann::json sb = nlohmann::json::parse(slurp(one_dir + "/summary.json"));
  ASSERT_TRUE(sb.contains("computed_minibatches"));
  EXPECT_GT(sb["computed_minibatches"].get<int64_t>(), 0);
  sa.erase("wall_s");
  sb.erase("wall_s");
  EXPECT_EQ(sa.dump(), sb.dump());
  expect_same_tensors(mpi_dir, one_dir);
}

// R ranks x W workers each against one process of R*W workers, same flags.
void compare(int ranks, int per_rank, const std::string& flags, const std::string& tag) {
  const std::string bin = nbsgd_binary();
  const std::string one = make_temp_dir("mpi-one-" + tag), many = make_temp_dir("mpi-many-" + tag);
  Shell r1 = sh(bin + " " + common() + " " + flags + " --host-workers " + std::to_string(ranks * per_rank) +
                " --out " + one);
  ASSERT_EQ(r1.code, 0) << r1.out;
  Shell rn = sh(mpirun(ranks) + bin + " " + common() + " " + flags + " --host-workers " + std::to_string(per_rank) +
                " --out " + many);
  ASSERT_EQ(rn.code, 0) << rn.out;
  expect_same_run(many, one);
}

TEST(Mpi, CollectivesAreExactWithIntegerData) {
  SKIP_WITHOUT_MPI();
  for (int np : {2, 4}) {
    Shell r = sh(mpirun(np) + NBSGD_MPI_COLLECTIVES);
    EXPECT_EQ(r.code, 0) << r.out;
    for (int k = 0; k < np; ++k)
      EXPECT_NE(r.out.find("rank " + std::to_string(k) + " of " + std::to_string(np) + ": collectives exact"),
                std::string::npos)
          << r.out;
  }
}

// Two ranks of two workers: every window, no stragglers. (Under the sanitizers,
// where every run is several times slower, two of them: the memory checks need the
// code paths, which every window shares.)
TEST(Mpi, RingWindowsOnTwoRanksEqualOneProcess) {
  SKIP_WITHOUT_MPI();
  const std::vector<const char*> all{"sync", "fastest", "quorum:12", "deadline:0.3", "adaptive"};
  const std::vector<const char*> windows = NBSGD_SANITIZED ? std::vector<const char*>{"sync", "deadline:0.3"} : all;
  for (const char* w : windows) {
    SCOPED_TRACE(w);
    compare(2, 2, std::string("--window ") + w, std::string("ring-") + (w[0] == 'd' ? "deadline" : w[0] == 'q' ? "quorum" : w));
  }
}

// Four ranks of one worker, with stragglers: windows that cut work off.
TEST(Mpi, RingWithStragglersOnFourRanksEqualsOneProcess) {
  SKIP_WITHOUT_MPI();
  compare(4, 1, "--window fastest --slowdown 1,1,2,4", "ring-fastest-slow");
  compare(4, 1, "--window adaptive --slowdown 1,1,2,4 --lr-scaling none --momentum 0", "ring-adaptive-slow");
}

// D-PSGD (plain SGD: the fused local step) and MATCHA (momentum: the local step,
// then the mix) over four ranks.
TEST(Mpi, GossipOnFourRanksEqualsOneProcess) {
  SKIP_WITHOUT_MPI();
  compare(4, 1, "--exchange dpsgd --window sync --momentum 0 --lr-scaling none --slowdown 1,1,2,4", "dpsgd");
  compare(4, 1, "--exchange matcha --topology complete --window fastest --slowdown 1,1,2,4", "matcha");
}

// Gossip with the neighbourhood window, its trace, and a resumed run: a run of 3
// steps, then --resume to 6, on 2 ranks of 2 workers and in one process.
TEST(Mpi, ResumedNeighbourWindowRunAndItsTraceEqualOneProcess) {
  SKIP_WITHOUT_MPI();
  const std::string flags = base() + " --clock virtual --exchange dpsgd --window fastest --window-scope neighbors "
                                     "--slowdown 1,1,2,4";
  const std::string one = make_temp_dir("mpi-res-one"), many = make_temp_dir("mpi-res-many");
  for (int part = 0; part < 2; ++part) {
    const std::string steps = part == 0 ? " --steps 3" : " --steps 6";
    auto res = [&](const std::string& d) { return part == 0 ? std::string() : " --resume " + d + "/checkpoint.safetensors"; };
    Shell a = sh(nbsgd_binary() + " " + flags + steps + " --host-workers 4 --out " + one + " --trace " + one +
                 "/trace.json" + res(one));
    ASSERT_EQ(a.code, 0) << a.out;
    Shell b = sh(mpirun(2) + nbsgd_binary() + " " + flags + steps + " --host-workers 2 --out " + many + " --trace " +
                 many + "/trace.json" + res(many));
    ASSERT_EQ(b.code, 0) << b.out;
  }
  expect_same_run(many, one);
  EXPECT_EQ(slurp(many + "/trace.json"), slurp(one + "/trace.json"));
}

// A rank killed mid-run: the job ends non-zero, the rank is named, and the last
// complete checkpoint (step 2's) is whole and resumes in one process.
TEST(Mpi, KilledRankEndsTheRunAndKeepsTheCheckpoint) {
  SKIP_WITHOUT_MPI();
  const std::string dir = make_temp_dir("mpi-kill");
  const std::string flags = base() + " --clock virtual --host-workers 1 --checkpoint-every 2 --out " + dir;
  Shell r = sh(mpirun(2, "NBSGD_MPI_FAULT=1:3:kill") + nbsgd_binary() + " " + flags + " --steps 40");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.code, 124) << "a hang: " << r.out;  // timeout(1)'s code
  EXPECT_NE(r.out.find("rank 1"), std::string::npos) << r.out;
  const LoadedTensors t = load_safetensors(dir + "/checkpoint.safetensors");
  EXPECT_TRUE(t.data_checksum_verified);
  Shell again = sh(nbsgd_binary() + " " + base() + " --clock virtual --host-workers 2 --steps 4 --resume " + dir +
                   "/checkpoint.safetensors");
  EXPECT_EQ(again.code, 0) << again.out;
}

// A rank that hangs (SIGSTOP): the others give up after NBSGD_MPI_TIMEOUT_S with
// one line naming it, and every rank ends.
// On both clocks: on the real one, rank 0's coordinator is then also waiting.
TEST(Mpi, HungRankMakesTheOthersStopWithinTheTimeout) {
  SKIP_WITHOUT_MPI();
  for (const char* clock : {"virtual", "real --window fastest"}) {
    SCOPED_TRACE(clock);
    Shell r = sh(mpirun(2, "NBSGD_MPI_FAULT=1:2:stop NBSGD_MPI_TIMEOUT_S=2") + nbsgd_binary() + " " + base() +
                 " --clock " + clock + " --host-workers 1 --steps 40");
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_NE(r.code, 124) << "a hang: " << r.out;
    EXPECT_NE(r.out.find("rank 0: all-gather: no answer from rank 1 within 2 s"), std::string::npos) << r.out;
  }
}

// metrics.jsonl's lines as JSON.
std::vector<nlohmann::json> metric_lines(const std::string& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream f(dir + "/metrics.jsonl");
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The real clock's --window sync decides nothing on the host: across ranks every
// rank plans the step from its copy of rank 0's queue, and the run is one process's,
// bit for bit (losses, counts, every tensor; the times are the real clock's own).
TEST(Mpi, RealClockSyncOnTwoRanksEqualsOneProcess) {
  SKIP_WITHOUT_MPI();
  const std::string flags = base() + " --steps 6 --clock real --window sync";
  const std::string one = make_temp_dir("mpi-real-one"), many = make_temp_dir("mpi-real-many");
  Shell a = sh(nbsgd_binary() + " " + flags + " --host-workers 4 --out " + one);
  ASSERT_EQ(a.code, 0) << a.out;
  Shell b = sh(mpirun(2) + nbsgd_binary() + " " + flags + " --host-workers 2 --out " + many);
  ASSERT_EQ(b.code, 0) << b.out;
  const auto la = metric_lines(one), lb = metric_lines(many);
  ASSERT_EQ(la.size(), 6u);
  ASSERT_EQ(lb.size(), la.size());
  for (size_t i = 0; i < la.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(lb[i]["loss"].dump(), la[i]["loss"].dump());
    EXPECT_EQ(lb[i]["finished"], la[i]["finished"]);
    EXPECT_EQ(lb[i]["samples"], la[i]["samples"]);
  }
  expect_same_tensors(many, one);
}

// The real clock's window across four ranks, with stragglers: rank 0 decides every
// worker's mini-batches; every epoch uses every sample exactly once (the queue is
// rank 0's, the others replay it), and the run ends only if every rank's replicas
// hash the same as rank 0's. A generous deadline with --cap m (5 s; the window
// closes early once every worker has done its m mini-batches) makes the counts
// exact: every worker, on every rank, counts m = 4 mini-batches in every step, and
// 1024 samples are 8 steps of 4 x 32.
TEST(Mpi, RealClockWindowAcrossFourRanksUsesEverySampleOnce) {
  SKIP_WITHOUT_MPI();
  for (const char* w : {"fastest", "deadline:5000 --cap m"}) {
    SCOPED_TRACE(w);
    const std::string dir = make_temp_dir(std::string("mpi-real-") + (w[0] == 'f' ? "fastest" : "deadline"));
    Shell r = sh(mpirun(4) + nbsgd_binary() + " " + base() + " --clock real --epochs 2 --host-workers 1 --window " +
                 w + " --slowdown 1,1,2,4 --out " + dir);
    ASSERT_EQ(r.code, 0) << r.out;
    const nlohmann::json sum = nlohmann::json::parse(slurp(dir + "/summary.json"));
    EXPECT_EQ(sum["samples_per_epoch"], nlohmann::json::array({1024, 1024})) << sum.dump();
    int64_t samples = 0;
    std::vector<int64_t> counted(4, 0);
    for (const auto& line : metric_lines(dir)) {
      samples += line["samples"].get<int64_t>();
      for (size_t k = 0; k < 4; ++k) counted[k] += line["finished"][k].get<int64_t>();
      if (w[0] == 'd') {
        EXPECT_EQ(line["finished"], nlohmann::json::array({4, 4, 4, 4})) << line.dump();
      }
    }
    EXPECT_EQ(samples, 2048);
    if (w[0] == 'd') {
      EXPECT_EQ(metric_lines(dir).size(), 16u);
    }
    // Rank 0's own worker and worker 1 (as fast, on rank 1) count; at the deadline
    // every rank's worker does.
    EXPECT_GT(counted[0], 0);
    EXPECT_GT(counted[1], 0);
    if (w[0] == 'd') {
      for (size_t k = 0; k < 4; ++k) EXPECT_GT(counted[k], 0) << "worker " << k;
    }
  }
}

// A signal that reaches one rank only (NBSGD_MPI_FAULT=1:3:term: rank 1 sends
// itself SIGTERM at step 3): its flag travels in that step's all-gather, so every
// rank stops after the same step. The virtual clock abandons that step on every
// rank, as in one process: rank 0's checkpoint holds steps 0-2, it resumes, and the
// resumed run's losses are an uninterrupted run's, bit for bit. On the real clock
// every rank ends after the step, and rank 0 writes its interrupted checkpoint.
// Nothing waits for the timeout (60 s here; the runs take seconds).
TEST(Mpi, SignalToOneRankStopsEveryRankAtTheSameStep) {
  SKIP_WITHOUT_MPI();
  const std::string dir = make_temp_dir("mpi-term"), one = make_temp_dir("mpi-term-one");
  const std::string env = "NBSGD_MPI_FAULT=1:3:term NBSGD_MPI_TIMEOUT_S=60";
  Shell r = sh(mpirun(2, env) + nbsgd_binary() + " " + base() + " --clock virtual --host-workers 2 --steps 40 --out " + dir);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.code, 124) << "a hang: " << r.out;
  EXPECT_EQ(r.out.find("no answer"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("nothing within"), std::string::npos) << r.out;
  const nlohmann::json sum = nlohmann::json::parse(slurp(dir + "/summary.json"));
  EXPECT_TRUE(sum["interrupted"].get<bool>()) << sum.dump();
  EXPECT_EQ(sum["abandoned_step"], 3) << sum.dump();
  EXPECT_EQ(metric_lines(dir).size(), 3u);
  Shell resumed = sh(nbsgd_binary() + " " + base() + " --clock virtual --host-workers 4 --steps 6 --resume " + dir +
                     "/checkpoint.safetensors --out " + dir + "-resumed");
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  Shell whole = sh(nbsgd_binary() + " " + base() + " --clock virtual --host-workers 4 --steps 6 --out " + one);
  ASSERT_EQ(whole.code, 0) << whole.out;
  const auto a = metric_lines(dir + "-resumed"), b = metric_lines(one);
  ASSERT_EQ(a.size(), 3u);  // steps 3-5, in the resumed run's own folder
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 3; i < 6; ++i) {
    EXPECT_EQ(a[i - 3]["step"], i);
    EXPECT_EQ(a[i - 3]["loss"].dump(), b[i]["loss"].dump()) << "step " << i;
  }

  const std::string real = make_temp_dir("mpi-term-real");
  Shell rr = sh(mpirun(2, env) + nbsgd_binary() + " " + base() +
                " --clock real --window fastest --host-workers 1 --steps 400 --out " + real);
  EXPECT_NE(rr.code, 0) << rr.out;
  EXPECT_NE(rr.code, 124) << "a hang: " << rr.out;
  EXPECT_EQ(rr.out.find("nothing within"), std::string::npos) << rr.out;
  const nlohmann::json sr = nlohmann::json::parse(slurp(real + "/summary.json"));
  EXPECT_TRUE(sr["interrupted"].get<bool>()) << sr.dump();
  EXPECT_EQ(sr["steps"], 4) << sr.dump();  // steps 0-3: the signal's step ends, then every rank stops
  EXPECT_TRUE(load_safetensors(real + "/checkpoint.safetensors").data_checksum_verified);
}

// What does not run across processes yet is refused in one line naming the flag.
TEST(Mpi, RefusesWhatDoesNotRunAcrossProcesses) {
  SKIP_WITHOUT_MPI();
  Shell real = sh(mpirun(2) + nbsgd_binary() + " " + base() + " --steps 2 --host-workers 1 --clock real --exchange dpsgd");
  EXPECT_NE(real.code, 0);
  EXPECT_NE(real.out.find("error: --exchange dpsgd --clock real: under mpirun (2 ranks) gossip runs on the virtual "
                          "clock only"),
            std::string::npos)
      << real.out;
  // Ranks started with different flags (here --seed) would sum different runs.
  Shell seeds = sh(mpirun(2) + "sh -c 'exec " + nbsgd_binary() + " " + base() +
                   " --clock virtual --steps 2 --host-workers 1 --seed $((5 + OMPI_COMM_WORLD_RANK))'");
  EXPECT_NE(seeds.code, 0);
  EXPECT_NE(seeds.out.find("runs another run than rank 0"), std::string::npos) << seeds.out;
  Shell cmp = sh(mpirun(2) + nbsgd_binary() + " predict --workers 4");
  EXPECT_NE(cmp.code, 0);
  EXPECT_NE(cmp.out.find("nbsgd predict runs in one process"), std::string::npos) << cmp.out;
}

// Rank 0 alone writes --out, and the start says how many workers run in total.
TEST(Mpi, OnlyRankZeroWritesAndTheTotalIsPrinted) {
  SKIP_WITHOUT_MPI();
  const std::string dir = make_temp_dir("mpi-out");
  Shell r = sh(mpirun(2) + nbsgd_binary() + " " + base(false) + " --clock virtual --host-workers 2 --steps 2 --out " + dir +
               " --log-every 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("launch: 2 ranks (mpirun), 2 host worker(s) per rank, 4 workers in total"), std::string::npos)
      << r.out;
  // One header and one summary: rank 1 is quiet.
  size_t headers = 0;
  for (size_t p = r.out.find("nbsgd train: net"); p != std::string::npos; p = r.out.find("nbsgd train: net", p + 1))
    ++headers;
  EXPECT_EQ(headers, 1u) << r.out;
}

}  // namespace
}  // namespace nbsgd::test
