// safetensors checkpoints: bit-exact round trip, the file layout, atomic writes,
// every malformed file the loader must refuse, net mismatch, and (when Python's
// safetensors module is installed) interchange with the reference implementation.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zlib.h>

#include "nets/checkpoint.h"
#include "runtime/device/check.h"
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

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file from a header text and a data section, with a given length
// field (defaults to the header's true length).
std::string raw_file(const std::string& header, const std::string& data, uint64_t len_field = ~0ull) {
  const uint64_t len = len_field == ~0ull ? header.size() : len_field;
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  return out + header + data;
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

// Values that catch any conversion on the way: signed zero, denormal, inf, a NaN
// with a payload, and ordinary numbers.
std::vector<float> tricky_values(size_t n, uint32_t salt) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) * 0.37f - 5.0f + static_cast<float>(salt);
  const uint32_t nan_bits = 0x7FC01234u, denormal_bits = 0x00000123u;
  if (n > 4) {
    v[0] = -0.0f;
    std::memcpy(&v[1], &denormal_bits, 4);
    v[2] = std::numeric_limits<float>::infinity();
    std::memcpy(&v[3], &nan_bits, 4);
  }
  return v;
}

struct Net {
  std::vector<float> w1 = tricky_values(6 * 5, 1), b1 = tricky_values(6, 2), scale = {3.25f}, empty;
  std::vector<TensorView> views() const {
    return {{"fc1.weight", {6, 5}, w1.data()},
            {"fc1.bias", {6}, b1.data()},
            {"scale", {}, scale.data()},
            {"unused", {0, 4}, empty.data()}};
  }
};

TEST(Checkpoint, RoundTripIsBitExact) {
  const std::string dir = test::make_temp_dir("ckpt-rt");
  const std::string path = dir + "/net.safetensors";
  Net net;
  const std::map<std::string, std::string> meta = {{"step", "1200"}, {"queue", "{\"epoch\":3}"}};
  save_safetensors(path, net.views(), meta);
  const LoadedTensors t = load_safetensors(path);
  EXPECT_EQ(t.metadata, meta);
  ASSERT_EQ(t.tensors.size(), 4u);
  for (const TensorView& v : net.views()) {
    const auto& [shape, values] = t.tensors.at(v.name);
    EXPECT_EQ(shape, v.shape) << v.name;
    size_t n = 1;
    for (int64_t d : v.shape) n *= static_cast<size_t>(d);
    ASSERT_EQ(values.size(), n) << v.name;
    if (n) {
      EXPECT_EQ(std::memcmp(values.data(), v.data, n * 4), 0) << v.name;
    }
  }
  EXPECT_NO_THROW(check_matches(t, net.views(), path));
  for (const auto& entry : fs::directory_iterator(dir))  // no temporary left behind
    EXPECT_EQ(entry.path().filename(), "net.safetensors");
}

TEST(Checkpoint, LayoutFollowsTheFormat) {
  const std::string dir = test::make_temp_dir("ckpt-layout");
  const std::string path = dir + "/a.safetensors";
  Net net;
  save_safetensors(path, net.views(), {{"k", "v"}});
  const std::string bytes = read_all(path);
  uint64_t len = 0;
  std::memcpy(&len, bytes.data(), 8);
  ASSERT_LE(8 + len, bytes.size());
  EXPECT_EQ((8 + len) % 8, 0u);  // data section aligned
  const auto header = nlohmann::json::parse(bytes.substr(8, len));
  EXPECT_EQ(header["__metadata__"]["k"], "v");
  EXPECT_EQ(header["fc1.weight"]["dtype"], "F32");
  EXPECT_EQ(header["fc1.weight"]["shape"], nlohmann::json::array({6, 5}));
  const auto offs = header["fc1.weight"]["data_offsets"].get<std::vector<uint64_t>>();
  ASSERT_EQ(offs.size(), 2u);
  EXPECT_EQ(offs[1] - offs[0], 120u);
  EXPECT_EQ(std::memcmp(bytes.data() + 8 + len + offs[0], net.w1.data(), 120), 0);
  EXPECT_EQ(bytes.size() - 8 - len, (30 + 6 + 1) * 4u);
  // The checksum is zlib's CRC-32 of the data section, as 8 lower-case hex digits.
  const std::string data = bytes.substr(8 + len);
  char want[9];
  std::snprintf(want, sizeof want, "%08lx", crc32(0L, reinterpret_cast<const Bytef*>(data.data()), data.size()));
  EXPECT_EQ(header["__metadata__"][kDataChecksumKey], want);
}

