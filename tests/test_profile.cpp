// Straggler profiles: every rejection names file:line and the key; resolution
// order; schedule boundaries; seeded draws; the shipped profiles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/device/check.h"
#include "runtime/train/straggler/profile.h"
#include "support/test_support.h"

namespace nbsgd::straggler {
namespace {

std::string write_profile(const std::string& text) {
  static const std::string dir = nbsgd::test::make_temp_dir("profile");
  static int counter = 0;
  const std::string path = dir + "/p" + std::to_string(counter++) + ".toml";
  std::ofstream(path) << text;
  return path;
}

// Loads (and, with n_devices > 0, resolves) `text`; expects an InputError whose
// message contains "<file>:<line>" and `key`.
void expect_error(const std::string& text, int line, const std::string& key, int n_devices = 0) {
  const std::string path = write_profile(text);
  try {
    Profile p = load_profile(path);
    if (n_devices > 0) resolve(p, n_devices, {});
    ADD_FAILURE() << "no error for:\n" << text;
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path + ":" + std::to_string(line) + ":"), std::string::npos) << msg;
    EXPECT_NE(msg.find(key), std::string::npos) << "key '" << key << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

TEST(ProfileErrors, UnknownKeys) {
  expect_error("name = \"x\"\nseeed = 3\n", 2, "seeed");
  expect_error("[device.0]\nslowdwn = 2\n", 2, "device.0.slowdwn");
  expect_error("[device.default]\n\ndelay = { probability = 1, distribution = \"uniform\", min_ms = 1, max_ms = 2, "
               "mean_ms = 3 }\n",
               3, "device.default.delay.mean_ms");
  expect_error("[[device.1.schedule]]\nsteps = [0, 5]\nsm_fraction = 0.5\n", 3, "device.1.schedule.sm_fraction");
}

TEST(ProfileErrors, BadValues) {
  expect_error("[device.default]\ndelay = { probability = 1, distribution = \"exponential\", mean_ms = -5 }\n", 2,
               "device.default.delay.mean_ms");
  expect_error("[device.0]\nslowdown = inf\n", 2, "device.0.slowdown");
  expect_error("[device.0]\nslowdown = nan\n", 2, "device.0.slowdown");
  expect_error("[device.0]\n# comment\nslowdown = 0.5\n", 3, "device.0.slowdown");
  expect_error("[device.0]\nslowdown = \"fast\"\n", 2, "device.0.slowdown");
  expect_error("seed = -1\n", 1, "seed");
  expect_error("[device.2]\nsm_fraction = 0\n", 2, "device.2.sm_fraction");
  expect_error("[device.2]\nsm_fraction = 1.5\n", 2, "device.2.sm_fraction");
  expect_error("[device.\"*T4*\"]\nstall = { probability = 1, distribution = \"pareto\", scale_ms = 0, alpha = 2 }\n",
               2, "device.\"*T4*\".stall.scale_ms");
  expect_error("[device.0]\ndelay = { distribution = \"uniform\", min_ms = 5, max_ms = 2 }\n", 2,
               "device.0.delay.max_ms");
}

TEST(ProfileErrors, Probabilities) {
  expect_error("[device.0]\ndelay = { probability = 1.5, distribution = \"constant\", value_ms = 1 }\n", 2,
               "device.0.delay.probability");
  expect_error("[device.0]\nstall = { probability = -0.1, distribution = \"constant\", value_ms = 1 }\n", 2,
               "device.0.stall.probability");
}

TEST(ProfileErrors, Distributions) {
  expect_error("[device.0]\ndelay = { probability = 0.1, distribution = \"gaussian\", mean_ms = 1 }\n", 2,
               "device.0.delay.distribution");
  expect_error("[device.0]\ndelay = { probability = 0.1, distribution = \"exponential\" }\n", 2,
               "device.0.delay.mean_ms");
  expect_error("[device.0]\ndelay = { probability = 0.1, distribution = \"lognormal\", mu = 1 }\n", 2,
               "device.0.delay.sigma");
  expect_error("[device.0]\ndelay = { probability = 0.1, mean_ms = 1 }\n", 2, "device.0.delay.distribution");
}

TEST(ProfileErrors, DeviceIndexBeyondCount) {
  expect_error("name = \"x\"\n\n[device.7]\nslowdown = 2\n", 3, "device.7", 4);
  // Fine for 8 devices.
  EXPECT_NO_THROW(resolve(load_profile(write_profile("[device.7]\nslowdown = 2\n")), 8, {}));
}

TEST(ProfileErrors, Schedules) {
  expect_error("[device.1]\nslowdown = 1\n[[device.1.schedule]]\nsteps = [100, 300]\nslowdown = 2\n"
               "[[device.1.schedule]]\nsteps = [200, 400]\nslowdown = 3\n",
               6, "device.1.schedule.steps");
  expect_error("[[device.1.schedule]]\nsteps = [300, 200]\nslowdown = 2\n", 2, "device.1.schedule.steps");
  expect_error("[[device.1.schedule]]\nslowdown = 2\n", 1, "device.1.schedule.steps");
}

TEST(ProfileErrors, MalformedToml) {
  expect_error("name = \"x\"\n[device.0]\nslowdown = \n", 3, "TOML");
  expect_error("[device.0\n", 1, "TOML");
}

TEST(ProfileErrors, MissingFiles) {
  EXPECT_THROW(load_profile("/nonexistent/dir/p.toml"), InputError);
  try {
    load_profile("no-such-profile-name");
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-profile-name"), std::string::npos) << e.what();
  }
}

TEST(Profile, ScheduleBoundaries) {
  const Profile p = load_profile(write_profile(R"(
[device.1]
slowdown = 1.5
[[device.1.schedule]]
steps = [200, 400]
slowdown = 3
delay = { probability = 1, distribution = "constant", value_ms = 2 }
)"));
  const ResolvedProfile r = resolve(p, 2, {});
  const DeviceStraggler& d = r.devices[1];
  EXPECT_EQ(d.slowdown(199), 1.5);
  EXPECT_EQ(d.slowdown(200), 3.0);
  EXPECT_EQ(d.slowdown(399), 3.0);
  EXPECT_EQ(d.slowdown(400), 1.5);
  Rng rng(1);
  EXPECT_EQ(d.draw_delay_s(rng, 199), 0.0);
  EXPECT_DOUBLE_EQ(d.draw_delay_s(rng, 200), 0.002);
  EXPECT_DOUBLE_EQ(d.draw_delay_s(rng, 399), 0.002);
  EXPECT_EQ(d.draw_delay_s(rng, 400), 0.0);
  EXPECT_EQ(r.devices[0].slowdown(300), 1.0);
  EXPECT_TRUE(d.deterministic());
}

TEST(Profile, ResolutionOrder) {
  const Profile p = load_profile(write_profile(R"(
[device.default]
slowdown = 2
delay = { probability = 0.5, distribution = "constant", value_ms = 1 }
sm_fraction = 0.5
[[device.default.schedule]]
steps = [10, 20]
slowdown = 7
[device."*T4*"]
slowdown = 5
[device."Tesla*"]
stall = { probability = 1, distribution = "constant", value_ms = 9 }
[device.1]
slowdown = 3
)"));
  const std::vector<std::string> names{"NVIDIA H100", "Tesla T4", "Tesla T4", "NVIDIA A100"};
  const ResolvedProfile r = resolve(p, 4, names);
  EXPECT_EQ(r.devices[0].slowdown(0), 2.0);   // default
  EXPECT_EQ(r.devices[0].slowdown(15), 7.0);  // default's schedule
  EXPECT_EQ(r.devices[1].slowdown(0), 3.0);   // index beats pattern
  EXPECT_EQ(r.devices[1].slowdown(15), 3.0);  // a section's own slowdown hides the default's schedule
  EXPECT_EQ(r.devices[2].slowdown(0), 5.0);   // pattern beats default
  EXPECT_EQ(r.devices[3].slowdown(0), 2.0);
  for (const auto& d : r.devices) {
    EXPECT_EQ(d.delay_at(0).probability, 0.5) << "inherited from default";
    EXPECT_EQ(d.sm_fraction, 0.5);
  }
  EXPECT_TRUE(r.devices[1].stall_at(0).active()) << "Tesla* matches";
  EXPECT_FALSE(r.devices[0].stall_at(0).active());
  // Without names, patterns match nothing.
  const ResolvedProfile unnamed = resolve(p, 4, {});
  EXPECT_EQ(unnamed.devices[2].slowdown(0), 2.0);
  EXPECT_EQ(unnamed.devices[1].slowdown(0), 3.0);

  // Among several matching patterns, the later one in the file wins.
  const Profile two = load_profile(write_profile("[device.\"*T4\"]\nslowdown = 4\n[device.\"Tesla*\"]\nslowdown = 6\n"));
  EXPECT_EQ(resolve(two, 4, names).devices[1].slowdown(0), 6.0);
}

TEST(Profile, SeededDraws) {
  const Profile p = load_profile(write_profile(
      "seed = 77\n[device.default]\ndelay = { probability = 0.7, distribution = \"exponential\", mean_ms = 4 }\n"));
  EXPECT_EQ(p.seed, 77u);
  const ResolvedProfile r = resolve(p, 3, {});
  EXPECT_FALSE(r.deterministic());
  auto draws = [&](int device) {
    Rng rng = r.delay_stream(device);
    std::vector<double> v;
    for (int s = 0; s < 50; ++s) v.push_back(r.devices[device].draw_delay_s(rng, s));
    return v;
  };
  EXPECT_EQ(draws(1), draws(1));
  EXPECT_NE(draws(1), draws(2));
  // A second resolution of the same profile is the same experiment.
  const ResolvedProfile again = resolve(p, 3, {});
  Rng a = r.delay_stream(0), b = again.delay_stream(0);
  for (int s = 0; s < 20; ++s) EXPECT_EQ(r.devices[0].draw_delay_s(a, s), again.devices[0].draw_delay_s(b, s));
}

TEST(Profile, ZeroProbabilitySwitchesDelayOff) {
  const Profile p = load_profile(write_profile(R"(
[device.default]
delay = { probability = 1, distribution = "exponential", mean_ms = 4 }
[[device.default.schedule]]
steps = [5, 10]
delay = { probability = 0 }
)"));
  const auto r = resolve(p, 1, {});
  EXPECT_TRUE(r.devices[0].delay_at(4).active());
  EXPECT_FALSE(r.devices[0].delay_at(5).active());
  EXPECT_FALSE(r.devices[0].deterministic());
}

TEST(Profile, SlowdownShorthand) {
  const ResolvedProfile r = resolve(profile_from_slowdowns({1, 1, 2, 4}), 4, {});
  EXPECT_EQ(r.devices[3].slowdown(0), 4.0);
  EXPECT_EQ(r.devices[0].slowdown(0), 1.0);
  EXPECT_TRUE(r.deterministic());
  EXPECT_THROW(profile_from_slowdowns({1, 0.5}), InputError);
  try {
    resolve(profile_from_slowdowns({1, 1, 1, 1, 2}), 4, {});
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--slowdown"), std::string::npos) << e.what();
  }
}

TEST(ShippedProfiles, LoadAndResolveFor4And8) {
  setenv("NBSGD_PROFILES_DIR", NBSGD_SOURCE_DIR "/profiles", 1);
  const auto names = list_profiles();
  for (const char* expected : {"none", "one-slow", "mixed-3gen", "paper-random", "flaky", "thermal"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  for (const auto& name : names) {
    for (int n : {4, 8}) {
      SCOPED_TRACE(name + " on " + std::to_string(n));
      const Profile p = load_profile(name);
      EXPECT_EQ(p.name, name);
      EXPECT_FALSE(p.description.empty());
      const ResolvedProfile r = resolve(p, n, std::vector<std::string>(n, "NVIDIA H100 80GB HBM3"));
      ASSERT_EQ(static_cast<int>(r.devices.size()), n);
      for (const auto& d : r.devices) EXPECT_FALSE(d.describe().empty());
    }
  }
  EXPECT_EQ(resolve(load_profile("one-slow"), 4, {}).devices[3].slowdown(0), 4.0);
  EXPECT_EQ(resolve(load_profile("mixed-3gen"), 8, {}).devices[3].slowdown(0), 9.4);
  EXPECT_EQ(resolve(load_profile("mixed-3gen"), 8, {}).devices[6].slowdown(0), 1.0);
  const auto thermal = resolve(load_profile("thermal"), 4, {});
  EXPECT_EQ(thermal.devices[1].slowdown(299), 1.0);
  EXPECT_EQ(thermal.devices[1].slowdown(300), 1.3);
  EXPECT_EQ(thermal.devices[1].slowdown(600), 1.6);
  EXPECT_TRUE(resolve(load_profile("none"), 4, {}).deterministic());
  EXPECT_FALSE(resolve(load_profile("paper-random"), 4, {}).deterministic());
  EXPECT_FALSE(resolve(load_profile("flaky"), 4, {}).deterministic());
  unsetenv("NBSGD_PROFILES_DIR");
  // Without the variable the source tree's profiles/ is found.
  EXPECT_EQ(resolve(load_profile("one-slow"), 4, {}).devices[3].slowdown(0), 4.0);
}

}  // namespace
}  // namespace nbsgd::straggler
