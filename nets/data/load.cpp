#include "nets/data/load.h"

#include <algorithm>

#include "nets/data/fashion_mnist.h"
#include "nets/data/npy_dataset.h"
#include "nets/data/synthetic_cifar.h"
#include "runtime/device/check.h"

namespace nbsgd::data {

DataSplit load_data(const DataRequest& r) {
  DataSplit d;
  if (r.data == "fashion-mnist") {
    d = load_fashion_mnist(r.data_dir, r.train_limit > 0 ? r.train_limit : -1);
  } else if (r.data == "synthetic-cifar") {
    const int64_t n = r.train_limit > 0 ? std::min(r.train_limit, r.synthetic_train) : r.synthetic_train;
    d = make_synthetic_cifar(n, r.synthetic_test, r.seed);
  } else if (r.data.rfind("npy:", 0) == 0 && r.data.size() > 4) {
    NpyDirOptions o;
    o.train_limit = r.train_limit;
    o.test_limit = r.test_limit;
    o.c = r.net_c, o.h = r.net_h, o.w = r.net_w, o.classes = r.net_classes;
    o.net = r.net;
    return load_npy_dir(r.data.substr(4), o);
  } else {
    throw InputError("--data " + r.data + ": unknown data set (fashion-mnist, synthetic-cifar, or npy:DIR)");
  }
  if (r.test_limit > 0 && r.test_limit < d.test.n) d.test.truncate(r.test_limit);
  const Dataset& t = d.train;
  const std::string net = r.net.empty() ? "the net" : "--net " + r.net;
  if (r.net_c > 0 && (t.c != r.net_c || t.h != r.net_h || t.w != r.net_w))
    throw InputError("--data " + r.data + ": the images are " + std::to_string(t.c) + "x" + std::to_string(t.h) + "x" +
                     std::to_string(t.w) + " but " + net + " takes " + std::to_string(r.net_c) + "x" +
                     std::to_string(r.net_h) + "x" + std::to_string(r.net_w));
  if (r.net_classes > 0 && t.classes > r.net_classes)
    throw InputError("--data " + r.data + ": " + std::to_string(t.classes) + " classes but " + net + " has " +
                     std::to_string(r.net_classes) + " outputs");
  return d;
}

}  // namespace nbsgd::data
