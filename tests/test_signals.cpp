// Signals, as Slurm, `timeout`, containers and a user's Ctrl-C send them: part of
// the bad-input suite (ctest -R BadInput). SIGINT, SIGTERM and SIGHUP stop a run
// wherever they arrive: start-up, a long step, evaluation, a checkpoint write.
// The run writes its checkpoint and a summary marked interrupted and exits with
// 128 + the signal; the folder is then continued with --resume. A second signal
// ends the process at once, and the last complete checkpoint is whole.
//
// No test asserts on time. The runs stopped here take an hour or more when the
// signal is not acted on (a stall or a window of an hour, an evaluation of
// minutes), so a run still alive long after its signal is a hang: wait_for_exit
// kills it and the test fails.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "support/test_support.h"

namespace nbsgd::test {
namespace {

namespace fs = std::filesystem;

constexpr int kHang_s = 60;

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The step a checkpoint was written at, from its header's metadata.
int checkpoint_step(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  return std::stoi(nlohmann::json::parse(header)["__metadata__"]["nbsgd.step"].get<std::string>());
}

// Polls (without a time limit of its own: the ctest timeout is the backstop) until
// `ready` holds or the child has ended.
template <class F>
bool wait_until(pid_t pid, F ready) {
  for (;;) {
    if (ready()) return true;
    if (kill(pid, 0) != 0) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// A stopped run's folder: the summary marked interrupted, as many steps logged as
// it took, a checkpoint at that step, no temporary file; --resume continues it.
void expect_interrupted_folder(const std::string& dir, const std::string& resume_args) {
  ASSERT_TRUE(fs::exists(dir + "/summary.json"));
  const auto s = read_json(dir + "/summary.json");
  EXPECT_EQ(s["interrupted"], true);
  const int k = s["steps"];
  EXPECT_EQ(read_metrics(dir).size(), size_t(k));
  ASSERT_TRUE(fs::exists(dir + "/checkpoint.safetensors"));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  const CommandResult r = run_nbsgd(resume_args + " --steps " + std::to_string(k + 2) + " --out " + dir +
                                    " --resume " + dir + "/checkpoint.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto m = read_metrics(dir);
  ASSERT_EQ(m.size(), size_t(k + 2));
  for (int i = 0; i < k + 2; ++i) EXPECT_EQ(m[i]["step"], i);
}

const std::string kMlp = "train --net mlp --host-workers 2 --train-limit 512 --test-limit 64 --seed 4 --quiet";

TEST(BadInputSignal, TermAndHupStopARunAsCtrlCDoes) {
  for (int sig : {SIGTERM, SIGHUP, SIGINT}) {
    SCOPED_TRACE(sig);
    const std::string dir = make_temp_dir("sig-run");
    const pid_t pid = spawn_nbsgd(kMlp + " --steps 100000000 --out " + dir);
    ASSERT_TRUE(wait_until(pid, [&] { return read_metrics(dir).size() >= 3; }));
    ASSERT_EQ(kill(pid, sig), 0);
    EXPECT_EQ(wait_for_exit(pid, kHang_s), 128 + sig);
    expect_interrupted_folder(dir, kMlp);
    fs::remove_all(dir);
  }
}

// Start-up (synthetic CIFAR is generated: seconds): the signal is seen once set-up
// ends, before the first step; the folder holds a step-0 checkpoint to continue.
TEST(BadInputSignal, DuringStartUp) {
  const std::string args = "train --net resnet20 --data synthetic-cifar --host-workers 1 --train-limit 8 --test-limit 8 "
                           "--batch 2 --split 1";
  const std::string work = make_temp_dir("sig-start");
  const std::string dir = work + "/out", log = work + "/log";
  const pid_t pid = spawn_nbsgd(args + " --steps 100000000 --log-every 100000 --out " + dir, log);
  ASSERT_TRUE(wait_until(pid, [&] { return catches_signal(pid, SIGTERM); }));
  // The handler is there before set-up ends: the config block, printed when it has,
  // is not out yet.
  EXPECT_EQ(read_text(log).find("nbsgd train: net"), std::string::npos) << read_text(log);
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  EXPECT_EQ(wait_for_exit(pid, kHang_s), 128 + SIGTERM);
  EXPECT_EQ(read_json(dir + "/summary.json")["steps"], 0);  // set-up takes seconds; the signal came in it
  expect_interrupted_folder(dir, args + " --quiet");
  fs::remove_all(work);
}

// A profile that stalls worker 1 for an hour before every step.
std::string stall_profile(const std::string& dir) {
  std::ofstream(dir + "/stall.toml") << "[device.1]\nstall = { probability = 1, distribution = \"constant\", "
                                        "value_ms = 3600000 }\n";
  return dir + "/stall.toml";
}

// The real clock's window in flight closes at once: a deadline window of 10
// minutes with worker 1 stalled for an hour. The step closes with what worker 0
// finished, is counted, and the stall is cut short.
TEST(BadInputSignal, DuringALongStepTheWindowClosesAtOnce) {
  const std::string work = make_temp_dir("sig-step");
  const std::string dir = work + "/out", log = work + "/log";
  const std::string args = "train --net mlp --host-workers 2 --train-limit 512 --test-limit 64 --clock real "
                           "--window deadline:600000 --cap 8 --profile " + stall_profile(work);
  const pid_t pid = spawn_nbsgd(args + " --steps 5 --out " + dir, log);
  // The config block is printed just before the run loop starts its first step.
  ASSERT_TRUE(wait_until(pid, [&] { return read_text(log).find("devices (") != std::string::npos; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // inside the first step's window
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_EQ(wait_for_exit(pid, kHang_s), 128 + SIGTERM) << read_text(log);
  const auto s = read_json(dir + "/summary.json");
  EXPECT_EQ(s["interrupted"], true);
  EXPECT_EQ(s["steps"], 1);
  EXPECT_GE(s["abandoned_holds"].get<int>(), 1);
  EXPECT_NE(read_text(log).find("interrupted: checkpoint and summary written"), std::string::npos);
  fs::remove_all(work);
}

// --window sync on the real clock enqueues steps without waiting; the trainer then
// waits for a step that worker 1's hour-long stall holds: the signal ends the wait.
TEST(BadInputSignal, WhileWaitingForAStalledWorker) {
  const std::string work = make_temp_dir("sig-sync");
  const std::string dir = work + "/out", log = work + "/log";
  const std::string args = "train --net mlp --host-workers 2 --train-limit 512 --test-limit 64 --clock real "
                           "--window sync --profile " + stall_profile(work);
  const pid_t pid = spawn_nbsgd(args + " --steps 1000 --out " + dir, log);
  ASSERT_TRUE(wait_until(pid, [&] { return read_text(log).find("devices (") != std::string::npos; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_EQ(wait_for_exit(pid, kHang_s), 128 + SIGTERM) << read_text(log);
  const auto s = read_json(dir + "/summary.json");
  EXPECT_EQ(s["interrupted"], true);
  EXPECT_EQ(read_metrics(dir).size(), size_t(s["steps"].get<int>()));
  fs::remove_all(work);
}

// The final evaluation (10,000 test images through ResNet-18 on one host worker:
// many minutes) is cut short: the summary says so, and the exit code is the signal's.
TEST(BadInputSignal, DuringTheFinalEvaluation) {
  const std::string dir = make_temp_dir("sig-eval");
  const pid_t pid = spawn_nbsgd("train --net resnet18-cifar --data synthetic-cifar --host-workers 1 --train-limit 8 --batch 2 "
                                "--split 1 --steps 1 --test-limit 10000 --quiet --out " + dir);
  // The last step is logged, then the run evaluates.
  ASSERT_TRUE(wait_until(pid, [&] { return read_metrics(dir).size() >= 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_EQ(wait_for_exit(pid, kHang_s), 128 + SIGTERM);
  const auto s = read_json(dir + "/summary.json");
  EXPECT_EQ(s["interrupted"], true);
  EXPECT_TRUE(s["test_loss"].is_null());
  EXPECT_NE(s["evaluated"].get<std::string>().find("interrupted"), std::string::npos) << s["evaluated"];
  EXPECT_TRUE(fs::exists(dir + "/checkpoint.safetensors"));
  fs::remove_all(dir);
}

// A checkpoint every step of a small net: most of a step's time is its checkpoint
// write, so signals at random moments land in writes. One signal: the run stops and
// the folder continues. Two in a row: the process ends at once (the second's exit
// code), and the checkpoint on disk is whole and verified: --resume takes it.
TEST(BadInputSignal, DuringCheckpointWritesAndASecondSignal) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 4; ++trial) {
    SCOPED_TRACE(trial);
    const bool twice = trial % 2 == 1;
    const std::string dir = make_temp_dir("sig-ck");
    const pid_t pid = spawn_nbsgd(kMlp + " --steps 100000000 --checkpoint-every 1 --out " + dir);
    ASSERT_TRUE(wait_until(pid, [&] { return fs::exists(dir + "/checkpoint.safetensors") && read_metrics(dir).size() >= 2; }));
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 20000)(rng)));
    ASSERT_EQ(kill(pid, SIGTERM), 0);
    if (twice) {
      std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(100, 3000)(rng)));
      kill(pid, SIGTERM);  // the process may have ended already
    }
    EXPECT_EQ(wait_for_exit(pid, kHang_s), 128 + SIGTERM);
    if (!twice) {
      expect_interrupted_folder(dir, kMlp);
    } else {
      const int k = checkpoint_step(dir + "/checkpoint.safetensors");
      const CommandResult r = run_nbsgd(kMlp + " --out " + dir + " --resume " + dir +
                                        "/checkpoint.safetensors --steps " + std::to_string(k + 2));
      EXPECT_EQ(r.exit_code, 0) << r.output;
      const auto m = read_metrics(dir);
      ASSERT_EQ(m.size(), size_t(k + 2));
      for (int i = 0; i < k + 2; ++i) ASSERT_EQ(m[i]["step"], i);
    }
    fs::remove_all(dir);
  }
}

// Two signals delivered back to back (both pending while the process is stopped):
// the second ends it at once, before any summary is written, with the first's
// exit code; the checkpoint on disk is whole, and the folder continues.
TEST(BadInputSignal, ASecondSignalEndsTheProcessAtOnce) {
  const std::string dir = make_temp_dir("sig-two");
  const pid_t pid = spawn_nbsgd(kMlp + " --steps 100000000 --checkpoint-every 3 --out " + dir);
  ASSERT_TRUE(wait_until(pid, [&] { return fs::exists(dir + "/checkpoint.safetensors") && read_metrics(dir).size() >= 4; }));
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_EQ(kill(pid, SIGHUP), 0);
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  const int code = wait_for_exit(pid, kHang_s);
  EXPECT_TRUE(code == 128 + SIGHUP || code == 128 + SIGTERM) << code;
  EXPECT_FALSE(fs::exists(dir + "/summary.json"));  // it did not run on to the end of its stop
  const int k = checkpoint_step(dir + "/checkpoint.safetensors");
  const CommandResult r = run_nbsgd(kMlp + " --out " + dir + " --resume " + dir + "/checkpoint.safetensors --steps " +
                                    std::to_string(k + 2));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto m = read_metrics(dir);
  ASSERT_EQ(m.size(), size_t(k + 2));
  for (int i = 0; i < k + 2; ++i) EXPECT_EQ(m[i]["step"], i);
  fs::remove_all(dir);
}

// compare: SIGTERM stops the whole comparison: the run in flight stops, the next
// does not start, compare.json says interrupted, the exit code is 143.
TEST(BadInputSignal, CompareStopsTheWholeComparison) {
  const std::string dir = make_temp_dir("sig-cmp");
  const pid_t pid = spawn_nbsgd("compare --net mlp --host-workers 2 --train-limit 512 --test-limit 64 --steps 100000000 "
                                "--quiet --runs ring/sync,ring/fastest --out " + dir);
  ASSERT_TRUE(wait_until(pid, [&] { return read_metrics(dir + "/ring_sync").size() >= 2; }));
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_EQ(wait_for_exit(pid, kHang_s), 128 + SIGTERM);
  const auto j = read_json(dir + "/compare.json");
  EXPECT_EQ(j["interrupted"], true);
  EXPECT_EQ(read_json(dir + "/ring_sync/summary.json")["interrupted"], true);
  EXPECT_FALSE(fs::exists(dir + "/ring_fastest/metrics.jsonl"));
  fs::remove_all(dir);
}

// The virtual clock runs a step's computation after its window is decided: a
// signal during it abandons the step (its queued mini-batches skipped, the epoch
// queue, the accumulators and the BatchNorm statistics put back), so the run stops
// without waiting for the step, and its checkpoint, at the step before, continues
// exactly as the uninterrupted run. Steps here take seconds (a large batch); the
// signal follows the first step's line in metrics.jsonl by milliseconds.
TEST(BadInputSignal, DuringAVirtualStepTheStepIsAbandonedAndTheRunContinuesExactly) {
  const std::string work = make_temp_dir("sig-vstep");
  // A small net with BatchNorm, so that the statistics the abandoned step's forward
  // passes moved must be put back for the continuation to be exact.
  std::ofstream(work + "/bn.toml") << "name = \"bn-net\"\ninput = [1, 28, 28]\nclasses = 10\n"
                                      "[[layer]]\ntype = \"conv2d\"\nname = \"conv1\"\nin_channels = 1\n"
                                      "out_channels = 8\nkernel = 5\npadding = 2\nbias = false\n"
                                      "[[layer]]\ntype = \"batchnorm2d\"\nname = \"bn1\"\n"
                                      "[[layer]]\ntype = \"relu\"\n[[layer]]\ntype = \"maxpool2d\"\nkernel = 4\n"
                                      "[[layer]]\ntype = \"flatten\"\n"
                                      "[[layer]]\ntype = \"linear\"\nname = \"fc\"\nin_features = 392\n"
                                      "out_features = 10\n";
  const std::string args = "train --net " + work + "/bn.toml --host-workers 2 --train-limit 16384 --test-limit 64 "
                           "--batch 4096 --split 8 --seed 5 --quiet";
  const std::string dir = work + "/out", log = work + "/log";
  const pid_t pid = spawn_nbsgd(args + " --steps 1000 --out " + dir, log);
  ASSERT_TRUE(wait_until(pid, [&] { return !read_metrics(dir).empty(); })) << read_text(log);
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_EQ(wait_for_exit(pid, kHang_s), 128 + SIGTERM) << read_text(log);
  const auto s = read_json(dir + "/summary.json");
  EXPECT_EQ(s["interrupted"], true);
  const int k = s["steps"];
  ASSERT_GE(k, 1);
  EXPECT_EQ(s["abandoned_step"], k) << "the signal came during step " << k << "'s computation";
  ASSERT_EQ(read_metrics(dir).size(), size_t(k));
  EXPECT_EQ(checkpoint_step(dir + "/checkpoint.safetensors"), k);
  // Continued to k + 1 steps, it is the uninterrupted run, bit for bit.
  const std::string steps = " --steps " + std::to_string(k + 1);
  const CommandResult r = run_nbsgd(args + steps + " --out " + dir + " --resume " + dir + "/checkpoint.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const CommandResult u = run_nbsgd(args + steps + " --out " + work + "/whole");
  ASSERT_EQ(u.exit_code, 0) << u.output;
  const auto a = read_metrics(dir), b = read_metrics(work + "/whole");
  ASSERT_EQ(a.size(), size_t(k + 1));
  ASSERT_EQ(b.size(), size_t(k + 1));
  for (int i = 0; i < k + 1; ++i) EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i;
  // The test loss reads the BatchNorm running statistics (training losses do not).
  EXPECT_EQ(read_json(dir + "/summary.json")["test_loss"].get<double>(),
            read_json(work + "/whole/summary.json")["test_loss"].get<double>());
  fs::remove_all(work);
}

}  // namespace
}  // namespace nbsgd::test