TEST(Checkpoint, FailedSaveLeavesExistingCheckpointAlone) {
  const std::string dir = test::make_temp_dir("ckpt-atomic");
  const std::string path = dir + "/net.safetensors";
  Net net;
  save_safetensors(path, net.views(), {{"step", "1"}});
  const std::string before = read_all(path);

  // Refused before any file is touched (a programming error, not an InputError).
  std::vector<TensorView> dup = net.views();
  dup.push_back(dup[0]);
  EXPECT_THROW(save_safetensors(path, dup, {}), Error);

  // Fails half-way through writing: a file size limit makes write() return EFBIG.
  std::vector<float> big(1 << 16, 1.0f);
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit lim = old;
  lim.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  bool threw = false;
  try {
    save_safetensors(path, {{"big", {1 << 16}, big.data()}}, {});
  } catch (const InputError& e) {
    threw = true;
    EXPECT_NE(std::string(e.what()).find(path + ".tmp."), std::string::npos) << e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(threw);

  // Unwritable place: a folder that does not exist.
  expect_input_error([&] { save_safetensors(dir + "/no/such/dir/x.safetensors", net.views(), {}); },
                     {dir + "/no/such/dir/x.safetensors"});

  EXPECT_EQ(read_all(path), before);
  for (const auto& entry : fs::directory_iterator(dir)) EXPECT_EQ(entry.path().filename(), "net.safetensors");
}

TEST(Checkpoint, RejectsMalformedFiles) {
  const std::string dir = test::make_temp_dir("ckpt-bad");
  const std::string p = dir + "/bad.safetensors";
  const std::string data8(8, '\0');  // two floats
  const auto load_bad = [&](const std::string& bytes, const std::vector<std::string>& parts) {
    write_all(p, bytes);
    std::vector<std::string> all = parts;
    all.push_back(p);
    expect_input_error([&] { load_safetensors(p); }, all);
  };
  expect_input_error([&] { load_safetensors(dir + "/missing.safetensors"); }, {dir + "/missing.safetensors"});
  load_bad("abc", {"too short"});
  load_bad(raw_file("{}", "", 1000), {"runs past the end"});
  load_bad(raw_file(std::string(16, ' '), "", ~0ull - 1), {"runs past the end"});
  load_bad(raw_file("{\"a\": {\"dtype\": \"F32\", ", data8), {"not valid JSON"});
  load_bad(raw_file("[1, 2]", ""), {"not a JSON object"});
  load_bad(raw_file(R"({"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", data8), {"'a'", "BF16"});
  load_bad(raw_file(R"({"a":{"dtype":"F32","shape":[2]}})", data8), {"'a'", "data_offsets"});
  load_bad(raw_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8), {"shape"});
  load_bad(raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data8), {"'a'", "out of range"});
  load_bad(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data8), {"'a'", "out of range"});
  load_bad(raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8), {"'a'", "shape [3]"});
  load_bad(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                    data8),
           {"'b'", "overlaps"});
  load_bad(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data8), {"gap", "'a'"});
  load_bad(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data8), {"4 bytes after"});
  load_bad(raw_file(R"({"__metadata__":{"step":3}})", ""), {"__metadata__", "step"});
  // A good file cut short: the header now claims data past the end.
  Net net;
  save_safetensors(p, net.views(), {});
  const std::string good = read_all(p);
  load_bad(good.substr(0, good.size() - 10), {"out of range"});
}

TEST(Checkpoint, MismatchedNetIsNamed) {
  const std::string dir = test::make_temp_dir("ckpt-net");
  const std::string path = dir + "/net.safetensors";
  Net net;
  save_safetensors(path, net.views(), {});
  const LoadedTensors t = load_safetensors(path);
  const std::string prefix = "checkpoint " + path + " was made for another net: ";

  std::vector<TensorView> other = net.views();
  other.push_back({"fc2.weight", {2, 6}, net.w1.data()});
  expect_input_error([&] { check_matches(t, other, path); }, {prefix, "no tensor 'fc2.weight'"});

  other = net.views();
  other[0].shape = {5, 6};
  expect_input_error([&] { check_matches(t, other, path); }, {prefix, "'fc1.weight'", "[6,5]", "[5,6]"});

  other = net.views();
  other.pop_back();
  expect_input_error([&] { check_matches(t, other, path); }, {prefix, "'unused'", "does not have"});
}

