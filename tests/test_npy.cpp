// The .npy reader and npy:DIR data sets: layouts and dtypes, in-place mapping,
// normalisation, limits, the net-shape check, one-line errors for bad files, and a
// seeded mutation run over the header parser. Every file is written by the test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "nets/data/load.h"
#include "nets/data/npy.h"
#include "nets/data/npy_dataset.h"
#include "nets/data/synthetic_cifar.h"
#include "nets/model.h"
#include "runtime/device/buffer.h"
#include "runtime/device/context.h"
#include "runtime/device/check.h"
#include "support/test_support.h"

namespace nbsgd::test {
namespace {

using namespace nbsgd::data;

// The bytes numpy.save writes: magic, version, header length, the dict padded with
// spaces and a newline to a multiple of 64, then the data.
std::string npy_bytes(const std::string& descr, const std::vector<int64_t>& shape, const void* data, size_t bytes,
                      bool fortran = false, int version = 1) {
  std::string sh = "(";
  for (size_t i = 0; i < shape.size(); ++i) sh += (i ? ", " : "") + std::to_string(shape[i]);
  sh += shape.size() == 1 ? ",)" : ")";
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                     ", 'shape': " + sh + ", }";
  const size_t prefix = version == 1 ? 10 : 12;
  while ((prefix + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  std::string out("\x93NUMPY", 6);
  out += char(version);
  out += char(0);
  const size_t len = dict.size();
  out += char(len & 0xff);
  out += char((len >> 8) & 0xff);
  if (version != 1) {
    out += char(0);
    out += char(0);
  }
  out += dict;
  out.append(static_cast<const char*>(data), bytes);
  return out;
}

template <class T>
std::string npy(const std::string& descr, const std::vector<int64_t>& shape, const std::vector<T>& v) {
  return npy_bytes(descr, shape, v.data(), v.size() * sizeof(T));
}

void put(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

// A small set: n_train / n_test samples of c x h x w uint8 pixels (pixel value
// (i*31 + j*7) % 256) and labels i % classes, in NCHW or NHWC.
struct Small {
  std::string dir;
  int64_t ntr = 12, nte = 5;
  int c = 3, h = 4, w = 5, classes = 4;
  bool nhwc = false;
  std::vector<uint8_t> pixels(int64_t n) const {
    std::vector<uint8_t> v(size_t(n * c * h * w));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < c * h * w; ++j) v[size_t(i * c * h * w + j)] = uint8_t((i * 31 + j * 7) % 256);
    return v;
  }
  std::vector<int64_t> xshape(int64_t n) const {
    return nhwc ? std::vector<int64_t>{n, h, w, c} : std::vector<int64_t>{n, c, h, w};
  }
  std::vector<int64_t> labels(int64_t n) const {
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = i % classes;
    return v;
  }
  void write() const {
    put(dir + "/x_train.npy", npy("|u1", xshape(ntr), pixels(ntr)));
    put(dir + "/x_test.npy", npy("|u1", xshape(nte), pixels(nte)));
    put(dir + "/y_train.npy", npy("<i8", {ntr}, labels(ntr)));
    put(dir + "/y_test.npy", npy("<i8", {nte}, labels(nte)));
  }
};

std::string error_of(const std::string& dir, const NpyDirOptions& o = {}) {
  try {
    load_npy_dir(dir, o);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(Npy, HeaderParsesAllVersionsAndRejectsBadOnes) {
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  for (int version : {1, 2, 3}) {
    const std::string b = npy_bytes("<f4", {2, 3}, v.data(), 24, false, version);
    const NpyHeader h = parse_npy_header(b.data(), b.size(), "a.npy");
    EXPECT_EQ(h.type, NpyType::F32);
    EXPECT_EQ(h.shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(h.data_offset % 64, 0u);
    EXPECT_EQ(h.data_offset + 24, b.size());
  }
  auto err = [](const std::string& b) {
    try {
      parse_npy_header(b.data(), b.size(), "a.npy");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string good = npy_bytes("<f4", {2, 3}, v.data(), 24);
  std::string bad = good;
  bad[1] = 'X';
  EXPECT_NE(err(bad).find("a.npy: not a .npy file (wrong magic"), std::string::npos) << err(bad);
  EXPECT_NE(err(npy_bytes(">f4", {2}, v.data(), 8)).find("unsupported dtype '>f4' (big-endian)"), std::string::npos);
  EXPECT_NE(err(npy_bytes("<c8", {2}, v.data(), 8)).find("unsupported dtype '<c8'"), std::string::npos);
  EXPECT_NE(err(npy_bytes("<f4", {2}, v.data(), 8, true)).find("Fortran-order"), std::string::npos);
  EXPECT_NE(err(good.substr(0, 40)).find("truncated .npy header"), std::string::npos);
  std::string nodict = good;
  nodict.replace(10, 1, "[");
  EXPECT_NE(err(nodict).find("malformed .npy header"), std::string::npos) << err(nodict);
  bad = good;
  bad[6] = 9;
  EXPECT_NE(err(bad).find("unsupported .npy format version 9"), std::string::npos);
  EXPECT_NE(err("").find("wrong magic"), std::string::npos);
  // Sizes whose product overflows, also where each dimension's low 32 bits are 0
  // (found with the fuzz target: 2^32 x 2^32 once passed as a size of 0).
  EXPECT_NE(err(npy_bytes("<f4", {int64_t(1) << 32, int64_t(1) << 32}, v.data(), 0)).find("a.npy: shape too large"),
            std::string::npos);
  EXPECT_NE(err(npy_bytes("|u1", {int64_t(1) << 40, int64_t(1) << 40}, v.data(), 0)).find("shape too large"),
            std::string::npos);
  EXPECT_NE(err(npy_bytes("<f8", {int64_t(1) << 30, int64_t(1) << 30}, v.data(), 0)).find("shape too large"),
            std::string::npos);
}

// Seeded random damage to a valid file: the parser either parses or throws
// InputError, never anything else (the sanitizer builds also watch its reads).
TEST(Npy, HeaderParserSurvivesDamagedInput) {
  const std::vector<uint8_t> px(2 * 3 * 4, 7);
  const std::string good = npy("|u1", {2, 3, 4}, px);
  std::mt19937 rng(1234);
  int parsed = 0, rejected = 0;
  for (int k = 0; k < 4000; ++k) {
    std::string b = good;
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % b.size();
      switch (rng() % 3) {
        case 0: b[at] = char(rng()); break;
        case 1: b.erase(at, 1 + rng() % 8); break;
        default: b.insert(at, 1, "(),:'{} 0123456789TrueFals"[rng() % 27]);
      }
      if (b.empty()) break;
    }
    if (rng() % 4 == 0) b.resize(rng() % (b.size() + 1));
    try {
      const NpyHeader h = parse_npy_header(b.data(), b.size(), "fuzz.npy");
      EXPECT_LE(h.data_offset, b.size());
      ++parsed;
    } catch (const InputError&) {
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

TEST(NpyDir, Uint8NhwcIsMappedConvertedAndNormalised) {
  Small s;
  s.dir = make_temp_dir("npy_nhwc");
  s.nhwc = true;
  s.h = 6;  // 12x6x5x3: only the last end can be channels
  s.write();
  const DataSplit d = load_npy_dir(s.dir);
  EXPECT_NE(d.summary.find("NHWC"), std::string::npos) << d.summary;
  EXPECT_NE(d.summary.find("uint8"), std::string::npos) << d.summary;
  EXPECT_EQ(d.summary.find('\n'), std::string::npos);
  EXPECT_EQ(d.train.n, 12);
  EXPECT_EQ(d.test.n, 5);
  EXPECT_EQ(d.train.c, 3);
  EXPECT_EQ(d.train.h, 6);
  EXPECT_EQ(d.train.w, 5);
  EXPECT_EQ(d.train.classes, 4);  // from the labels: 0..3
  EXPECT_TRUE(d.train.images.empty());  // mapped, not copied
  ASSERT_TRUE(d.train.mapped);
  EXPECT_EQ(d.train.labels[7], 3);
  EXPECT_THROW(d.train.image(0), Error);

  // Per-channel mean and std of the training pixels / 255, computed here.
  const std::vector<uint8_t> raw = s.pixels(s.ntr);
  const int hw = s.h * s.w;
  double sum[3] = {}, sq[3] = {};
  for (int64_t i = 0; i < s.ntr; ++i)
    for (int j = 0; j < hw; ++j)
      for (int c = 0; c < 3; ++c) {
        const double v = raw[size_t(i * 90 + j * 3 + c)] / 255.0;
        sum[c] += v;
        sq[c] += v * v;
      }
  std::vector<float> out(2 * 90);
  const int32_t idx[2] = {9, 2};
  d.train.copy_images(idx, 2, out.data());
  for (int k = 0; k < 2; ++k)
    for (int c = 0; c < 3; ++c) {
      const double m = sum[c] / (s.ntr * hw), sd = std::sqrt(sq[c] / (s.ntr * hw) - m * m);
      for (int j = 0; j < hw; ++j) {
        const double want = (raw[size_t(idx[k] * 90 + j * 3 + c)] / 255.0 - m) / sd;
        ASSERT_NEAR(out[size_t(k * 90 + c * hw + j)], want, 1e-5) << k << " " << c << " " << j;
      }
    }
  // The test split uses the training statistics: same pixels, same values.
  std::vector<float> t(90), u(90);
  d.test.copy_range(2, 1, t.data());
  d.train.copy_range(2, 1, u.data());
  EXPECT_EQ(t, u);
}

TEST(NpyDir, Float32NchwIsReadInPlace) {
  const std::string dir = make_temp_dir("npy_f32");
  std::vector<float> x(6 * 2 * 3 * 3), xt(2 * 2 * 3 * 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i) * 0.25f - 3.0f;
  for (size_t i = 0; i < xt.size(); ++i) xt[i] = -float(i);
  put(dir + "/x_train.npy", npy("<f4", {6, 2, 3, 3}, x));
  put(dir + "/x_test.npy", npy("<f4", {2, 2, 3, 3}, xt));
  put(dir + "/y_train.npy", npy("<i4", {6, 1}, std::vector<int32_t>{0, 1, 2, 0, 1, 2}));
  put(dir + "/y_test.npy", npy("|u1", {2}, std::vector<uint8_t>{2, 1}));
  NpyDirOptions o;
  o.c = 2, o.h = 3, o.w = 3, o.classes = 3;
  const DataSplit d = load_npy_dir(dir, o);
  EXPECT_NE(d.summary.find("NCHW"), std::string::npos) << d.summary;
  EXPECT_NE(d.summary.find("float32 taken as stored"), std::string::npos) << d.summary;
  const float* p = d.train.image(4);
  EXPECT_EQ(std::memcmp(p, x.data() + 4 * 18, 18 * sizeof(float)), 0);
  EXPECT_EQ(d.test.image(1)[0], -18.0f);
  EXPECT_EQ(d.test.labels, (std::vector<int32_t>{2, 1}));
  std::vector<float> out(18);
  const int32_t i5 = 5;
  d.train.copy_images(&i5, 1, out.data());
  EXPECT_EQ(std::memcmp(out.data(), x.data() + 5 * 18, 18 * sizeof(float)), 0);
}

TEST(NpyDir, LayoutFromShapeOrFromTheNet) {
  // Float32 NHWC: transposed on the way out.
  const std::string dir = make_temp_dir("npy_layout");
  std::vector<float> x(2 * 5 * 6 * 2);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i);
  put(dir + "/x_train.npy", npy("<f4", {2, 5, 6, 2}, x));
  put(dir + "/x_test.npy", npy("<f4", {2, 5, 6, 2}, x));
  put(dir + "/y_train.npy", npy("<i8", {2}, std::vector<int64_t>{0, 1}));
  put(dir + "/y_test.npy", npy("<i8", {2}, std::vector<int64_t>{1, 0}));
  DataSplit d = load_npy_dir(dir);
  EXPECT_EQ((std::vector<int>{d.train.c, d.train.h, d.train.w}), (std::vector<int>{2, 5, 6}));
  std::vector<float> out(60);
  d.train.copy_range(1, 1, out.data());
  // out[c][y][x] = x_train[1][y][x][c]
  EXPECT_EQ(out[1 * 30 + 2 * 6 + 3], x[size_t(60 + (2 * 6 + 3) * 2 + 1)]);

  // (N, 4, 8, 4): either end could be channels; a 4x8x4 net says NCHW.
  std::vector<uint8_t> a(3 * 4 * 8 * 4, 1);
  put(dir + "/x_train.npy", npy("|u1", {3, 4, 8, 4}, a));
  put(dir + "/x_test.npy", npy("|u1", {3, 4, 8, 4}, a));
  put(dir + "/y_train.npy", npy("<i8", {3}, std::vector<int64_t>{0, 1, 0}));
  put(dir + "/y_test.npy", npy("<i8", {3}, std::vector<int64_t>{0, 1, 0}));
  EXPECT_NE(error_of(dir).find("x_train.npy: shape (3, 4, 8, 4) could be NCHW or NHWC"), std::string::npos)
      << error_of(dir);
  NpyDirOptions o;
  o.c = 4, o.h = 8, o.w = 4;
  d = load_npy_dir(dir, o);
  EXPECT_NE(d.summary.find("NCHW"), std::string::npos);
  o.c = 4, o.h = 4, o.w = 8;
  d = load_npy_dir(dir, o);
  EXPECT_NE(d.summary.find("NHWC"), std::string::npos);

  // (N, H, W): one channel.
  put(dir + "/x_train.npy", npy("|u1", {3, 7, 7}, std::vector<uint8_t>(3 * 49, 5)));
  put(dir + "/x_test.npy", npy("|u1", {3, 7, 7}, std::vector<uint8_t>(3 * 49, 5)));
  d = load_npy_dir(dir);
  EXPECT_EQ((std::vector<int>{d.train.c, d.train.h, d.train.w}), (std::vector<int>{1, 7, 7}));
  // A constant channel is centred, not divided by a zero std.
  d.train.copy_range(0, 1, out.data());
  EXPECT_EQ(out[0], 0.0f);
}

TEST(NpyDir, TheNetsInputShapeIsChecked) {
  Small s;
  s.dir = make_temp_dir("npy_net");
  s.write();
  NpyDirOptions o;
  o.c = 1, o.h = 28, o.w = 28, o.net = "lenet";
  const std::string e = error_of(s.dir, o);
  EXPECT_NE(e.find("the images are 3x4x5 (C x H x W, from x_train.npy (12, 3, 4, 5) NCHW) but --net lenet takes "
                   "1x28x28"),
            std::string::npos)
      << e;
  o = {};
  o.classes = 3;  // the labels reach 3
  EXPECT_NE(error_of(s.dir, o).find("y_train.npy: label 3 at index 3 is out of range for the net's 3 classes"),
            std::string::npos)
      << error_of(s.dir, o);
}

// Each bad file: one line naming the file and the problem.
TEST(NpyDir, BadFilesAreNamed) {
  Small s;
  s.dir = make_temp_dir("npy_bad");
  struct Case {
    const char* file;
    std::string bytes;
    std::string want;
  };
  const std::vector<uint8_t> px = s.pixels(s.ntr);
  const std::string full = npy("|u1", s.xshape(s.ntr), px);
  std::string magic = full;
  magic[0] = 'P';
  const std::vector<Case> cases = {
      {"x_train.npy", magic, "x_train.npy: not a .npy file (wrong magic"},
      {"x_train.npy", full.substr(0, full.size() - 7), "x_train.npy: truncated: the shape needs 720 bytes of data, "
                                                       "the file has 713"},
      {"x_train.npy", full + "xx", "x_train.npy: 2 bytes after the data"},
      {"x_train.npy", npy("<i4", s.xshape(s.ntr), std::vector<int32_t>(size_t(12 * 60))),
       "x_train.npy: dtype int32 is not supported for images (uint8 or float32)"},
      {"x_train.npy", npy_bytes("|u1", s.xshape(s.ntr), px.data(), px.size(), true), "x_train.npy: Fortran-order"},
      {"x_train.npy", npy("|u1", {12, 60}, px), "x_train.npy: shape (12, 60) is not (N, C, H, W)"},
      {"x_test.npy", npy("<f4", s.xshape(s.nte), std::vector<float>(size_t(5 * 60))),
       "x_test.npy: dtype float32 differs from x_train.npy's uint8"},
      {"x_test.npy", npy("|u1", {5, 3, 5, 4}, std::vector<uint8_t>(300)),
       "x_test.npy: samples of shape (3, 5, 4) do not match x_train.npy's (3, 4, 5)"},
      {"y_train.npy", npy("<i8", {11}, s.labels(11)), "y_train.npy: 11 labels for the 12 images of x_train.npy"},
      {"y_train.npy", npy("<f4", {12}, std::vector<float>(12)), "y_train.npy: labels must be integers, not float32"},
      {"y_train.npy", npy("<i8", {12, 2}, std::vector<int64_t>(24)), "y_train.npy: shape (12, 2) is not (N,) or (N, 1)"},
      {"y_train.npy", npy("<i8", {12}, [] { std::vector<int64_t> v(12, 1); v[4] = -2; return v; }()),
       "y_train.npy: label -2 at index 4 is negative"},
      {"y_test.npy", npy("<i8", {5}, std::vector<int64_t>{0, 1, 9, 0, 0}),
       "y_test.npy: label 9 at index 2 is out of range (the training labels give 4 classes, 0..3)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.want);
    s.write();
    put(s.dir + "/" + c.file, c.bytes);
    const std::string e = error_of(s.dir);
    EXPECT_NE(e.find(s.dir + "/" + c.want), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  s.write();
  std::filesystem::remove(s.dir + "/y_test.npy");
  EXPECT_NE(error_of(s.dir).find("y_test.npy not found"), std::string::npos) << error_of(s.dir);
  EXPECT_NE(error_of(s.dir + "/nope").find("npy:" + s.dir + "/nope: no such directory"), std::string::npos);
}

TEST(LoadData, OneEntryPointForEverySet) {
  Small s;
  s.dir = make_temp_dir("npy_load");
  s.write();
  DataRequest r;
  r.data = "npy:" + s.dir;
  r.train_limit = 5;
  r.test_limit = 2;
  r.net_c = 3, r.net_h = 4, r.net_w = 5, r.net_classes = 10;
  DataSplit d = load_data(r);
  EXPECT_EQ(d.train.n, 5);
  EXPECT_EQ(d.train.labels.size(), 5u);
  EXPECT_EQ(d.test.n, 2);
  EXPECT_EQ(d.train.classes, 10);  // the net's

  r = {};
  r.data = "synthetic-cifar";
  r.synthetic_train = 30;
  r.synthetic_test = 9;
  r.train_limit = 20;
  r.test_limit = 4;
  r.seed = 3;
  d = load_data(r);
  const DataSplit ref = make_synthetic_cifar(20, 9, 3);
  EXPECT_EQ(d.train.images, ref.train.images);
  EXPECT_EQ(d.test.n, 4);
  EXPECT_EQ(d.test.images.size(), 4u * 3072);
  EXPECT_EQ(std::vector<float>(ref.test.images.begin(), ref.test.images.begin() + 4 * 3072), d.test.images);

  r.net_c = 1, r.net_h = 28, r.net_w = 28, r.net = "lenet";
  try {
    load_data(r);
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--data synthetic-cifar: the images are 3x32x32 but --net lenet takes "
                                         "1x28x28"),
              std::string::npos)
        << e.what();
  }
  r.net_c = 3, r.net_h = 32, r.net_w = 32, r.net_classes = 5, r.net = "five";
  EXPECT_THROW(load_data(r), InputError);  // 10 classes for 5 outputs

  r.data = "cifar10";
  try {
    load_data(r);
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--data cifar10: unknown data set"), std::string::npos);
  }
}

// The whole path: a uint8 NHWC set read for LeNet, staged with copy_images, trains.
TEST(LoadData, NpySetTrainsLenet) {
  Small s;
  s.dir = make_temp_dir("npy_lenet");
  s.c = 1, s.h = 28, s.w = 28, s.classes = 10, s.ntr = 8, s.nte = 4;
  s.nhwc = true;
  s.write();
  DataRequest r;
  r.data = "npy:" + s.dir;
  r.net_c = 1, r.net_h = 28, r.net_w = 28, r.net_classes = 10, r.net = "lenet";
  const DataSplit d = load_data(r);
  EXPECT_NE(d.summary.find("NHWC"), std::string::npos) << d.summary;
  Device dev;
  dev.name = "host0";
  dev.kind = "host";
  DeviceContext ctx(dev, ClockKind::Real);
  nets::Model m = nets::Model::create("lenet", ctx, 8, 1);
  std::vector<int32_t> idx = {7, 6, 5, 4, 3, 2, 1, 0};
  Buffer x(Backend::Host, 0, 8 * 784 * sizeof(float)), y(Backend::Host, 0, 8 * sizeof(int32_t));
  d.train.copy_images(idx.data(), 8, x.as<float>());
  for (int i = 0; i < 8; ++i) y.as<int32_t>()[i] = d.train.labels[size_t(idx[size_t(i)])];
  Buffer g(Backend::Host, 0, (m.num_params() + 2) * sizeof(float));
  float loss[3];
  for (float& l : loss) {
    m.forward_backward(x.as<float>(), y.as<int32_t>(), 8, g.as<float>());
    ctx.compute().synchronize();
    l = g.as<float>()[m.num_params() + 1];
    std::vector<float> p = m.download_params();
    for (size_t i = 0; i < p.size(); ++i) p[i] -= 0.01f / 8 * g.as<float>()[i];
    m.upload_params(p);
  }
  EXPECT_TRUE(std::isfinite(loss[0]));
  EXPECT_LT(loss[2], loss[0]);
}

}  // namespace
}  // namespace nbsgd::test
