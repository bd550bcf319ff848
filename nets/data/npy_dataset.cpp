#include "nets/data/npy_dataset.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "nets/data/npy.h"
#include "runtime/device/check.h"

namespace nbsgd::data {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "(";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + (s.size() == 1 ? ",)" : ")");
}

struct Images {
  NpyArray a;
  std::string file;  // x_train.npy, for messages
  int64_t n = 0;
  int c = 0, h = 0, w = 0;
  bool nhwc = false;
};

// Layout from the shape: the channel count is the small end (<= 4 channels).
// Where both ends or neither could be channels, the net's shape decides.
// `like` (the training split, for the test split): same dtype, same sample shape,
// same layout.
Images open_images(const std::string& path, const std::string& file, const NpyDirOptions& o,
                   const Images* like = nullptr) {
  Images x;
  x.a = open_npy(path);
  x.file = file;
  const NpyHeader& hd = x.a.header;
  if (hd.type != NpyType::U8 && hd.type != NpyType::F32)
    throw InputError(path + ": dtype " + std::string(to_string(hd.type)) +
                     " is not supported for images (uint8 or float32)");
  const auto& s = hd.shape;
  if (s.size() != 3 && s.size() != 4)
    throw InputError(path + ": shape " + shape_str(s) + " is not (N, C, H, W), (N, H, W, C) or (N, H, W)");
  for (size_t i = 1; i < s.size(); ++i)
    if (s[i] < 1 || s[i] > (1 << 16)) throw InputError(path + ": shape " + shape_str(s) + " has an unusable dimension");
  x.n = s[0];
  if (like) {
    const auto& ls = like->a.header.shape;
    if (hd.type != like->a.header.type)
      throw InputError(path + ": dtype " + std::string(to_string(hd.type)) + " differs from " + like->file + "'s " +
                       to_string(like->a.header.type));
    const std::vector<int64_t> mine(s.begin() + 1, s.end()), want(ls.begin() + 1, ls.end());
    if (mine != want)
      throw InputError(path + ": samples of shape " + shape_str(mine) + " do not match " + like->file + "'s " +
                       shape_str(want));
    x.c = like->c, x.h = like->h, x.w = like->w, x.nhwc = like->nhwc;
    return x;
  }
  if (s.size() == 3) {
    x.c = 1, x.h = int(s[1]), x.w = int(s[2]);
    return x;
  }
  const bool first = s[1] <= 4, last = s[3] <= 4;
  bool nhwc;
  if (first != last) {
    nhwc = last;
  } else {
    const bool nchw_fits = o.c == s[1] && o.h == s[2] && o.w == s[3];
    const bool nhwc_fits = o.c == s[3] && o.h == s[1] && o.w == s[2];
    if (nchw_fits == nhwc_fits)
      throw InputError(path + ": shape " + shape_str(s) + " could be NCHW or NHWC" +
                       (o.c > 0 ? " and the net's input does not tell" : "") +
                       " (channel counts are taken to be <= 4)");
    nhwc = nhwc_fits;
  }
  x.nhwc = nhwc;
  x.c = int(nhwc ? s[3] : s[1]);
  x.h = int(nhwc ? s[1] : s[2]);
  x.w = int(nhwc ? s[2] : s[3]);
  return x;
}

std::vector<int32_t> read_labels(const std::string& path, const std::string& file, int64_t n,
                                 const std::string& images_file, int64_t keep, int64_t classes,
                                 const std::string& range_why) {
  const NpyArray a = open_npy(path);
  const NpyHeader& hd = a.header;
  if (hd.type == NpyType::F32 || hd.type == NpyType::F64)
    throw InputError(path + ": labels must be integers, not " + std::string(to_string(hd.type)));
  const bool ok_shape = (hd.shape.size() == 1) || (hd.shape.size() == 2 && hd.shape[1] == 1);
  if (!ok_shape) throw InputError(path + ": shape " + shape_str(hd.shape) + " is not (N,) or (N, 1)");
  if (hd.shape[0] != n)
    throw InputError(path + ": " + std::to_string(hd.shape[0]) + " labels for the " + std::to_string(n) +
                     " images of " + images_file);
  std::vector<int32_t> out(static_cast<size_t>(keep));
  const size_t isz = itemsize(hd.type);
  const bool is_signed = hd.type == NpyType::I8 || hd.type == NpyType::I16 || hd.type == NpyType::I32 ||
                         hd.type == NpyType::I64;
  for (int64_t i = 0; i < keep; ++i) {
    const unsigned char* p = a.data() + i * isz;
    int64_t v = 0;
    if (is_signed) {
      switch (isz) {
        case 1: v = int8_t(p[0]); break;
        case 2: { int16_t t; std::memcpy(&t, p, 2); v = t; break; }
        case 4: { int32_t t; std::memcpy(&t, p, 4); v = t; break; }
        default: std::memcpy(&v, p, 8);
      }
    } else {
      uint64_t u = 0;
      std::memcpy(&u, p, isz);  // little-endian host
      if (u >= uint64_t(classes))
        throw InputError(path + ": label " + std::to_string(u) + " at index " + std::to_string(i) + " is out of range" +
                         range_why);
      v = int64_t(u);
    }
    if (v < 0)
      throw InputError(path + ": label " + std::to_string(v) + " at index " + std::to_string(i) + " is negative");
    if (v >= classes)
      throw InputError(path + ": label " + std::to_string(v) + " at index " + std::to_string(i) + " is out of range" +
                       range_why);
    out[size_t(i)] = int32_t(v);
  }
  return out;
}

