// `nbsgd train` as a user runs it: output files, Ctrl-C, resume, bad flags.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support/test_support.h"

namespace nbsgd::test {
namespace {

namespace fs = std::filesystem;

const char* kCommon =
    "train --host-workers 4 --net lenet --train-limit 2048 --test-limit 256 --batch 64 --split 4 --slowdown 1,1,2,4 "
    "--window fastest --seed 3 --quiet";

std::vector<nlohmann::json> read_metrics(const std::string& dir) {
  std::vector<nlohmann::json> v;
  std::ifstream f(dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) v.push_back(nlohmann::json::parse(line));
  return v;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

// Starts nbsgd with arguments split on spaces; returns the pid.
pid_t spawn(const std::string& args) {
  std::vector<std::string> parts;
  std::istringstream ss(args);
  for (std::string p; ss >> p;) parts.push_back(p);
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv{const_cast<char*>(NBSGD_BINARY)};
    for (auto& p : parts) argv.push_back(p.data());
    argv.push_back(nullptr);
    execv(NBSGD_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

TEST(TrainCli, WritesEveryOutputFile) {
  std::string dir = make_temp_dir("train-out");
  CommandResult r = run_nbsgd(std::string(kCommon) + " --steps 6 --target-loss 5 --out " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto cfg = read_json(dir + "/config.json");
  EXPECT_EQ(cfg["window"], "fastest");
  auto m = read_metrics(dir);
  ASSERT_EQ(m.size(), 6u);
  for (size_t i = 0; i < m.size(); ++i) {
    for (const char* k : {"step", "epoch", "t", "loss", "lr", "samples", "finished", "window_s"})
      EXPECT_TRUE(m[i].contains(k)) << k;
    EXPECT_EQ(m[i]["step"], int(i));
    EXPECT_EQ(m[i]["finished"].size(), 4u);
  }
  auto s = read_json(dir + "/summary.json");
  for (const char* k : {"steps", "epochs", "samples", "wall_s", "clock_s", "samples_per_s", "final_train_loss",
                        "test_loss", "test_accuracy", "time_to_target_s", "samples_per_epoch"})
    EXPECT_TRUE(s.contains(k)) << k;
  EXPECT_EQ(s["steps"], 6);
  EXPECT_TRUE(s["time_to_target_s"].is_number());  // a loss of 5 is reached at once
  EXPECT_TRUE(fs::exists(dir + "/checkpoint.safetensors"));
  // A second run into the same directory would overwrite a run: refused.
  CommandResult again = run_nbsgd(std::string(kCommon) + " --steps 2 --out " + dir);
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.output.find("already holds a run"), std::string::npos) << again.output;
  fs::remove_all(dir);
}

// Ctrl-C during a run of `base`, then --resume to 5 steps more; it must log what an
// uninterrupted run of as many steps logs, bit for bit.
void ctrl_c_then_resume(const std::string& base) {
  std::string dir = make_temp_dir("train-int");
  pid_t pid = spawn(base + " --steps 100000 --out " + dir);
  ASSERT_GT(pid, 0);
  // Interrupt once a few steps are logged.
  for (int i = 0; i < 6000 && read_metrics(dir).size() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(kill(pid, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  auto s = read_json(dir + "/summary.json");
  EXPECT_EQ(s["interrupted"], true);
  const int k = s["steps"];
  ASSERT_GE(k, 3);
  ASSERT_EQ(read_metrics(dir).size(), size_t(k));
  ASSERT_TRUE(fs::exists(dir + "/checkpoint.safetensors"));

  // Resume to k + 5 steps; an uninterrupted run of k + 5 steps must log the same.
  const int total = k + 5;
  CommandResult r = run_nbsgd(base + " --steps " + std::to_string(total) + " --out " + dir + " --resume " + dir +
                              "/checkpoint.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string ref = make_temp_dir("train-ref");
  CommandResult u = run_nbsgd(base + " --steps " + std::to_string(total) + " --out " + ref);
  ASSERT_EQ(u.exit_code, 0) << u.output;
  auto resumed = read_metrics(dir), straight = read_metrics(ref);
  ASSERT_EQ(resumed.size(), size_t(total));
  ASSERT_EQ(straight.size(), size_t(total));
  for (int i = 0; i < total; ++i) {
    EXPECT_EQ(resumed[i]["loss"], straight[i]["loss"]) << "step " << i;  // bit for bit
    EXPECT_EQ(resumed[i]["t"], straight[i]["t"]) << "step " << i;
    EXPECT_EQ(resumed[i]["finished"], straight[i]["finished"]) << "step " << i;
  }
  fs::remove_all(dir);
  fs::remove_all(ref);
}

TEST(TrainCli, CtrlCCheckpointsAndResumeContinuesTheSameRun) { ctrl_c_then_resume(kCommon); }

// The same for the gossip exchanges: a checkpoint holds every replica, its momentum
// and the timeline, so the resumed run is the run it continues.
TEST(TrainCli, CtrlCAndResumeOfGossipRuns) {
  for (const char* x : {" --exchange dpsgd --window-scope neighbors", " --exchange matcha --budget 0.5 --topology complete"}) {
    SCOPED_TRACE(x);
    ctrl_c_then_resume(std::string(kCommon) + x);
  }
}

TEST(TrainCli, BadInputIsOneClearLine) {
  struct Case {
    std::string args, needle;
  };
  for (const Case& c : {Case{"--batch 64 --split 5", "--split"}, Case{"--devices 0,7", "--devices"},
                        Case{"--window nope", "--window"}, Case{"--slowdown 1,2", "--slowdown"},
                        Case{"--data-dir /nonexistent", "/nonexistent"}, Case{"--profile no-such-profile", "no-such-profile"},
                        Case{"--resume /nonexistent.safetensors", "/nonexistent.safetensors"},
                        Case{"--clock sideways", "--clock"}}) {
    CommandResult r = run_nbsgd("train --host-workers 4 --steps 1 --quiet " + c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find("nbsgd: error: "), std::string::npos) << r.output;
  }
}

// Numbers no run can use are refused before anything starts, in one line naming the
// flag, with no output directory left behind; flag-parser errors are one line too.
TEST(TrainCli, UnusableNumbersAreRefusedNamingTheFlag) {
  struct Case {
    std::string args, needle;
  };
  for (const Case& c : {Case{"--lr nan", "--lr"}, Case{"--lr 0", "--lr"}, Case{"--momentum 1", "--momentum"},
                        Case{"--weight-decay -1", "--weight-decay"}, Case{"--train-limit -5", "--train-limit"},
                        Case{"--virtual-gflops 0", "--virtual-gflops"}, Case{"--virtual-link-gbps inf", "--virtual-link-gbps"},
                        Case{"--epochs 0", "--epochs"}, Case{"--target-loss -1", "--target-loss"},
                        Case{"--seed -1", "--seed"}, Case{"--virtual-overhead-us -3", "--virtual-overhead-us"},
                        Case{"--virtual-jitter 1.5", "--virtual-jitter"}, Case{"--virtual-jitter nan", "--virtual-jitter"},
                        Case{"--virtual-notice-us -1", "--virtual-notice-us"},
                        Case{"--virtual-notice-us nan", "--virtual-notice-us"},
                        Case{"--virtual-notice-us 2e6", "--virtual-notice-us"},
                        Case{"--virtual-host-us -1", "--virtual-host-us"}, Case{"--virtual-host-us inf", "--virtual-host-us"},
                        Case{"--virtual-host-us 2e6", "--virtual-host-us"},
                        Case{"--virtual-issue-us -1", "--virtual-issue-us"},
                        Case{"--virtual-issue-us 2e6", "--virtual-issue-us"},
                        Case{"--virtual-cancel-kernels 0", "--virtual-cancel-kernels"},
                        Case{"--virtual-cancel-kernels 1000000", "--virtual-cancel-kernels"},
                        Case{"--cancel-at never", "--cancel-at never"},
                        Case{"--cancel-at kernel", "--virtual-cancel-kernels"},
                        Case{"--cancel-at minibatch --virtual-cancel-kernels 8", "--virtual-cancel-kernels 8"},
                        Case{"--no-such-flag", "--no-such-flag"}}) {
    const std::string dir = make_temp_dir("train-bad-number") + "/out";
    CommandResult r = run_nbsgd("train --host-workers 2 --steps 1 --quiet --out " + dir + " " + c.args);
    EXPECT_NE(r.exit_code, 0) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.rfind("nbsgd: error: ", 0), 0u) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << c.args << "\n" << r.output;
    EXPECT_FALSE(fs::exists(dir)) << c.args;
  }
}

// One virtual-clock worker, LeNet, 1,024 samples, B = 64 in 4, with `flags` and
// `flag value`: its config.json entry `key` and its summary.json.
struct OneWorkerRun {
  double config_value = 0;
  nlohmann::json summary;
};
OneWorkerRun one_worker_run(const std::string& flags, const std::string& flag, const std::string& value,
                            const char* key) {
  const std::string dir = make_temp_dir("train-one") + "/out";
  CommandResult r = run_nbsgd("train --host-workers 1 --net lenet --train-limit 1024 --batch 64 --split 4 --quiet " +
                              flags + " " + flag + " " + value + " --out " + dir);
  OneWorkerRun o;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  if (r.exit_code == 0) {
    o.config_value = read_json(dir + "/config.json")[key].get<double>();
    o.summary = read_json(dir + "/summary.json");
  }
  fs::remove_all(fs::path(dir).parent_path());
  return o;
}

// --virtual-notice-us reaches the virtual clock and config.json: one worker, quorum:2
// of its 4 mini-batches, two in flight. Its second closes every window with the third
// queued: seen at once, that one is skipped; seen 20 us late, it runs and is wasted,
// once per step (the engine test NoticeLatencyRunsTheClosersQueuedMiniBatch has why).
TEST(TrainCli, VirtualNoticeLatencyWastesTheClosersQueuedMiniBatch) {
  for (const char* us : {"0", "20"}) {
    const OneWorkerRun o = one_worker_run("--window quorum:2 --inflight 2 --steps 6", "--virtual-notice-us", us,
                                          "virtual_notice_latency_s");
    ASSERT_TRUE(o.summary.is_object()) << us;
    EXPECT_DOUBLE_EQ(o.config_value, std::stod(us) * 1e-6);
    EXPECT_EQ(o.summary["wasted_minibatches"].get<int>(), std::string(us) == "0" ? 0 : 6) << us;
  }
}

// --virtual-host-us reaches the virtual clock and config.json: one worker, sync, 4
// steps of 4 mini-batches; each mini-batch takes 100 us more, so the run's clock
// ends 16 x 100 us later (the timeline's 1 ns grid aside).
TEST(TrainCli, VirtualHostCpuLengthensEveryMiniBatch) {
  std::vector<double> clock;
  for (const char* us : {"0", "100"}) {
    const OneWorkerRun o = one_worker_run("--window sync --steps 4", "--virtual-host-us", us, "virtual_host_cpu_s");
    ASSERT_TRUE(o.summary.is_object()) << us;
    EXPECT_DOUBLE_EQ(o.config_value, std::stod(us) * 1e-6);
    clock.push_back(o.summary["clock_s"].get<double>());
  }
  EXPECT_NEAR(clock[1] - clock[0], 16 * 100e-6, 1e-8);
}

// --virtual-issue-us reaches the virtual clock and config.json: one worker, fastest,
// one in flight, 4 steps of 4 mini-batches. Every mini-batch after a step's first
// waits 50 us after its hand-out; a step's first is handed out at its window's open
// and waits only in the first step (later, the update before it takes longer: the
// model's LeNet launch overhead, about 150 us). So the clock ends 4 x 3 + 1 = 13 x
// 50 us later.
TEST(TrainCli, VirtualIssueLatencyDelaysEachDepthBoundMiniBatch) {
  std::vector<double> clock;
  for (const char* us : {"0", "50"}) {
    const OneWorkerRun o =
        one_worker_run("--window fastest --inflight 1 --steps 4", "--virtual-issue-us", us, "virtual_issue_latency_s");
    ASSERT_TRUE(o.summary.is_object()) << us;
    EXPECT_DOUBLE_EQ(o.config_value, std::stod(us) * 1e-6);
    clock.push_back(o.summary["clock_s"].get<double>());
  }
  EXPECT_NEAR(clock[1] - clock[0], 13 * 50e-6, 1e-8);
}

// --cancel-at on the real clock, 2 host workers, LeNet, worker 1 at 8x, fastest, 30
// steps: the slow worker is inside its throttle at nearly every close. With kernel
// (the default there) some of its running mini-batches stop at a kernel boundary and
// say so; with minibatch none does. config.json holds what --cancel-at resolved to.
TEST(TrainCli, RealClockCancelAtKernelCutsTheSlowWorkersRunningMiniBatch) {
  for (const char* at : {"auto", "minibatch"}) {
    const std::string dir = make_temp_dir("train-cancel") + "/out";
    CommandResult r = run_nbsgd("train --host-workers 2 --clock real --net lenet --train-limit 1024 --batch 64 "
                                "--split 8 --window fastest --slowdown 1,8 --steps 30 --quiet --cancel-at " +
                                std::string(at) + " --out " + dir);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const nlohmann::json cfg = read_json(dir + "/config.json"), sum = read_json(dir + "/summary.json");
    const bool kernel = std::string(at) == "auto";
    EXPECT_EQ(cfg["cancel_at"], kernel ? "kernel" : "minibatch") << at;
    EXPECT_GT(sum["wasted_minibatches"].get<int64_t>(), 0) << at;
    if (kernel)
      EXPECT_GT(sum["cut_minibatches"].get<int64_t>(), 0) << r.output;
    else
      EXPECT_EQ(sum["cut_minibatches"].get<int64_t>(), 0) << r.output;
    EXPECT_LE(sum["cut_minibatches"].get<int64_t>(), sum["wasted_minibatches"].get<int64_t>()) << at;
    fs::remove_all(fs::path(dir).parent_path());
  }
}

TEST(TrainCli, ResumeRefusesACheckpointOfAnotherNet) {
  std::string dir = make_temp_dir("train-net");
  CommandResult r = run_nbsgd(std::string(kCommon) + " --steps 1 --out " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  CommandResult m = run_nbsgd("train --host-workers 4 --net mlp --train-limit 256 --steps 1 --quiet --resume " + dir +
                              "/checkpoint.safetensors");
  EXPECT_EQ(m.exit_code, 1);
  EXPECT_NE(m.output.find("made for another net"), std::string::npos) << m.output;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace nbsgd::test
