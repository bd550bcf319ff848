// NCCL across ranks, one GPU per rank (issue 15): `mpirun -np 2` of tests/mpi/nccl_ranks.cpp.
// Skips, with the reason, in a build without MPI and on a machine with fewer than 2
// GPUs (NCCL refuses two ranks on one GPU).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "runtime/device/device.h"
#include "support/backend_test.h"

namespace nbsgd::test {
namespace {

TEST(GpuMpi, NcclAcrossTwoRanksIsExact) {
  const std::string helper = NBSGD_MPI_NCCL_HELPER;
  if (helper.empty()) GTEST_SKIP() << "built without MPI or without the CUDA backend";
  const DeviceList l = discover_devices();
  if (l.backend != Backend::Cuda) NBSGD_SKIP_WITHOUT_GPU("no GPU: " + l.fallback_reason);
  if (l.devices.size() < 2) GTEST_SKIP() << "one GPU: NCCL refuses two ranks on one GPU (needs 2 GPUs)";
  const std::string cmd = "timeout -k 5 300 mpirun --oversubscribe --allow-run-as-root -np 2 " + helper + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int st = pclose(p);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << out;
  EXPECT_NE(out.find("rank 0 of 2: nccl across ranks exact"), std::string::npos) << out;
  EXPECT_NE(out.find("rank 1 of 2: nccl across ranks exact"), std::string::npos) << out;
}

}  // namespace
}  // namespace nbsgd::test
