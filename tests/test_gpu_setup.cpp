// The decisions of the CUDA path that the host can check (label host): how a GPU's
// SMs are split among partitions, when a visible but unusable GPU is an error, the
// event flags, the device guard's set-and-restore, which GPU pairs get peer access,
// how a cuDNN algorithm is picked, the commit's one flag read per block, and
// evaluation's own staging buffers. Each is a pure function or runs on the host
// backend, so a machine without a GPU tests the logic the GPU path relies on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "nets/cuda/conv_pick.h"
#include "runtime/device/check.h"
#include "runtime/device/context.h"
#include "runtime/device/device.h"
#include "runtime/device/device_guard.h"
#include "runtime/device/event_flags.h"
#include "runtime/device/peer.h"
#include "runtime/device/sm_split.h"
#include "runtime/device/stream.h"
#include "runtime/train/worker.h"
#include "support/test_support.h"

namespace nbsgd::test {
namespace {

namespace fs = std::filesystem;

// Sets an environment variable for a scope and puts the old value back.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

std::string expect_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an nbsgd::Error";
  return "";
}

// ---------------------------------------------------------------- SM split

std::vector<int> sizes(const SmSplitPlan& p) {
  std::vector<int> s;
  for (size_t k = 0; k < p.counts.size(); ++k) s.push_back(p.sms(k));
  return s;
}

TEST(SmSplit, ArchitectureSteps) {
  EXPECT_EQ(sm_split_step(sm_geometry_guideline(7, 40)), 2);   // T4: min 2, multiples of 2
  EXPECT_EQ(sm_split_step(sm_geometry_guideline(8, 108)), 4);  // A100: min 4, multiples of 2
  EXPECT_EQ(sm_split_step(sm_geometry_guideline(9, 132)), 8);  // H100/H200: min 8, multiples of 8
  EXPECT_EQ(sm_split_step(sm_geometry_guideline(10, 148)), 8);
  EXPECT_EQ(sm_split_step({100, 5, 2}), 6);  // a minimum that is no multiple of the alignment
}

// The over-subscription the nearest-multiple rounding caused: 4 x 0.25 asked for 112
// of an A100's 108 SMs and 128 of an H100 PCIe's 114.
TEST(SmSplit, FourQuartersFitA100H100PcieAndH200) {
  const std::vector<double> q(4, 0.25);
  const SmSplitPlan a100 = plan_sm_split(sm_geometry_guideline(8, 108), q, 0);
  EXPECT_EQ(sizes(a100), (std::vector<int>{24, 24, 24, 24}));
  EXPECT_EQ(a100.unit, 24);
  EXPECT_EQ(a100.groups, 4);
  const SmSplitPlan h100 = plan_sm_split(sm_geometry_guideline(9, 114), q, 0);
  EXPECT_EQ(sizes(h100), (std::vector<int>{24, 24, 24, 24}));
  EXPECT_LE(h100.used(), 114);
  const SmSplitPlan h200 = plan_sm_split(sm_geometry_guideline(9, 132), q, 0);
  EXPECT_EQ(sizes(h200), (std::vector<int>{32, 32, 32, 32}));
  EXPECT_EQ(h200.used(), 128);
}

TEST(SmSplit, UnequalSharesAreOneSplitIntoEqualGroups) {
  const SmSplitPlan p = plan_sm_split(sm_geometry_guideline(9, 132), {0.5, 0.25, 0.25}, 0);
  EXPECT_EQ(sizes(p), (std::vector<int>{64, 32, 32}));
  EXPECT_EQ(p.unit, 32);
  EXPECT_EQ(p.counts, (std::vector<int>{2, 1, 1}));
  EXPECT_EQ(p.groups, 4);
  // A100: 0.5 -> 52, 0.3 -> 32 (multiples of 4); groups of gcd(52, 32) = 4 SMs.
  const SmSplitPlan a = plan_sm_split(sm_geometry_guideline(8, 108), {0.5, 0.3}, 0);
  EXPECT_EQ(sizes(a), (std::vector<int>{52, 32}));
  EXPECT_EQ(a.unit, 4);
  EXPECT_EQ(a.groups, 21);
}

// For any shares that fit, every partition is a whole number of steps (so at least
// the minimum), never above its share, at most one step below it, and all of them
// together never exceed the GPU; the groups are valid partitions themselves.
TEST(SmSplit, RandomSharesNeverExceedTheGpu) {
  std::mt19937 rng(7);
  for (const auto& [cc, total] : std::vector<std::pair<int, int>>{{7, 40}, {8, 108}, {8, 84}, {9, 114}, {9, 132}}) {
    const SmGeometry g = sm_geometry_guideline(cc, total);
    const int step = sm_split_step(g);
    for (int trial = 0; trial < 500; ++trial) {
      const int n = 1 + static_cast<int>(rng() % 6);
      std::vector<double> w(n);
      double sum = 0;
      for (double& x : w) sum += (x = 1.0 + rng() % 100);
      const double room = 0.5 + 0.5 * (rng() % 1000) / 1000.0;  // shares add up to at most 1
      std::vector<double> shares;
      bool too_small = false;
      for (double x : w) {
        shares.push_back(x / sum * room);
        too_small = too_small || shares.back() * total < step;
      }
      if (too_small) {
        EXPECT_THROW(plan_sm_split(g, shares, 0), Error);
        continue;
      }
      const SmSplitPlan p = plan_sm_split(g, shares, 0);
      int used = 0;
      for (size_t k = 0; k < shares.size(); ++k) {
        const int s = p.sms(k);
        used += s;
        EXPECT_EQ(s % step, 0);
        EXPECT_LE(s, shares[k] * total + 1e-6);
        EXPECT_GT(s, shares[k] * total - step);
      }
      EXPECT_EQ(used, p.used());
      EXPECT_LE(used, total);
      EXPECT_EQ(p.unit % step, 0);
      EXPECT_GE(p.unit, g.min_size);
    }
  }
}

TEST(SmSplit, ImpossibleSharesAreErrorsNamingGpuAndShare) {
  std::string m = expect_error([] { plan_sm_split(sm_geometry_guideline(9, 132), {0.5, 0.03}, 3); });
  EXPECT_NE(m.find("GPU 3"), std::string::npos) << m;
  EXPECT_NE(m.find("0.03"), std::string::npos) << m;
  EXPECT_NE(m.find("below the smallest partition"), std::string::npos) << m;
  m = expect_error([] { plan_sm_split(sm_geometry_guideline(9, 132), {0.5, 0.75}, 1); });
  EXPECT_NE(m.find("GPU 1"), std::string::npos) << m;
  EXPECT_NE(m.find("1.25"), std::string::npos) << m;
  EXPECT_THROW(plan_sm_split(sm_geometry_guideline(9, 132), {0.0}, 0), Error);
  EXPECT_THROW(plan_sm_split(sm_geometry_guideline(9, 132), {1.5}, 0), Error);
}

TEST(SmSplit, SelectDevicesGivesEachPartitionItsGpusPlan) {
  DeviceList gpus;
  gpus.backend = Backend::Cuda;
  for (int i = 0; i < 2; ++i) {
    Device d;
    d.backend = Backend::Cuda;
    d.index = d.ordinal = i;
    d.kind = "cuda";
    gpus.devices.push_back(d);
  }
  gpus.peer_access.assign(2, std::vector<int>(2, 1));
  const DeviceList l = select_devices(gpus, "0:0.5,1,0:0.25,1:0.5,0:0.25");
  ASSERT_EQ(l.devices.size(), 5u);
  const std::vector<double> gpu0{0.5, 0.25, 0.25};
  EXPECT_EQ(l.devices[0].gpu_shares, gpu0);
  EXPECT_EQ(l.devices[0].share_index, 0);
  EXPECT_EQ(l.devices[2].gpu_shares, gpu0);
  EXPECT_EQ(l.devices[2].share_index, 1);
  EXPECT_EQ(l.devices[4].share_index, 2);
  EXPECT_EQ(l.devices[3].gpu_shares, std::vector<double>{0.5});
  EXPECT_EQ(l.devices[3].share_index, 0);
  EXPECT_EQ(l.devices[1].kind, "cuda");
  EXPECT_TRUE(l.devices[1].gpu_shares.empty());
}

// A partition that cannot be made is an error naming the device and its share; it
// never becomes a throttled whole GPU. (Here: no CUDA at all.)
TEST(SmSplit, PartitionThatCannotBeMadeIsAnError) {
  Device d;
  d.backend = Backend::Cuda;
  d.kind = "cuda-partition";
  d.index = 2;
  d.ordinal = 0;
  d.sm_fraction = 0.25;
  d.gpu_shares = {0.5, 0.25, 0.25};
  d.share_index = 1;
  const std::string m = expect_error([&] { DeviceContext c(d, ClockKind::Real); });
  EXPECT_NE(m.find("device 2 (GPU 0, SM share 0.25)"), std::string::npos) << m;
  EXPECT_NE(m.find("cannot make its SM partition"), std::string::npos) << m;
}

// ---------------------------------------------------------------- a visible GPU

// The fallback paths need a machine where CUDA cannot be used (as here); on a GPU
// machine discovery succeeds and they are not reached.
bool cuda_usable() {
  ScopedEnv not_required("NBSGD_REQUIRE_GPU", nullptr);
  DiscoverOptions o;
  o.probe.dev_dir = "/nonexistent";
  o.probe.nvidia_smi = "";
  return discover_devices(o).backend == Backend::Cuda;
}

class VisibleGpu : public testing::Test {
 protected:
  void SetUp() override {
    if (cuda_usable()) GTEST_SKIP() << "CUDA is usable here: the no-CUDA paths are not reached";
    dir_ = make_temp_dir("probe");
    fs::create_directory(dir_ + "/dev");
    for (const char* f : {"nvidiactl", "nvidia-uvm", "null"}) std::ofstream(dir_ + "/dev/" + f) << "";
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string script(const std::string& name, const std::string& body) {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p) << "#!/bin/sh\n" << body << "\n";
    fs::permissions(p, fs::perms::owner_all);
    return p;
  }
  GpuProbe probe(const std::string& smi = "") {
    GpuProbe p;
    p.dev_dir = dir_ + "/dev";
    p.nvidia_smi = smi;
    return p;
  }
  std::string dir_;
};

TEST_F(VisibleGpu, DeviceNodesAndNvidiaSmiAreSigns) {  // pure; needs no GPU either way
  EXPECT_EQ(visible_gpu(probe()), "") << "nvidiactl and nvidia-uvm come with the driver alone";
  EXPECT_EQ(visible_gpu(probe(dir_ + "/no-such-nvidia-smi")), "");
  EXPECT_EQ(visible_gpu(probe(script("smi-broken", "echo 'NVIDIA-SMI has failed because it couldn'\"'\"'t communicate "
                                                   "with the NVIDIA driver'; exit 9"))),
            "");
  const std::string smi = script("smi", "echo 'GPU 0: NVIDIA H200 (UUID: GPU-1234)'");
  EXPECT_EQ(visible_gpu(probe(smi)), "nvidia-smi: GPU 0: NVIDIA H200 (UUID: GPU-1234)");
  std::ofstream(dir_ + "/dev/nvidia0") << "";
  EXPECT_EQ(visible_gpu(probe()), dir_ + "/dev/nvidia0");
}

TEST_F(VisibleGpu, NoGpuVisibleFallsBackToHostWorkersInOneLine) {
  DiscoverOptions o;
  o.probe = probe();
  o.default_host_workers = 3;
  const DeviceList l = discover_devices(o);
  ASSERT_EQ(l.backend, Backend::Host);  // this machine: no usable CUDA
  EXPECT_EQ(l.devices.size(), 3u);
  EXPECT_FALSE(l.fallback_reason.empty());
  EXPECT_EQ(fallback_line(l).find('\n'), std::string::npos);
}

TEST_F(VisibleGpu, VisibleButUnusableGpuIsAnError) {
  std::ofstream(dir_ + "/dev/nvidia1") << "";
  DiscoverOptions o;
  o.probe = probe();
  const std::string m = expect_error([&] { discover_devices(o); });
  EXPECT_NE(m.find("a GPU is visible (" + dir_ + "/dev/nvidia1) but CUDA cannot use it: "), std::string::npos) << m;
  EXPECT_NE(m.find("--host-workers"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  // Asking for host workers, or hiding the GPUs from CUDA on purpose, is no error.
  o.host_workers = 2;
  EXPECT_EQ(discover_devices(o).devices.size(), 2u);
  o.host_workers = 0;
  ScopedEnv hide("CUDA_VISIBLE_DEVICES", "");
  EXPECT_EQ(discover_devices(o).backend, Backend::Host);
}

TEST_F(VisibleGpu, EveryDiscoveringCommandExitsNonZeroWithOneLine) {
  const std::string smi = script("smi", "echo 'GPU 0: NVIDIA H200 (UUID: GPU-1234)'");
  ScopedEnv dev("NBSGD_GPU_PROBE_DEV", (dir_ + "/dev").c_str());
  ScopedEnv s("NBSGD_GPU_PROBE_SMI", smi.c_str());
  const std::string out = dir_ + "/run";
  for (const std::string& args : {std::string("devices"), std::string("devices --json"),
                                 "train --steps 1 --train-limit 256 --data synthetic-cifar --quiet --out " + out}) {
    const CommandResult r = run_nbsgd(args);
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.output;
    EXPECT_EQ(r.output.rfind("nbsgd: error: a GPU is visible (nvidia-smi: GPU 0: NVIDIA H200", 0), 0u)
        << args << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << args << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(out)) << "no half-written run directory";
  const CommandResult host = run_nbsgd("devices --host-workers 2");
  EXPECT_EQ(host.exit_code, 0) << host.output;
}

TEST_F(VisibleGpu, RequiredGpuMakesTheFallbackAnError) {
  DiscoverOptions o;
  o.probe = probe();
  ScopedEnv req("NBSGD_REQUIRE_GPU", "1");
  const std::string m = expect_error([&] { discover_devices(o); });
  EXPECT_EQ(m.rfind("NBSGD_REQUIRE_GPU is set, but no GPU can be used: ", 0), 0u) << m;
  o.host_workers = 2;  // asked for host workers explicitly: no error
  EXPECT_EQ(discover_devices(o).devices.size(), 2u);
}

TEST(GpuRequired, FollowsTheVariable) {
  {
    ScopedEnv e("NBSGD_REQUIRE_GPU", nullptr);
    EXPECT_FALSE(gpu_required());
  }
  for (const char* off : {"", "0"}) {
    ScopedEnv e("NBSGD_REQUIRE_GPU", off);
    EXPECT_FALSE(gpu_required()) << off;
  }
  for (const char* on : {"1", "yes"}) {
    ScopedEnv e("NBSGD_REQUIRE_GPU", on);
    EXPECT_TRUE(gpu_required()) << on;
  }
}

TEST(CudaConnections, RaisedUnlessTheUserChose) {
  {
    ScopedEnv e("CUDA_DEVICE_MAX_CONNECTIONS", nullptr);
    EXPECT_EQ(raise_cuda_connections(), std::to_string(kCudaMaxConnections));
    EXPECT_STREQ(std::getenv("CUDA_DEVICE_MAX_CONNECTIONS"), "32");
  }
  {
    ScopedEnv e("CUDA_DEVICE_MAX_CONNECTIONS", "4");
    EXPECT_EQ(raise_cuda_connections(), "4");
  }
  // Discovery raises it before its first CUDA call.
  ScopedEnv e("CUDA_DEVICE_MAX_CONNECTIONS", nullptr);
  ScopedEnv not_required("NBSGD_REQUIRE_GPU", nullptr);
  DiscoverOptions o;
  o.probe.dev_dir = "/nonexistent";
  o.probe.nvidia_smi = "";
  discover_devices(o);
  EXPECT_STREQ(std::getenv("CUDA_DEVICE_MAX_CONNECTIONS"), "32");
}

// ---------------------------------------------------------------- events

TEST(EventTiming, OnlyTimedEventsMeasureOnBothBackends) {
  EXPECT_EQ(cuda_event_flags(false), kCudaEventBlockingSync | kCudaEventDisableTiming);
  EXPECT_EQ(cuda_event_flags(true), kCudaEventBlockingSync);
  Stream s = Stream::host({});
  Event a(Backend::Host, 0), b(Backend::Host, 0);
  Event ta(Backend::Host, 0, Timing::On), tb(Backend::Host, 0, Timing::On);
  EXPECT_FALSE(a.timed());
  EXPECT_TRUE(ta.timed());
  s.record(a);
  s.record(ta);
  s.record(b);
  s.record(tb);
  s.synchronize();
  EXPECT_GE(Event::elapsed_s(ta, tb), 0.0);
  const std::string m = expect_error([&] { Event::elapsed_s(a, b); });
  EXPECT_NE(m.find("Timing::On"), std::string::npos) << m;
  EXPECT_THROW(Event::elapsed_s(ta, b), Error);
}

// ---------------------------------------------------------------- device guard

struct FakeDevices {
  int* current;
  std::vector<int>* sets;
  int get() const { return *current; }
  void set(int d) const {
    sets->push_back(d);
    *current = d;
  }
  void restore(int d) const noexcept { set(d); }
};

TEST(DeviceGuardTest, SetsForTheScopeAndRestores) {
  int current = 1;
  std::vector<int> sets;
  {
    BasicDeviceGuard<FakeDevices> g(true, 3, FakeDevices{&current, &sets});
    EXPECT_EQ(current, 3);
    {
      BasicDeviceGuard<FakeDevices> inner(true, 0, FakeDevices{&current, &sets});
      EXPECT_EQ(current, 0);
    }
    EXPECT_EQ(current, 3);
  }
  EXPECT_EQ(current, 1);
  EXPECT_EQ(sets, (std::vector<int>{3, 0, 3, 1}));
  sets.clear();
  { BasicDeviceGuard<FakeDevices> same(true, 1, FakeDevices{&current, &sets}); }
  { BasicDeviceGuard<FakeDevices> host(false, 5, FakeDevices{&current, &sets}); }
  EXPECT_TRUE(sets.empty()) << "already current, or a host device: no calls";
  EXPECT_EQ(current, 1);
  DeviceGuard host_backend(Backend::Host, 7);  // no CUDA call on the host backend
}

// ---------------------------------------------------------------- peer access

TEST(PeerAccess, DistinctSupportedPairsOnce) {
  const auto can = [](int a, int b) { return !(a == 0 && b == 2); };
  const auto p = peer_pairs({2, 0, 1, 1, 0}, can);
  const std::vector<std::pair<int, int>> want{{0, 1}, {1, 0}, {1, 2}, {2, 0}, {2, 1}};
  EXPECT_EQ(p, want);
  EXPECT_TRUE(peer_pairs({0, 0, 0}, can).empty()) << "partitions of one GPU need no peer access";
  std::vector<DeviceContext> ctxs;
  ctxs.emplace_back(host_devices(1, "t").devices[0], ClockKind::Real);
  EXPECT_TRUE(enable_peer_access({&ctxs[0]}).empty());
}

// ---------------------------------------------------------------- cuDNN choice

TEST(ConvPick, Fp32OnlyDeterministicOnRequestAndTheAlgorithmsOwnWorkspace) {
  using nets::ConvAlgoCandidate;
  const std::vector<ConvAlgoCandidate> c{
      {7, true, true, true},     // fastest, but TENSOR_OP: FP32 would run as TF32
      {6, false, false, true},   // failed status
      {1, true, false, false},   // FP32, not deterministic, needs 1000 bytes
      {0, true, false, false},   // FP32, not deterministic, needs 0
      {2, true, false, true},    // FP32, deterministic, needs 500
  };
  const auto ws = [](int algo) -> size_t { return algo == 1 ? 1000 : algo == 2 ? 500 : 0; };
  auto ch = nets::pick_conv_algo(c, 4096, false, ws);
  EXPECT_EQ(ch.algo, 1);
  EXPECT_EQ(ch.workspace, 1000u);
  ch = nets::pick_conv_algo(c, 999, false, ws);  // algorithm 1's own workspace does not fit
  EXPECT_EQ(ch.algo, 0);
  EXPECT_EQ(ch.workspace, 0u);
  ch = nets::pick_conv_algo(c, 4096, true, ws);
  EXPECT_EQ(ch.algo, 2);
  EXPECT_EQ(ch.workspace, 500u);
  EXPECT_EQ(nets::pick_conv_algo(c, 100, true, ws).algo, -1);
}

// ---------------------------------------------------------------- evaluation

TEST(Evaluate, UsesItsOwnStagingBuffers) {
  engine::Worker w(0, host_devices(1, "t").devices[0], ClockKind::Real, "mlp", 16, 2, 3);
  data::Dataset ds;
  ds.n = 40;
  ds.c = 1;
  ds.h = ds.w = 28;
  ds.classes = 10;
  ds.images.assign(size_t(ds.n) * 784, 0.5f);
  for (int i = 0; i < ds.n; ++i) ds.labels.push_back(i % 10);
  // A cancelled mini-batch's gather may still target slot 0: evaluation must not
  // write its staging buffers.
  engine::Slot& s0 = w.slot(0);
  std::fill_n(s0.pinned_x.as<float>(), 16 * 784, -7.0f);
  std::fill_n(s0.x.as<float>(), 16 * 784, -9.0f);
  const auto [loss, acc] = w.evaluate(ds, 16);
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_GE(acc, 0.0);
  for (int i = 0; i < 16 * 784; i += 97) {
    ASSERT_EQ(s0.pinned_x.as<float>()[i], -7.0f) << i;
    ASSERT_EQ(s0.x.as<float>()[i], -9.0f) << i;
  }
}

}  // namespace
}  // namespace nbsgd::test