// ------------------------------------------------------------------ Python interchange

bool python_has_safetensors() {
  return std::system("python3 -c 'import numpy, safetensors.numpy' >/dev/null 2>&1") == 0;
}

std::string run_capture(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return {};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

std::string hex(const float* data, size_t n) {
  std::string s;
  char b[3];
  const auto* bytes = reinterpret_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n * 4; ++i) {
    std::snprintf(b, sizeof b, "%02x", bytes[i]);
    s += b;
  }
  return s;
}

TEST(Checkpoint, ReadByPythonSafetensors) {
  if (!python_has_safetensors()) GTEST_SKIP() << "python3 with numpy and safetensors not available";
  const std::string dir = test::make_temp_dir("ckpt-py");
  const std::string path = dir + "/net.safetensors";
  Net net;
  save_safetensors(path, net.views(), {{"step", "7"}});
  write_all(dir + "/read.py",
            "import sys\n"
            "from safetensors.numpy import load_file\n"
            "from safetensors import safe_open\n"
            "t = load_file(sys.argv[1])\n"
            "for k in sorted(t):\n"
            "    print(k, t[k].dtype, list(t[k].shape), t[k].tobytes().hex())\n"
            "with safe_open(sys.argv[1], 'np') as f:\n"
            "    print('meta', sorted(f.metadata().items()))\n");  // the reader's dict order is its own
  const std::string out = run_capture("python3 " + dir + "/read.py " + path);
  std::string expected;
  std::map<std::string, TensorView> sorted;
  for (const TensorView& v : net.views()) sorted.emplace(v.name, v);
  for (const auto& [name, v] : sorted) {
    size_t n = 1;
    std::string shape = "[";
    for (size_t i = 0; i < v.shape.size(); ++i) {
      n *= static_cast<size_t>(v.shape[i]);
      if (i) shape += ", ";
      shape += std::to_string(v.shape[i]);
    }
    expected += name + " float32 " + shape + "] " + hex(v.data, n) + "\n";
  }
  const std::string bytes = read_all(path);
  uint64_t len = 0;
  std::memcpy(&len, bytes.data(), 8);
  char crc[9];
  std::snprintf(crc, sizeof crc, "%08lx",
                crc32(0L, reinterpret_cast<const Bytef*>(bytes.data() + 8 + len), bytes.size() - 8 - len));
  expected += "meta [('nbsgd.data_crc32', '" + std::string(crc) + "'), ('step', '7')]\n";
  EXPECT_EQ(out, expected);
}

TEST(Checkpoint, ReadsFileWrittenByPythonSafetensors) {
  if (!python_has_safetensors()) GTEST_SKIP() << "python3 with numpy and safetensors not available";
  const std::string dir = test::make_temp_dir("ckpt-py2");
  const std::string path = dir + "/py.safetensors";
  write_all(dir + "/write.py",
            "import sys, numpy as np\n"
            "from safetensors.numpy import save_file\n"
            "save_file({'w': np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5,\n"
            "           'b': np.array([-1.5, 2.25], dtype=np.float32)}, sys.argv[1], metadata={'net': 'mlp'})\n");
  const std::string out = run_capture("python3 " + dir + "/write.py " + path);
  ASSERT_TRUE(fs::exists(path)) << out;
  const LoadedTensors t = load_safetensors(path);
  EXPECT_EQ(t.metadata.at("net"), "mlp");
  EXPECT_FALSE(t.data_checksum_verified);  // another tool: no nbsgd checksum to verify
  const auto& [wshape, w] = t.tensors.at("w");
  EXPECT_EQ(wshape, (std::vector<int64_t>{3, 4}));
  for (int i = 0; i < 12; ++i) EXPECT_EQ(w[i], 0.5f * static_cast<float>(i));
  EXPECT_EQ(t.tensors.at("b").second, (std::vector<float>{-1.5f, 2.25f}));
}

}  // namespace
}  // namespace nbsgd
