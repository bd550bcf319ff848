// The bad-input suite: the real `nbsgd` binary, one case per way a careful or a
// hostile user can get the input wrong. Every case asserts
//   - an exit code that is non-zero and below 128 (no signal, no abort);
//   - exactly one line of output, "nbsgd: error: ...", naming the culprit (the flag,
//     file or key: every `culprits` string must appear in it);
//   - nothing half-written: no --out folder where validation failed, no *.tmp.* file.
// The table is plain data so that more cases (trainer, resume, signals) are one row
// each: `args` may use {dir} (the case's own empty folder) and {src} (the source
// tree); `setup` writes the files the case needs into {dir}.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <ostream>
#include <string>
#include <vector>

#include "support/small_disk.h"
#include "support/test_support.h"

namespace nbsgd::test {
namespace {

namespace fs = std::filesystem;

struct BadCase {
  std::string name;
  std::string args;
  std::vector<std::string> culprits;
  std::function<void(const std::string& dir)> setup = nullptr;
};

// gtest prints a failing case by its name, not as bytes.
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
  return s;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file from a header text and a data section.
std::string safetensors(const std::string& header, const std::string& data, uint64_t len_field = ~0ull) {
  const uint64_t len = len_field == ~0ull ? header.size() : len_field;
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  return out + header + data;
}

// Big-endian IDX files for a tiny Fashion-MNIST folder; `tweak` edits the bytes of
// one of them ("train-images", "train-labels", "t10k-images", "t10k-labels").
std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}
void write_idx_dir(const std::string& dir, const std::string& which,
                   const std::function<void(std::string&)>& tweak) {
  const uint32_t n = 4;
  for (const std::string prefix : {"train", "t10k"}) {
    std::string images = be32(0x803) + be32(n) + be32(28) + be32(28) + std::string(n * 784, '\x10');
    std::string labels = be32(0x801) + be32(n) + std::string("\x01\x02\x03\x04", 4);
    if (which == prefix + "-images") tweak(images);
    if (which == prefix + "-labels") tweak(labels);
    write_file(dir + "/" + prefix + "-images-idx3-ubyte", images);
    write_file(dir + "/" + prefix + "-labels-idx1-ubyte", labels);
  }
}

std::string gzip_bytes(const std::string& raw) {
  z_stream zs{};
  deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(raw.size() + 1024, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

const std::string kTrain = "train --net mlp --host-workers 2 --train-limit 64 --test-limit 32 --steps 1 --quiet ";
const std::string kProfileTrain = kTrain + "--out {dir}/out --profile {dir}/p.toml";
const std::string kProfilePredict = "predict --workers 2 --steps 5 --trials 10 --profile {dir}/p.toml";

std::function<void(const std::string&)> file(const std::string& name, const std::string& text) {
  return [=](const std::string& dir) { write_file(dir + "/" + name, text); };
}

const std::string kDelayHead = "[device.default]\ndelay = { distribution = ";

// A real checkpoint for the resume rows: a 1-step run of `base` + `extra` into
// {dir}/ck. With `edit`, its metadata is edited (the tensors and their checksum
// stay whole) and the result written to {dir}/c.safetensors.
const std::string kCkBase = "train --net mlp --train-limit 64 --test-limit 32 --steps 1 --quiet ";
std::function<void(const std::string&)> checkpoint(const std::string& extra,
                                                   std::function<void(nlohmann::json&)> edit = nullptr) {
  return [=](const std::string& dir) {
    const CommandResult r = run_nbsgd(kCkBase + extra + " --out " + dir + "/ck");
    if (r.exit_code != 0) throw std::runtime_error("making the checkpoint failed: " + r.output);
    if (!edit) return;
    std::ifstream in(dir + "/ck/checkpoint.safetensors", std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
    edit(header["__metadata__"]);
    std::string text = header.dump();
    text.resize((text.size() + 7) / 8 * 8, ' ');
    write_file(dir + "/c.safetensors", safetensors(text, bytes.substr(8 + n)));
  };
}
std::function<void(nlohmann::json&)> set_meta(const std::string& key, const std::string& value) {
  return [=](nlohmann::json& m) { m[key] = value; };
}
// A resume of {dir}/ck's checkpoint (or {dir}/c.safetensors) with other flags.
std::string resume(const std::string& flags, const std::string& ck = "{dir}/ck/checkpoint.safetensors") {
  return "train --net mlp --train-limit 64 --test-limit 32 --steps 5 --quiet --out {dir}/out --resume " + ck + " " +
         flags;
}
const std::string kEdited = "{dir}/c.safetensors";

std::vector<BadCase> cases() {
  const std::string f8(8, '\0');  // two floats
  return {
      // ---- flags that size memory
      {"InflightHuge", kTrain + "--out {dir}/out --inflight 1000", {"--inflight 1000"}},
      {"InflightZero", kTrain + "--out {dir}/out --inflight 0", {"--inflight 0"}},
      {"BatchHuge", kTrain + "--out {dir}/out --batch 1000000000", {"--batch 1000000000"}},
      {"BatchZero", kTrain + "--out {dir}/out --batch 0", {"--batch 0"}},
      {"SplitZero", kTrain + "--out {dir}/out --split 0", {"--split 0"}},
      {"SplitNotDivisor", kTrain + "--out {dir}/out --batch 128 --split 3", {"--split 3", "divisor"}},
      {"SplitAboveBatch", kTrain + "--out {dir}/out --batch 16 --split 32", {"--split 32"}},
      {"CapHuge", kTrain + "--out {dir}/out --window quorum:4 --cap 99999999999", {"--cap 99999999999"}},
      {"PredictDeadlineHuge", "predict --windows deadline:1e9", {"--windows deadline:1e9"}},
      {"PredictLongDeadlineNoCap", "predict --windows deadline:1e5", {"--windows deadline:1e5", "--cap"}},
      {"PredictStepsHuge", "predict --steps 100000000", {"--steps 100000000"}},
      {"PredictTrialsHuge", "predict --trials 100000000000", {"--trials 100000000000"}},
      {"PredictBatchHuge", "predict --batch 1000000000", {"--batch 1000000000"}},
      {"TopologyWorkersHuge", "topology --show complete --workers 100000", {"--workers"}},
      // ---- durations beyond the virtual clock's bound
      {"SlowdownHuge", kTrain + "--out {dir}/out --slowdown 1e15,1", {"--slowdown", "1e15"}},
      {"PredictSlowdownHuge", "predict --workers 2 --slowdown 1e15,1", {"--slowdown 1e15,1"}},
      {"WindowDeadlineHuge", kTrain + "--out {dir}/out --window deadline:1e308", {"--window deadline:1e308"}},
      {"PredictWindowDeadlineHuge", "predict --windows deadline:1e308", {"--windows deadline:1e308"}},
      {"VirtualGflopsTiny", kTrain + "--out {dir}/out --virtual-gflops 1e-300", {"--virtual-gflops"}},
      {"VirtualOverheadHuge", kTrain + "--out {dir}/out --virtual-overhead-us 1e300", {"--virtual-overhead-us"}},
      {"PredictComputeMsHuge", "predict --workers 2 --compute-ms 1e300", {"--compute-ms"}},
      {"ProfileValueMsHuge", kProfileTrain, {"p.toml:2", "value_ms", "1e+300"},
       file("p.toml", kDelayHead + "\"constant\", value_ms = 1e300 }\n")},
      {"ProfileMeanMsHuge", kProfilePredict, {"p.toml:2", "mean_ms"},
       file("p.toml", kDelayHead + "\"exponential\", mean_ms = 1e300 }\n")},
      {"ProfileSlowdownHuge", kProfileTrain, {"p.toml:2", "slowdown"}, file("p.toml", "[device.0]\nslowdown = 1e15\n")},
      {"ProfileLognormalMuHuge", kProfilePredict, {"p.toml:2", ".mu"},
       file("p.toml", kDelayHead + "\"lognormal\", mu = 1e6, sigma = 1 }\n")},
      {"ProfileParetoScaleHuge", kProfilePredict, {"p.toml:2", "scale_ms"},
       file("p.toml", kDelayHead + "\"pareto\", scale_ms = 1e12, alpha = 2 }\n")},
      // ---- one worker limit everywhere (what the exchanges support)
      {"TrainWorkersAboveLimit", kTrain + "--out {dir}/out --host-workers 65", {"--host-workers"}},
      {"DevicesWorkersAboveLimit", "devices --host-workers 65", {"--host-workers"}},
      {"PredictWorkersAboveLimit", "predict --workers 65", {"--workers 65"}},
      {"TopologyWorkersAboveLimit", "topology --show ring --workers 65", {"--workers"}},
      {"CompareWorkersAboveLimit", "compare --net mlp --host-workers 65 --steps 1 --out {dir}/out", {"--host-workers 65"}},
      {"CompareQuorumAboveNm", "compare --net mlp --host-workers 2 --window quorum:99 --steps 1 --out {dir}/out",
       {"--window quorum:99"}},
      {"DevicesMeasureStepsHuge", "devices --measure --steps 99999999", {"--steps", "99999999"}},
      // ---- impossible windows
      {"QuorumAboveNm", kTrain + "--out {dir}/out --split 8 --window quorum:100", {"--window quorum:100", "16"}},
      {"PredictQuorumAboveNm", "predict --workers 2 --split 8 --windows quorum:17", {"--windows quorum:17", "16"}},
      {"QuorumZero", kTrain + "--out {dir}/out --window quorum:0", {"--window quorum:0"}},
      {"WindowUnknown", kTrain + "--out {dir}/out --window fastest:3", {"--window fastest:3"}},
      // ---- crafted and corrupt checkpoints given to --resume
      {"ResumeMissing", kTrain + "--out {dir}/out --resume {dir}/none.safetensors", {"{dir}/none.safetensors"}},
      {"ResumeTooShort", kTrain + "--out {dir}/out --resume {dir}/c.safetensors", {"{dir}/c.safetensors", "too short"},
       file("c.safetensors", "abc")},
      {"ResumeHeaderPastEnd", kTrain + "--out {dir}/out --resume {dir}/c.safetensors",
       {"{dir}/c.safetensors", "runs past the end"}, file("c.safetensors", safetensors("{}", "", 1ull << 62))},
      {"ResumeBadJson", kTrain + "--out {dir}/out --resume {dir}/c.safetensors", {"{dir}/c.safetensors", "JSON"},
       file("c.safetensors", safetensors("{\"a\": {\"dtype\": ", f8))},
      {"ResumeOffsetsOutOfRange", kTrain + "--out {dir}/out --resume {dir}/c.safetensors",
       {"{dir}/c.safetensors", "'a'", "out of range"},
       file("c.safetensors", safetensors(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,1099511627776]}})", f8))},
      {"ResumeShapeOverflows", kTrain + "--out {dir}/out --resume {dir}/c.safetensors",
       {"{dir}/c.safetensors", "'a'", "shape"},
       file("c.safetensors",
            safetensors(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", f8))},
      {"ResumeDtypeMismatch", kTrain + "--out {dir}/out --resume {dir}/c.safetensors",
       {"{dir}/c.safetensors", "'a'", "BF16"},
       file("c.safetensors", safetensors(R"({"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", f8))},
      {"ResumeMetadataNotString", kTrain + "--out {dir}/out --resume {dir}/c.safetensors",
       {"{dir}/c.safetensors", "__metadata__", "'nbsgd.step'"},
       file("c.safetensors", safetensors(R"({"__metadata__":{"nbsgd.step":12}})", ""))},
      {"ResumeChecksumMismatch", kTrain + "--out {dir}/out --resume {dir}/c.safetensors",
       {"{dir}/c.safetensors", "nbsgd.data_crc32", "corrupt"},
       file("c.safetensors",
            safetensors(R"({"__metadata__":{"nbsgd.data_crc32":"00000000"},"a":{"dtype":"F32","shape":[2],)"
                        R"("data_offsets":[0,8]}}     )",
                        std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8)))},
      {"ResumeTruncatedData", kTrain + "--out {dir}/out --resume {dir}/c.safetensors",
       {"{dir}/c.safetensors", "'a'", "out of range"},
       file("c.safetensors", safetensors(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", f8))},
      {"ResumeNotFromNbsgd", kTrain + "--out {dir}/out --resume {dir}/c.safetensors",
       {"{dir}/c.safetensors", "nbsgd.net"},
       file("c.safetensors", safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f8))},
      // ---- a checkpoint of another run: refused naming the flag and both values
      {"ResumeOtherBatch", resume("--host-workers 2 --batch 64"), {"--batch: the checkpoint has 128, this run 64"},
       checkpoint("--host-workers 2")},
      {"ResumeOtherSplit", resume("--host-workers 2 --split 4"), {"--split: the checkpoint has 8, this run 4"},
       checkpoint("--host-workers 2")},
      {"ResumeOtherWindow", resume("--host-workers 2 --window sync"),
       {"--window: the checkpoint has fastest, this run sync"}, checkpoint("--host-workers 2")},
      {"ResumeOtherSeed", resume("--host-workers 2 --seed 2"), {"--seed: the checkpoint has 1, this run 2"},
       checkpoint("--host-workers 2")},
      {"ResumeOtherClock", resume("--host-workers 2 --clock real"),
       {"--clock: the checkpoint has virtual, this run real"}, checkpoint("--host-workers 2")},
      {"ResumeOtherClockReal", resume("--host-workers 2 --clock virtual"),
       {"--clock: the checkpoint has real, this run virtual"}, checkpoint("--host-workers 2 --clock real")},
      {"ResumeOtherWorkers", resume("--host-workers 2"), {"number of workers", "the checkpoint has 4, this run 2"},
       checkpoint("--host-workers 4")},
      {"ResumeOtherWorkersGossip", resume("--host-workers 2 --exchange dpsgd"),
       {"number of workers", "the checkpoint has 4, this run 2"}, checkpoint("--host-workers 4 --exchange dpsgd")},
      {"ResumeOtherExchange", resume("--host-workers 2 --exchange dpsgd"),
       {"--exchange: the checkpoint has ring, this run dpsgd"}, checkpoint("--host-workers 2")},
      {"ResumeOtherTopology", resume("--host-workers 4 --exchange dpsgd --topology complete"),
       {"--topology: the checkpoint has ring, this run complete"}, checkpoint("--host-workers 4 --exchange dpsgd")},
      {"ResumeOtherNet", "train --net lenet --train-limit 64 --test-limit 32 --steps 5 --quiet --out {dir}/out "
                         "--host-workers 2 --resume {dir}/ck/checkpoint.safetensors",
       {"{dir}/ck/checkpoint.safetensors", "another net"}, checkpoint("--host-workers 2")},
      {"ResumeStepsAlreadyReached",
       "train --net mlp --train-limit 64 --test-limit 32 --steps 1 --quiet --out {dir}/out --host-workers 2 "
       "--resume {dir}/ck/checkpoint.safetensors",
       {"--steps 1", "already reached", "step 1"}, checkpoint("--host-workers 2")},
      // ---- a checkpoint whose metadata was edited (its tensors whole): the file and the key
      {"ResumeMetaStepNegative", resume("--host-workers 2", kEdited), {kEdited, "nbsgd.step", "-5"},
       checkpoint("--host-workers 2", set_meta("nbsgd.step", "-5"))},
      {"ResumeMetaStepHuge", resume("--host-workers 2", kEdited), {kEdited, "nbsgd.step"},
       checkpoint("--host-workers 2", set_meta("nbsgd.step", "99999999999999999999999"))},
      {"ResumeMetaWorkersZero", resume("--host-workers 2", kEdited), {kEdited, "nbsgd.workers"},
       checkpoint("--host-workers 2", set_meta("nbsgd.workers", "0"))},
      {"ResumeMetaClockNegative", resume("--host-workers 2", kEdited), {kEdited, "nbsgd.clock_s"},
       checkpoint("--host-workers 2", set_meta("nbsgd.clock_s", "-1"))},
      {"ResumeMetaSamplesNotANumber", resume("--host-workers 2", kEdited), {kEdited, "nbsgd.samples_total"},
       checkpoint("--host-workers 2", set_meta("nbsgd.samples_total", "many"))},
      {"ResumeMetaConfigNotJson", resume("--host-workers 2", kEdited), {kEdited, "nbsgd.config"},
       checkpoint("--host-workers 2", set_meta("nbsgd.config", "{\"batch\": "))},
      {"ResumeMetaQueueMalformed", resume("--host-workers 2", kEdited), {kEdited, "nbsgd.queue"},
       checkpoint("--host-workers 2", set_meta("nbsgd.queue", "{\"order\": [1, 2"))},
      {"ResumeMetaTimelineMalformed", resume("--host-workers 2", kEdited), {kEdited, "nbsgd.timeline"},
       checkpoint("--host-workers 2", set_meta("nbsgd.timeline", "[]"))},
      {"ResumeMetaMissingStep", resume("--host-workers 2", kEdited), {kEdited, "nbsgd.step"},
       checkpoint("--host-workers 2", [](nlohmann::json& m) { m.erase("nbsgd.step"); })},
      // ---- profiles
      {"ProfileMissing", kTrain + "--out {dir}/out --profile {dir}/none.toml", {"{dir}/none.toml"}},
      {"ProfileSyntax", kProfileTrain, {"p.toml:2", "TOML syntax"}, file("p.toml", "[device.0]\nslowdown = = 2\n")},
      {"ProfileUnknownKey", kProfileTrain, {"p.toml:2", "device.0.speed", "unknown key"},
       file("p.toml", "[device.0]\nspeed = 2\n")},
      {"ProfileProbabilityAboveOne", kProfilePredict, {"p.toml:2", "probability"},
       file("p.toml", "[device.default]\nstall = { probability = 2, distribution = \"constant\", value_ms = 1 }\n")},
      {"ProfileIndexBeyondWorkers", kProfilePredict, {"p.toml:1", "device.7"}, file("p.toml", "[device.7]\nslowdown = 2\n")},
      // ---- topology files
      {"TopologyFileMissing", "topology --show file:{dir}/none.edges --workers 4", {"{dir}/none.edges"}},
      {"TopologyFileBadLine", "topology --show file:{dir}/t.edges --workers 4", {"{dir}/t.edges:2", "'1 x'"},
       file("t.edges", "0 1\n1 x\n")},
      {"TopologyFileWorkerOutOfRange", "topology --show file:{dir}/t.edges --workers 4",
       {"{dir}/t.edges:1", "worker 9"}, file("t.edges", "0 9\n")},
      {"TopologyFileSelfLoop", "topology --show file:{dir}/t.edges --workers 4", {"{dir}/t.edges:3", "self loop"},
       file("t.edges", "0 1\n1 2\n2 2\n")},
      {"TopologyFileDisconnected", "topology --show file:{dir}/t.edges --workers 4", {"file:{dir}/t.edges", "not connected"},
       file("t.edges", "0 1\n2 3\n")},
      {"TrainTopologyFileBad", kTrain + "--out {dir}/out --exchange dpsgd --topology file:{dir}/t.edges",
       {"{dir}/t.edges:1"}, file("t.edges", "0 1 2\n")},
      // ---- Fashion-MNIST folders (--data-dir)
      {"DataDirEmpty", kTrain + "--out {dir}/out --data-dir {dir}", {"{dir}/train-images-idx3-ubyte"}},
      {"DataWrongMagic", kTrain + "--out {dir}/out --data-dir {dir}", {"{dir}/train-images-idx3-ubyte", "magic"},
       [](const std::string& d) { write_idx_dir(d, "train-images", [](std::string& b) { b[3] = 0x01; }); }},
      {"DataTruncated", kTrain + "--out {dir}/out --data-dir {dir}", {"{dir}/t10k-images-idx3-ubyte", "ends early"},
       [](const std::string& d) { write_idx_dir(d, "t10k-images", [](std::string& b) { b.resize(b.size() - 100); }); }},
      {"DataLabelOutOfRange", kTrain + "--out {dir}/out --data-dir {dir}", {"{dir}/train-labels-idx1-ubyte", "label 12"},
       [](const std::string& d) { write_idx_dir(d, "train-labels", [](std::string& b) { b[9] = 12; }); }},
      {"DataCountsDiffer", kTrain + "--out {dir}/out --data-dir {dir}", {"train-images-idx3-ubyte", "train-labels"},
       [](const std::string& d) {
         write_idx_dir(d, "train-labels", [](std::string& b) {
           b = be32(0x801) + be32(3) + std::string("\x01\x02\x03", 3);
         });
       }},
      {"DataCorruptGzip", kTrain + "--out {dir}/out --data-dir {dir}", {"{dir}/train-labels-idx1-ubyte.gz", "gzip"},
       [](const std::string& d) {
         write_idx_dir(d, "", [](std::string&) {});
         fs::remove(d + "/train-labels-idx1-ubyte");
         std::string gz = gzip_bytes(be32(0x801) + be32(4) + std::string("\x01\x02\x03\x04", 4));
         gz[gz.size() - 6] ^= 0x55;  // inside the CRC trailer
         write_file(d + "/train-labels-idx1-ubyte.gz", gz);
       }},
      // ---- output folders
      {"OutUnderAFile", kTrain + "--out {dir}/f/out", {"--out {dir}/f/out"}, file("f", "a file, not a folder")},
      {"OutUnwritable", kTrain + "--out /proc/nbsgd-no-such/out", {"/proc/nbsgd-no-such/out"}},
  };
}

class BadInput : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadInput, OneLineErrorNamingTheCulpritAndNothingLeftBehind) {
  const BadCase& c = GetParam();
  const std::string dir = make_temp_dir("bad-" + c.name);
  if (c.setup) c.setup(dir);
  std::vector<std::string> before;
  for (const auto& e : fs::recursive_directory_iterator(dir)) before.push_back(e.path().string());
  const auto expand = [&](const std::string& s) {
    return replace_all(replace_all(s, "{dir}", dir), "{src}", NBSGD_SOURCE_DIR);
  };
  const CommandResult r = run_nbsgd(expand(c.args));
  SCOPED_TRACE("nbsgd " + expand(c.args) + "\n" + r.output);
  EXPECT_GT(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128);
  ASSERT_FALSE(r.output.empty());
  EXPECT_EQ(r.output.rfind("nbsgd: error: ", 0), 0u);
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << "more than one line";
  EXPECT_EQ(r.output.find("internal error"), std::string::npos);
  EXPECT_EQ(r.output.find(".cpp:"), std::string::npos) << "source location reached the user";
  for (const std::string& culprit : c.culprits) EXPECT_NE(r.output.find(expand(culprit)), std::string::npos) << culprit;
  // Nothing new in the case's folder: no --out created, no temporary files.
  std::vector<std::string> after;
  for (const auto& e : fs::recursive_directory_iterator(dir)) after.push_back(e.path().string());
  EXPECT_EQ(after, before);
}

INSTANTIATE_TEST_SUITE_P(, BadInput, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<BadCase>& i) { return i.param.name; });

// A full disk under --out: a 256 KiB tmpfs when this process may mount one. The
// checkpoint (mlp: ~1 MB) cannot be written: one line naming it, and no temporary
// file left; the run's metrics and config are the trainer's (lead) to check.
TEST(BadInputDisk, FullDiskAtCheckpointIsOneLineAndLeavesNoTemporary) {
  SmallDisk disk(256 << 10);
  if (!disk.ok()) GTEST_SKIP() << disk.why();
  const CommandResult r = run_nbsgd(kTrain + "--out " + disk.dir() + "/out");
  SCOPED_TRACE(r.output);
  EXPECT_GT(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128);
  EXPECT_NE(r.output.find("nbsgd: error: cannot write checkpoint " + disk.dir() + "/out/checkpoint.safetensors"),
            std::string::npos);
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos);
  for (const auto& e : fs::recursive_directory_iterator(disk.dir()))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

}  // namespace
}  // namespace nbsgd::test
