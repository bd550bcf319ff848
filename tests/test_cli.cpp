// The binary's contract: device listing and its fallback, and clear errors for bad
// flags (one line, non-zero exit, no crash).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/device/backend.h"
#include "runtime/device/device.h"
#include "support/test_support.h"

namespace nbsgd::test {

TEST(Cli, DevicesJsonReportsBackendAndFallbackReason) {
  CommandResult r = run_nbsgd("devices --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  DeviceList here = discover_devices();
  EXPECT_EQ(j["backend"], to_string(here.backend));
  ASSERT_TRUE(j["devices"].is_array());
  EXPECT_FALSE(j["devices"].empty());
  for (auto& d : j["devices"]) {
    EXPECT_TRUE(d.contains("index") && d.contains("name") && d.contains("kind"));
    if (j["backend"] == "cuda") {
      EXPECT_TRUE(d.contains("cc") && d.contains("sms") && d.contains("memory_bytes"));
    }
  }
  if (here.backend == Backend::Host) {
    std::string why = j["fallback_reason"];
    if (cuda_built()) {
      // Built with CUDA on a machine without a driver: the reason names it.
      EXPECT_NE(why.find("driver"), std::string::npos) << why;
    } else {
      EXPECT_NE(why.find("without the CUDA backend"), std::string::npos) << why;
    }
  }
}

TEST(Cli, HostWorkersFlagSelectsHostDevices) {
  CommandResult r = run_nbsgd("devices --json --host-workers 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["backend"], "host");
  EXPECT_EQ(j["devices"].size(), 3u);
  EXPECT_NE(std::string(j["fallback_reason"]).find("--host-workers 3"), std::string::npos);
}

TEST(Cli, InvalidFlagIsAClearError) {
  CommandResult r = run_nbsgd("devices --no-such-flag");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--no-such-flag"), std::string::npos) << r.output;
  r = run_nbsgd("devices --host-workers 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--host-workers"), std::string::npos) << r.output;
  r = run_nbsgd("no-such-command");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.output, "nbsgd: error: unknown command 'no-such-command' (commands: devices, predict, topology, train, compare, describe-net, plot)\n");
}

TEST(Cli, HelpListsSubcommands) {
  CommandResult r = run_nbsgd("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("devices"), std::string::npos);
}

}  // namespace nbsgd::test