// Largest label of the first `keep` entries, to count the classes when the net
// does not say.
int64_t max_label(const std::string& path, int64_t keep) {
  const std::vector<int32_t> v = read_labels(path, "", open_npy(path).header.shape.at(0), "", keep,
                                             std::numeric_limits<int32_t>::max(), " (labels must fit in int32)");
  int64_t m = -1;
  for (int32_t x : v) m = std::max<int64_t>(m, x);
  return m;
}

}  // namespace

DataSplit load_npy_dir(const std::string& dir, const NpyDirOptions& o) {
  namespace fs = std::filesystem;
  const std::string tag = "npy:" + dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError("--data " + tag + ": no such directory");
  auto path = [&](const char* f) {
    const std::string p = (fs::path(dir) / f).string();
    if (!fs::is_regular_file(p, ec))
      throw InputError("--data " + tag + ": " + p + " not found (the directory must hold x_train.npy, y_train.npy, "
                       "x_test.npy and y_test.npy)");
    return p;
  };
  const std::string xtr = path("x_train.npy"), ytr = path("y_train.npy"), xte = path("x_test.npy"),
                    yte = path("y_test.npy");

  const Images tr = open_images(xtr, "x_train.npy", o);
  const Images te = open_images(xte, "x_test.npy", o, &tr);
  if (o.c > 0 && (o.c != tr.c || o.h != tr.h || o.w != tr.w))
    throw InputError(fmt::format("--data {}: the images are {}x{}x{} (C x H x W, from x_train.npy {} {}) but {} "
                                 "takes {}x{}x{}",
                                 tag, tr.c, tr.h, tr.w, shape_str(tr.a.header.shape), tr.nhwc ? "NHWC" : "NCHW",
                                 o.net.empty() ? "the net" : "--net " + o.net, o.c, o.h, o.w));
  if (tr.n < 1) throw InputError(xtr + ": no samples");
  const int64_t ntr = o.train_limit > 0 ? std::min(o.train_limit, tr.n) : tr.n;
  const int64_t nte = o.test_limit > 0 ? std::min(o.test_limit, te.n) : te.n;

  int64_t classes = o.classes;
  std::string why = fmt::format(" for the net's {} classes", classes);
  if (classes <= 0) {
    classes = max_label(ytr, ntr) + 1;
    why = fmt::format(" (the training labels give {} classes, 0..{})", classes, classes - 1);
  }
  DataSplit d;
  d.train.labels = read_labels(ytr, "y_train.npy", tr.n, "x_train.npy", ntr, classes, why);
  d.test.labels = read_labels(yte, "y_test.npy", te.n, "x_test.npy", nte, classes, why);

  // Normalisation: float32 as stored; uint8 to [0, 1] then per channel with the
  // training split's mean and std (one streaming pass over the mapping).
  const bool u8 = tr.a.header.type == NpyType::U8;
  std::vector<float> scale(size_t(tr.c), 1.0f), shift(size_t(tr.c), 0.0f);
  if (u8) {
    const int64_t hw = int64_t(tr.h) * tr.w, s = tr.c * hw;
    std::vector<double> sum(size_t(tr.c)), sq(size_t(tr.c));
    const unsigned char* p = tr.a.data();
    for (int64_t i = 0; i < ntr; ++i)
      for (int64_t j = 0; j < s; ++j) {
        const int k = int(tr.nhwc ? j % tr.c : j / hw);
        const double v = p[i * s + j] / 255.0;
        sum[size_t(k)] += v;
        sq[size_t(k)] += v * v;
      }
    const double m = double(ntr) * hw;
    for (int k = 0; k < tr.c; ++k) {
      const double mean = sum[size_t(k)] / m;
      double sd = std::sqrt(std::max(0.0, sq[size_t(k)] / m - mean * mean));
      if (!(sd > 1e-12)) sd = 1.0;  // a constant channel: centre it only
      scale[size_t(k)] = float(1.0 / (255.0 * sd));
      shift[size_t(k)] = float(-mean / sd);
    }
  }
  auto fill = [&](Dataset& ds, const Images& x, int64_t n, const char* split) {
    ds.name = tag + "/" + split;
    ds.n = n;
    ds.c = x.c, ds.h = x.h, ds.w = x.w;
    ds.classes = int(classes);
    auto m = std::make_shared<MappedImages>();
    m->keep = x.a.file;
    m->base = x.a.data();
    m->u8 = u8;
    m->nhwc = x.nhwc;
    m->scale = scale;
    m->shift = shift;
    ds.mapped = std::move(m);
    ds.bytes = byte_pixels_of(ds.mapped, ds.c);
  };
  fill(d.train, tr, ntr, "train");
  fill(d.test, te, nte, "test");
  d.summary = fmt::format(
      "data npy:{}: x_train.npy {} {} read as {} ({} samples of {}x{}x{}, {} test), {} classes, memory-mapped; {}", dir,
      shape_str(tr.a.header.shape), to_string(tr.a.header.type), tr.a.header.shape.size() == 3 ? "NHW (1 channel)"
                                                                  : tr.nhwc ? "NHWC" : "NCHW",
      ntr, tr.c, tr.h, tr.w, nte, classes,
      u8 ? "uint8 scaled to [0, 1] and normalised per channel with the training mean and std"
         : "float32 taken as stored");
  return d;
}

}  // namespace nbsgd::data
