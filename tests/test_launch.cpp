// Launch detection from the environment (runtime/device/comm/launch.h): no MPI needed.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "runtime/device/comm/launch.h"

namespace nbsgd::comm {
namespace {

Launch detect(const std::map<std::string, std::string>& env) {
  return detect_launch([&env](const char* k) -> const char* {
    auto it = env.find(k);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(Launch, OneProcessWhenNoLauncherSetAnything) {
  const Launch l = detect({{"HOME", "/root"}});
  EXPECT_FALSE(l.spans());
  EXPECT_EQ(l.launcher, "");
  EXPECT_EQ(l.describe(), "one process");
}

TEST(Launch, OpenMpiMpirun) {
  const Launch l = detect({{"OMPI_COMM_WORLD_SIZE", "4"},
                           {"OMPI_COMM_WORLD_RANK", "3"},
                           {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                           {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
  EXPECT_EQ(l.launcher, "mpirun");
  EXPECT_EQ(l.size, 4);
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.local_size, 2);
  EXPECT_TRUE(l.spans());
}

TEST(Launch, SrunStepButNotABatchScript) {
  const Launch l = detect({{"SLURM_STEP_NUM_TASKS", "8"}, {"SLURM_PROCID", "5"}, {"SLURM_LOCALID", "1"}});
  EXPECT_EQ(l.launcher, "srun");
  EXPECT_EQ(l.size, 8);
  EXPECT_EQ(l.rank, 5);
  EXPECT_EQ(l.local_rank, 1);
  // sbatch's script: SLURM_PROCID and SLURM_NTASKS, no step: one process.
  const Launch b = detect({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}, {"SLURM_JOB_ID", "12"}});
  EXPECT_FALSE(b.spans());
  EXPECT_EQ(b.launcher, "");
}

TEST(Launch, PmiAndGarbage) {
  const Launch p = detect({{"PMI_SIZE", "2"}, {"PMI_RANK", "1"}});
  EXPECT_EQ(p.launcher, "pmi");
  EXPECT_EQ(p.size, 2);
  EXPECT_EQ(p.rank, 1);
  // A value that is not a number is no launch.
  const Launch g = detect({{"OMPI_COMM_WORLD_SIZE", "four"}, {"OMPI_COMM_WORLD_RANK", "0"}});
  EXPECT_EQ(g.launcher, "");
}

TEST(Launch, OneProcessCollectivesAreCopies) {
  // Before init_launch (and in one process): size 1, the all-gather is a copy.
  float mine[3] = {1, 2, 3}, all[3] = {0, 0, 0};
  ranks_allgather(mine, sizeof mine, all);
  EXPECT_EQ(all[2], 3.0f);
  EXPECT_EQ(ranks_sum(41), 41);
}

}  // namespace
}  // namespace nbsgd::comm
