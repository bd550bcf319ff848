// Shared by the engine's test files: a small LeNet configuration on host workers,
// a whole run's records, and a straggler profile in a temporary file.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/train/engine.h"

namespace nbsgd::engine::test_runs {

// 4 host workers, LeNet, 1,024 training samples, B = 64 split into 4 (b = 16).
inline TrainConfig small_config() {
  TrainConfig c;
  c.net = "lenet";
  c.host_workers = 4;
  c.train_limit = 1024;
  c.batch = 64;
  c.split = 4;  // b = 16
  c.lr = 0.05;
  c.seed = 7;
  c.test_limit = 256;
  c.quiet = true;
  return c;
}

struct RunOut {
  std::vector<StepRecord> steps;
  RunSummary summary;
  std::vector<uint64_t> hashes;
};

inline RunOut run(const TrainConfig& c) {
  Engine e(c);
  RunOut r;
  r.summary = e.run([&](const StepRecord& s) { r.steps.push_back(s); });
  r.hashes = e.replica_hashes();
  return r;
}

// A straggler profile written to a temporary file for one test, removed with it.
struct TempProfile {
  std::string path;
  explicit TempProfile(const char* toml) {
    char name[] = "/tmp/nbsgd-profile-XXXXXX.toml";
    const int fd = mkstemps(name, 5);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, toml, strlen(toml)), ssize_t(strlen(toml)));
    close(fd);
    path = name;
  }
  TempProfile(const TempProfile&) = delete;
  TempProfile& operator=(const TempProfile&) = delete;
  ~TempProfile() { std::remove(path.c_str()); }
};

inline std::vector<double> losses(const RunOut& r) {
  std::vector<double> l;
  for (const auto& s : r.steps) l.push_back(s.loss);
  return l;
}

}  // namespace nbsgd::engine::test_runs
