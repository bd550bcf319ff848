#include "runtime/train/worker.h"

#include <cmath>
#include <omp.h>

#include <cstring>

#include "kernels/gather.h"
#include "kernels/throttle.h"
#include "nets/optim/commit.h"
#include "runtime/device/check.h"
#include "runtime/device/device_guard.h"

namespace nbsgd::engine {

Worker::Worker(int index, const Device& device, ClockKind clock, const std::string& net, int max_mini_batch,
               int slots, uint64_t seed, int host_threads, bool deterministic)
    : index_(index), ctx_(std::make_unique<DeviceContext>(device, clock)), max_mb_(max_mini_batch) {
  ctx_->set_deterministic(deterministic);  // read by the convolutions as the model is built
  if (device.backend == Backend::Host) {
    // OpenMP's thread count is per thread: set it on each stream's own thread.
    for (Stream* s : {&ctx_->compute(), &ctx_->comm(), &ctx_->copy(), &ctx_->update()})
      s->host_bookkeeping([host_threads] { omp_set_num_threads(host_threads); });
  }
  model_ = std::make_unique<nets::Model>(nets::Model::create(net, *ctx_, max_mini_batch, seed));
  P_ = model_->num_params();
  const Backend b = device.backend;
  const int dev = device.ordinal;
  for (Buffer& a : acc_) {
    a = Buffer(b, dev, (P_ + 2) * sizeof(float));
    optim::zero(ctx_->compute(), a.as<float>(), P_);
  }
  momentum_ = Buffer(b, dev, P_ * sizeof(float));
  {
    std::vector<float> z(P_, 0.0f);
    copy_async(ctx_->compute(), momentum_.data(), z.data(), P_ * sizeof(float));
    ctx_->compute().synchronize();
  }
  const int64_t sample = int64_t(model_->input_channels()) * model_->input_height() * model_->input_width();
  slots_.resize(slots);
  for (Slot& s : slots_) {
    s.pinned_x = Buffer::pinned(b, max_mb_ * sample * sizeof(float));
    s.pinned_y = Buffer::pinned(b, max_mb_ * sizeof(int32_t));
    s.x = Buffer(b, dev, max_mb_ * sample * sizeof(float));
    s.y = Buffer(b, dev, max_mb_ * sizeof(int32_t));
    s.scratch = Buffer(b, dev, (P_ + 2) * sizeof(float));
    s.index = Buffer(b, dev, max_mb_ * sizeof(int32_t));
    s.staged = ctx_->event();
    s.computed = ctx_->event();
    s.done = ctx_->event();
  }
  update_done = ctx_->event();
  for (Event& e : update_done_of) e = ctx_->event();
  host_counts_ = ctx_->backend() == Backend::Host;
}

void Worker::stage_and_compute(int k, const data::Dataset& ds, const std::vector<int32_t>& indices,
                               uint64_t* stamp) {
  Slot& s = slots_[k];
  const int n = static_cast<int>(indices.size());
  NBSGD_CHECK(n > 0 && n <= max_mb_, "mini-batch larger than the staging slots");
  Stream& copy = ctx_->copy();
  Stream& compute = ctx_->compute();
  {
    // The staging wakes the copy stream once, when it is all enqueued (stream.h).
    StreamBatch staging{copy};
    // The slot's previous mini-batch must be done with its buffers.
    copy.wait(s.done);
    const int64_t sample = ds.sample_size();
    if (data_) {
      IndexStage& st = free_index_stage();
      std::copy(indices.begin(), indices.end(), st.pinned.as<int32_t>());
      if (host_counts_) copy.host_bookkeeping([this] { ++staged_; });
      copy_async(copy, s.index.data(), st.pinned.data(), n * sizeof(int32_t));
      copy.record(st.read);
      kernels::GatherOp op = data_->op();
      op.index = s.index.as<int32_t>();
      op.x = s.x.as<float>();
      op.y = s.y.as<int32_t>();
      kernels::gather(copy, op, static_cast<size_t>(n));
    } else {
      stage_on_host(s, ds, indices, sample);
    }
    copy.record(s.staged);
  }
  compute.wait(s.staged);
  compute.wait(update_done);
  if (stamp) kernels::stamp(compute, stamp);
  if (host_counts_) compute.host_bookkeeping([this] { ++computed_; });
  model_->forward_backward(s.x.as<float>(), s.y.as<int32_t>(), n, s.scratch.as<float>());
}

Worker::IndexStage& Worker::free_index_stage() {
  for (size_t i = 0; i < index_ring_.size(); ++i) {
    const size_t j = (index_next_ + i) % index_ring_.size();
    if (index_ring_[j].read.query()) {
      index_next_ = (j + 1) % index_ring_.size();
      return index_ring_[j];
    }
  }
  // Every buffer is still to be read by a queued copy: one more (a few, in the
  // first steps; then the ring has the depth the issuing needs).
  IndexStage st{Buffer::pinned(ctx_->backend(), max_mb_ * sizeof(int32_t)), ctx_->event()};
  index_ring_.push_back(std::move(st));
  index_next_ = 0;
  return index_ring_.back();
}

void Worker::stage_on_host(Slot& s, const data::Dataset& ds, const std::vector<int32_t>& indices, int64_t sample) {
  Stream& copy = ctx_->copy();
  const int n = static_cast<int>(indices.size());
  float* px = s.pinned_x.as<float>();
  int32_t* py = s.pinned_y.as<int32_t>();
  copy.host_task([this, &ds, idx = indices, px, py] {
    ++staged_;
    ds.copy_images(idx.data(), static_cast<int64_t>(idx.size()), px);
    for (size_t i = 0; i < idx.size(); ++i) py[i] = ds.labels[idx[i]];
  });
  copy_async(copy, s.x.data(), px, n * sample * sizeof(float));
  copy_async(copy, s.y.data(), py, n * sizeof(int32_t));
}

std::pair<double, double> Worker::evaluate(const data::Dataset& ds, int batch, const std::atomic<bool>* stop) {
  batch = std::min(batch, max_mb_);
  DeviceGuard guard(ctx_->backend(), ctx_->device().ordinal);
  const Backend b = ctx_->backend();
  const int dev = ctx_->device().ordinal;
  const int64_t sample = ds.sample_size();
  // Evaluation's own staging buffers: a slot's may still be the target of a queued
  // gather and copy of a cancelled mini-batch when evaluation runs mid-training.
  if (eval_.x.bytes() < size_t(max_mb_ * sample) * sizeof(float)) {
    eval_.pinned_x = Buffer::pinned(b, max_mb_ * sample * sizeof(float));
    eval_.pinned_y = Buffer::pinned(b, max_mb_ * sizeof(int32_t));
    eval_.x = Buffer(b, dev, max_mb_ * sample * sizeof(float));
    eval_.y = Buffer(b, dev, max_mb_ * sizeof(int32_t));
  }
  Buffer out(b, dev, 2 * sizeof(float));
  Stream& compute = ctx_->compute();
  compute.wait(update_done);
  std::vector<float> zero2(2, 0.0f);
  copy_async(compute, out.data(), zero2.data(), 2 * sizeof(float));
  double loss = 0, correct = 0;
  for (int64_t i = 0; i < ds.n; i += batch) {
    if (stop && stop->load()) {
      compute.synchronize();  // the zeroing above reads a local
      return {std::nan(""), std::nan("")};
    }
    const int n = static_cast<int>(std::min<int64_t>(batch, ds.n - i));
    Slot& s = eval_;
    ds.copy_range(i, n, s.pinned_x.as<float>());
    std::memcpy(s.pinned_y.data(), ds.labels.data() + i, n * sizeof(int32_t));
    copy_async(compute, s.x.data(), s.pinned_x.data(), n * sample * sizeof(float));
    copy_async(compute, s.y.data(), s.pinned_y.data(), n * sizeof(int32_t));
    model_->evaluate(s.x.as<float>(), s.y.as<int32_t>(), n, out.as<float>());
    // The staging buffers are reused: drain before the next chunk. Evaluation is
    // off the training path, so the synchronisation costs nothing there.
    compute.synchronize();
  }
  float host[2];
  copy_async(compute, host, out.data(), sizeof host);
  compute.synchronize();
  loss = host[0];
  correct = host[1];
  return {loss / double(ds.n), correct / double(ds.n)};
}

static std::vector<float> download(Stream& s, const float* p, size_t n) {
  std::vector<float> v(n);
  copy_async(s, v.data(), p, n * sizeof(float));
  s.synchronize();
  return v;
}
static void upload(Stream& s, float* p, const std::vector<float>& v) {
  copy_async(s, p, v.data(), v.size() * sizeof(float));
  s.synchronize();
}

std::vector<float> Worker::download_params() {
  ctx_->compute().wait(update_done);
  return download(ctx_->compute(), params(), P_);
}
std::vector<float> Worker::download_momentum() {
  ctx_->compute().wait(update_done);
  return download(ctx_->compute(), momentum(), P_);
}
std::vector<float> Worker::download_bn() {
  return download(ctx_->compute(), model_->bn_buffers(), model_->num_bn_buffers());
}
void Worker::upload_params(const std::vector<float>& p) {
  NBSGD_CHECK(p.size() == P_, "parameter count");
  upload(ctx_->compute(), params(), p);
}
void Worker::upload_momentum(const std::vector<float>& m) {
  NBSGD_CHECK(m.size() == P_, "momentum count");
  upload(ctx_->compute(), momentum(), m);
}
void Worker::upload_bn(const std::vector<float>& b) {
  NBSGD_CHECK(b.size() == model_->num_bn_buffers(), "BN buffer count");
  upload(ctx_->compute(), model_->bn_buffers(), b);
}

}  // namespace nbsgd::engine
