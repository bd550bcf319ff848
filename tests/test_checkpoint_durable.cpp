// Durable checkpoints: the data checksum, a full disk, the generic atomic writer,
// the validated metadata reads, and a writer killed with SIGKILL at random moments
// (every trial must leave the old or the new checkpoint, whole and verified).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "nets/checkpoint.h"
#include "runtime/device/check.h"
#include "runtime/device/file_io.h"
#include "support/small_disk.h"
#include "support/test_support.h"

namespace nbsgd {
namespace {

namespace fs = std::filesystem;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

void expect_input_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no exception thrown";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an InputError: " << e.what();
  }
}

// A checkpoint whose every float is `gen`, with gen in the metadata too, so a reader
// can tell whether it saw one whole generation.
void save_generation(const std::string& path, std::vector<float>& buf, int gen) {
  std::fill(buf.begin(), buf.end(), static_cast<float>(gen));
  const int64_t half = static_cast<int64_t>(buf.size() / 2);
  save_safetensors(path, {{"a", {half}, buf.data()}, {"b", {half}, buf.data() + half}},
                   {{"gen", std::to_string(gen)}});
}

// Loads and checks one whole generation; returns it.
int64_t verify_generation(const std::string& path, size_t floats) {
  const LoadedTensors t = load_safetensors(path);
  EXPECT_TRUE(t.data_checksum_verified);
  const int64_t gen = meta_int(t, "gen", 0, 1 << 30, path);
  size_t seen = 0;
  for (const auto& [name, tensor] : t.tensors) {
    for (float v : tensor.second) EXPECT_EQ(v, static_cast<float>(gen)) << path << " " << name;
    seen += tensor.second.size();
  }
  EXPECT_EQ(seen, floats);
  return gen;
}

TEST(CheckpointDurable, ChecksumCatchesAFlippedDataBit) {
  const std::string dir = test::make_temp_dir("ckpt-crc");
  const std::string path = dir + "/c.safetensors";
  std::vector<float> buf(1000);
  save_generation(path, buf, 3);
  EXPECT_EQ(verify_generation(path, buf.size()), 3);
  const LoadedTensors t = load_safetensors(path);
  EXPECT_EQ(t.metadata.count(kDataChecksumKey), 0u);  // consumed by the loader
  std::string bytes = read_all(path);
  bytes[bytes.size() - 17] ^= 0x10;  // one bit inside tensor "b"
  write_raw(path, bytes);
  expect_input_error([&] { load_safetensors(path); }, {path, kDataChecksumKey, "corrupt"});
}

TEST(CheckpointDurable, ReservedChecksumKeyIsRefusedOnSave) {
  const std::string dir = test::make_temp_dir("ckpt-reserved");
  float x = 1;
  EXPECT_THROW(save_safetensors(dir + "/x.safetensors", {{"x", {1}, &x}}, {{kDataChecksumKey, "0"}}), Error);
  EXPECT_TRUE(names_in(dir).empty());
}

// A full disk: a 64 KiB tmpfs when this process may mount one, else a file size limit
// in a child (write() then fails with EFBIG, the same path through the writer).
TEST(CheckpointDurable, FullDiskIsAOneLineErrorAndKeepsTheOldCheckpoint) {
  test::SmallDisk disk(64 << 10);
  std::vector<float> small(1024), big(64 << 10);  // 4 KiB fits, 256 KiB does not
  if (disk.ok()) {
    const std::string path = disk.dir() + "/c.safetensors";
    save_generation(path, small, 1);
    const std::string before = read_all(path);
    expect_input_error([&] { save_generation(path, big, 2); }, {"cannot write checkpoint", path, "No space left"});
    EXPECT_EQ(read_all(path), before);
    EXPECT_EQ(names_in(disk.dir()), std::vector<std::string>{"c.safetensors"});
    // The generic writer, too.
    expect_input_error([&] { write_file_atomically(disk.dir() + "/s.json", std::string(100 << 10, 'x'), "summary"); },
                       {"cannot write summary", disk.dir() + "/s.json", "No space left"});
    EXPECT_EQ(names_in(disk.dir()), std::vector<std::string>{"c.safetensors"});
    return;
  }
  const std::string dir = test::make_temp_dir("ckpt-fsize");
  const std::string path = dir + "/c.safetensors";
  save_generation(path, small, 1);
  const std::string before = read_all(path);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    rlimit lim{64 << 10, 64 << 10};
    setrlimit(RLIMIT_FSIZE, &lim);
    try {
      save_generation(path, big, 2);
    } catch (const InputError& e) {
      const std::string msg = e.what();
      _exit(msg.find(path) != std::string::npos && msg.find('\n') == std::string::npos ? 3 : 4);
    }
    _exit(5);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3) << "(" << disk.why() << "; used RLIMIT_FSIZE instead)";
  EXPECT_EQ(read_all(path), before);
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"c.safetensors"});
}

TEST(CheckpointDurable, AtomicTextWriterReplacesWholeAndNamesTheFile) {
  const std::string dir = test::make_temp_dir("atomic-text");
  const std::string path = dir + "/summary.json";
  write_file_atomically(path, "first\n", "summary");
  write_file_atomically(path, "second\n", "summary");
  EXPECT_EQ(read_all(path), "second\n");
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"summary.json"});
  expect_input_error([&] { write_file_atomically(dir + "/no/such/summary.json", "x", "summary"); },
                     {"cannot write summary", dir + "/no/such/summary.json"});
  // A temporary left by a writer that died (pid 0x7ffffff0 is not alive) is cleaned up.
  write_raw(path + ".tmp.2147483632", "half");
  write_raw(dir + "/other.tmp.2147483632", "not ours");
  write_file_atomically(path, "third\n", "summary");
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"other.tmp.2147483632", "summary.json"}));
}

