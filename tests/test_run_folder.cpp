// The run folder (--out) across runs: part of the bad-input suite (ctest -R
// BadInput). One run at a time holds a folder; a resumed run's metrics.jsonl
// continues exactly after its checkpoint; a diverged run stops naming the step
// and keeps the checkpoint of its last finite step; a full disk under metrics.jsonl
// is one line and leaves only whole records.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "nets/checkpoint.h"
#include "runtime/device/check.h"
#include "runtime/train/engine.h"
#include "support/small_disk.h"
#include "support/test_support.h"

namespace nbsgd::test {
namespace {

namespace fs = std::filesystem;

constexpr int kHang_s = 120;

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

template <class F>
bool wait_until(pid_t pid, F ready) {
  for (;;) {
    if (ready()) return true;
    if (kill(pid, 0) != 0) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

const std::string kMlp = "train --net mlp --host-workers 2 --train-limit 512 --test-limit 64 --seed 5 --quiet";

void expect_one_error_line(const CommandResult& r, const std::string& needle) {
  EXPECT_GT(r.exit_code, 0) << r.output;
  EXPECT_LT(r.exit_code, 128) << r.output;
  EXPECT_EQ(r.output.rfind("nbsgd: error: ", 0), 0u) << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << needle << "\n" << r.output;
}

// Two processes, one folder: the second is refused naming the first's pid, fresh
// or --resume; once the first has ended, the folder is free again.
TEST(BadInputOutDir, ASecondRunIntoTheFolderIsRefusedNamingTheHolder) {
  const std::string dir = make_temp_dir("lock");
  const pid_t pid = spawn_nbsgd(kMlp + " --steps 100000000 --checkpoint-every 5 --out " + dir);
  ASSERT_TRUE(wait_until(pid, [&] { return fs::exists(dir + "/checkpoint.safetensors"); }));
  const std::string holder = "pid " + std::to_string(pid);
  expect_one_error_line(run_nbsgd(kMlp + " --steps 3 --out " + dir), holder);
  // (A few steps past the checkpoint: a run that is wrongly let in ends soon.)
  const int at = std::stoi(load_safetensors(dir + "/checkpoint.safetensors").metadata.at("nbsgd.step"));
  expect_one_error_line(run_nbsgd(kMlp + " --steps " + std::to_string(at + 3) + " --out " + dir + " --resume " + dir +
                                  "/checkpoint.safetensors"),
                        holder);
  // A compare into the folder too.
  expect_one_error_line(run_nbsgd("compare --net mlp --host-workers 2 --train-limit 512 --steps 1 --quiet "
                                  "--runs ring/sync --out " + dir),
                        holder);
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_EQ(wait_for_exit(pid, kHang_s), 128 + SIGTERM);
  const int k = nlohmann::json::parse(read_text(dir + "/summary.json"))["steps"];
  const CommandResult r = run_nbsgd(kMlp + " --steps " + std::to_string(k + 1) + " --out " + dir + " --resume " + dir +
                                    "/checkpoint.safetensors");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  fs::remove_all(dir);
}

// The case: SIGKILL a run with --checkpoint-every 25 past step 50, resume:
// metrics.jsonl holds every step once, and (virtual clock) the very records of an
// uninterrupted run.
TEST(BadInputOutDir, ResumeAfterSigkillContinuesMetricsAfterTheCheckpointsStep) {
  const std::string dir = make_temp_dir("sigkill-metrics");
  const pid_t pid = spawn_nbsgd(kMlp + " --steps 100000000 --checkpoint-every 25 --out " + dir);
  ASSERT_TRUE(wait_until(pid, [&] { return read_metrics(dir).size() >= 53; }));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(wait_for_exit(pid, kHang_s), 128 + SIGKILL);
  const LoadedTensors ck = load_safetensors(dir + "/checkpoint.safetensors");
  const int k = std::stoi(ck.metadata.at("nbsgd.step"));
  const size_t logged = read_metrics(dir).size();
  ASSERT_GE(k, 50);
  ASSERT_GT(logged, size_t(k)) << "the test needs steps logged after the checkpoint";
  const int total = static_cast<int>(logged) + 5;
  const CommandResult r = run_nbsgd(kMlp + " --steps " + std::to_string(total) + " --out " + dir + " --resume " + dir +
                                    "/checkpoint.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string ref = make_temp_dir("sigkill-ref");
  ASSERT_EQ(run_nbsgd(kMlp + " --steps " + std::to_string(total) + " --out " + ref).exit_code, 0);
  const auto resumed = read_metrics(dir), straight = read_metrics(ref);
  ASSERT_EQ(resumed.size(), size_t(total));
  ASSERT_EQ(straight.size(), size_t(total));
  for (int i = 0; i < total; ++i) {
    EXPECT_EQ(resumed[i]["step"], i);
    EXPECT_EQ(resumed[i], straight[i]) << "step " << i;
  }
  fs::remove_all(dir);
  fs::remove_all(ref);
}

// A log that misses steps before the checkpoint is refused, naming them.
TEST(BadInputOutDir, ResumeRefusesALogWithStepsMissingBeforeTheCheckpoint) {
  const std::string dir = make_temp_dir("gap-metrics");
  ASSERT_EQ(run_nbsgd(kMlp + " --steps 6 --out " + dir).exit_code, 0);
  {
    std::istringstream all(read_text(dir + "/metrics.jsonl"));
    std::ofstream cut(dir + "/metrics.jsonl", std::ios::trunc);
    std::string line;
    for (int i = 0; i < 3 && std::getline(all, line); ++i) cut << line << "\n";  // steps 0-2 only
  }
  ASSERT_EQ(read_metrics(dir).size(), 3u);
  const CommandResult r = run_nbsgd(kMlp + " --steps 9 --out " + dir + " --resume " + dir + "/checkpoint.safetensors");
  expect_one_error_line(r, "metrics.jsonl ends at step 2, the checkpoint is at step 6");
  EXPECT_EQ(read_metrics(dir).size(), 3u);  // left as it was
  fs::remove_all(dir);
}

bool all_finite(const LoadedTensors& t) {
  for (const auto& [name, v] : t.tensors)
    for (float x : v.second)
      if (!std::isfinite(x)) return false;
  return true;
}

// A learning rate that makes the loss blow up: the run stops with one line naming
// the step; the checkpoint on disk is one of a finite step, with finite weights.
TEST(BadInputOutDir, NonFiniteLossStopsNamingTheStepAndKeepsTheLastFiniteCheckpoint) {
  const std::string dir = make_temp_dir("nan");
  const CommandResult r = run_nbsgd(kMlp + " --steps 200 --lr 1e4 --checkpoint-every 1 --out " + dir);
  expect_one_error_line(r, "the training loss is ");
  const size_t at = r.output.find("step ");
  ASSERT_NE(at, std::string::npos);
  const int bad = std::stoi(r.output.substr(at + 5));
  ASSERT_TRUE(fs::exists(dir + "/checkpoint.safetensors"));
  const LoadedTensors ck = load_safetensors(dir + "/checkpoint.safetensors");
  EXPECT_TRUE(ck.data_checksum_verified);
  EXPECT_LE(std::stoi(ck.metadata.at("nbsgd.step")), bad);
  EXPECT_TRUE(all_finite(ck));
  EXPECT_EQ(read_metrics(dir).size(), size_t(bad));  // the finite steps, all logged
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  fs::remove_all(dir);
}

// Weights that are not finite are never written over a checkpoint (the loss of
// the step that produced them may still have been finite).
TEST(BadInputOutDir, ACheckpointIsNeverWrittenWithNonFiniteWeights) {
  engine::TrainConfig c;
  c.net = "mlp";
  c.host_workers = 2;
  c.train_limit = 256;
  c.test_limit = 32;
  c.steps = 1;
  c.quiet = true;
  engine::Engine e(c);
  const std::string path = make_temp_dir("nan-ck") + "/ck.safetensors";
  e.save_checkpoint(path);
  const std::string before = read_text(path);
  std::vector<float> p = e.replicas()[0];
  p[p.size() / 2] = std::numeric_limits<float>::infinity();
  e.set_replica(0, p);
  EXPECT_THROW(
      {
        try {
          e.save_checkpoint(path);
        } catch (const InputError& err) {
          EXPECT_NE(std::string(err.what()).find("not finite"), std::string::npos) << err.what();
          throw;
        }
      },
      InputError);
  EXPECT_EQ(read_text(path), before);
  fs::remove_all(fs::path(path).parent_path());
}

// A ring run on the real clock holds one model and no per-worker state: the one
// resume on another number of workers that --help documents.
TEST(BadInputOutDir, RingOnTheRealClockResumesOnAnotherWorkerCount) {
  const std::string dir = make_temp_dir("ring-workers");
  const std::string a = "train --net mlp --train-limit 512 --test-limit 64 --clock real --quiet";
  ASSERT_EQ(run_nbsgd(a + " --host-workers 2 --steps 2 --out " + dir).exit_code, 0);
  const CommandResult r = run_nbsgd(a + " --host-workers 3 --steps 4 --out " + dir + " --resume " + dir +
                                    "/checkpoint.safetensors");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto m = read_metrics(dir);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[3]["finished"].size(), 3u);
  fs::remove_all(dir);
}

// A disk that fills while metrics.jsonl grows: one line naming the file, and the
// file holds whole records only.
TEST(BadInputDisk, FullDiskUnderMetricsIsOneLineAndLeavesWholeRecords) {
  SmallDisk disk(16 << 10);
  if (!disk.ok()) GTEST_SKIP() << disk.why();
  const std::string out = disk.dir() + "/out";
  const CommandResult r = run_nbsgd("train --net mlp --host-workers 1 --train-limit 64 --test-limit 16 --batch 8 "
                                    "--split 1 --lr 0.01 --steps 100000000 --quiet --out " + out);
  expect_one_error_line(r, "cannot write " + out + "/metrics.jsonl: No space left on device");
  const std::string text = read_text(out + "/metrics.jsonl");
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  std::istringstream lines(text);
  int i = 0;
  for (std::string line; std::getline(lines, line); ++i) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "line " << i + 1 << ": " << line;
    EXPECT_EQ(j["step"], i);
  }
  EXPECT_FALSE(fs::exists(out + "/summary.json"));  // no summary claims steps the log lacks
}

}  // namespace
}  // namespace nbsgd::test