TEST(CheckpointDurable, MetadataReadsAreValidated) {
  const std::string p = "run/c.safetensors";
  LoadedTensors t;
  t.metadata = {{"i", "42"},       {"neg", "-7"},     {"plus", "+5"},        {"big", "99999999999999999999"},
                {"junk", "12abc"}, {"space", " 1"},   {"empty", ""},         {"d", "1.5e-3"},
                {"inf", "inf"},    {"nan", "nan"},    {"huge", "1e400"},     {"u", "18446744073709551615"},
                {"ctl", "1\n2"},   {"hex", "0x10"},   {"long", std::string(100, 'a')}};
  EXPECT_EQ(meta_int(t, "i", 0, 100, p), 42);
  EXPECT_EQ(meta_int(t, "neg", -10, 0, p), -7);
  EXPECT_EQ(meta_int(t, "plus", 0, 10, p), 5);
  EXPECT_EQ(meta_u64(t, "u", 0, std::numeric_limits<uint64_t>::max(), p), std::numeric_limits<uint64_t>::max());
  EXPECT_DOUBLE_EQ(meta_double(t, "d", 0, 1, p), 1.5e-3);
  EXPECT_EQ(meta_string(t, "long", p).size(), 100u);
  const std::string pre = "checkpoint " + p + ": metadata '";
  expect_input_error([&] { meta_int(t, "i", 0, 10, p); }, {pre + "i' = '42'", "out of range [0, 10]"});
  expect_input_error([&] { meta_int(t, "big", 0, 10, p); }, {pre + "big'", "64-bit"});
  expect_input_error([&] { meta_int(t, "junk", 0, 10, p); }, {pre + "junk'", "not an integer"});
  expect_input_error([&] { meta_int(t, "space", 0, 10, p); }, {pre + "space'", "not an integer"});
  expect_input_error([&] { meta_int(t, "empty", 0, 10, p); }, {pre + "empty'", "not an integer"});
  expect_input_error([&] { meta_int(t, "hex", 0, 100, p); }, {pre + "hex'", "not an integer"});
  expect_input_error([&] { meta_int(t, "ctl", 0, 100, p); }, {pre + "ctl' = '1?2'", "not an integer"});
  expect_input_error([&] { meta_int(t, "missing", 0, 10, p); }, {"checkpoint " + p, "no 'missing'"});
  expect_input_error([&] { meta_u64(t, "neg", 0, 10, p); }, {pre + "neg'", "non-negative"});
  expect_input_error([&] { meta_double(t, "inf", 0, 1e300, p); }, {pre + "inf'", "finite"});
  expect_input_error([&] { meta_double(t, "nan", 0, 1e300, p); }, {pre + "nan'", "finite"});
  expect_input_error([&] { meta_double(t, "huge", 0, 1e300, p); }, {pre + "huge'", "finite"});
  expect_input_error([&] { meta_double(t, "d", 1, 2, p); }, {pre + "d'", "out of range [1, 2]"});
  expect_input_error([&] { meta_double(t, "junk", 0, 100, p); }, {pre + "junk'", "not a number"});
  expect_input_error([&] { meta_string(t, "long", p, 10); }, {pre + "long' = 'aaaa", "longer than 10 bytes"});
}

// The writer is killed with SIGKILL at a random moment while it rewrites a 4 MB
// checkpoint in a loop; after each kill the file on disk must be one whole,
// checksum-verified generation, never older than the one before the trial.
TEST(CheckpointDurable, SigkillDuringWritesAlwaysLeavesAWholeCheckpoint) {
  constexpr int kTrials = 200;
  const std::string dir = test::make_temp_dir("ckpt-kill");
  const std::string path = dir + "/c.safetensors";
  std::vector<float> buf(1 << 20);  // 4 MB
  save_generation(path, buf, 0);
  std::mt19937 rng(12345);
  int64_t last = 0;
  int mid_write = 0, advanced = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    const int base = (trial + 1) * 1000;
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(ready[0]);
      (void)!write(ready[1], "r", 1);  // started: the parent's delay counts from here
      try {
        for (int gen = base;; ++gen) save_generation(path, buf, gen);
      } catch (...) {
      }
      _exit(1);  // a failed save: the parent sees no SIGKILL and fails
    }
    close(ready[1]);
    char c;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    close(ready[0]);
    // 0..30 ms: a write of 4 MB plus two fsyncs takes a few ms here, so kills land
    // before the first rename, inside writes, inside fsyncs and between files.
    const timespec delay{0, std::uniform_int_distribution<long>(0, 30'000'000)(rng)};
    nanosleep(&delay, nullptr);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    if (fs::exists(path + ".tmp." + std::to_string(pid))) ++mid_write;
    int64_t gen = -1;
    ASSERT_NO_THROW(gen = verify_generation(path, buf.size())) << "trial " << trial;
    ASSERT_TRUE(gen == last || (gen >= base && gen < base + 1000000)) << "trial " << trial << ": gen " << gen;
    if (gen != last) ++advanced;
    last = gen;
  }
  RecordProperty("mid_write_kills", mid_write);
  RecordProperty("generations_advanced", advanced);
  std::printf("[ trials ] %d SIGKILLs: %d during a write (temporary file left), %d after a new checkpoint "
              "landed; every one left a whole, verified checkpoint\n",
              kTrials, mid_write, advanced);
  // Both outcomes must have been exercised, or the test proved nothing.
  EXPECT_GT(mid_write, 0);
  EXPECT_GT(advanced, 0);
  // The next save removes the dead writers' temporaries.
  save_generation(path, buf, 1);
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"c.safetensors"});
}

}  // namespace
}  // namespace nbsgd
