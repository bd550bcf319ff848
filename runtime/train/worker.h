// One worker: a device context, a model replica and the flat buffers of
// contract (params P, scratch slots [g, count, loss] of P+2, the accumulator of
// P+2, momentum of P), plus the staging slots that carry a mini-batch to the
// compute stream, formed on the copy stream while the compute stream works on the
// previous one:
//   - with the training set on the device (use_data, device_data.h): the
//     mini-batch's indices are copied from pinned memory and one gather kernel
//     forms it there; the GPU never waits for the host;
//   - without: a host function gathers into pinned memory, then two copies.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "nets/data/dataset.h"
#include "nets/model.h"
#include "runtime/device/buffer.h"
#include "runtime/device/context.h"
#include "runtime/train/device_data.h"

namespace nbsgd::engine {

struct Slot {
  Buffer pinned_x, pinned_y, x, y, scratch;
  Buffer index;  // the mini-batch's indices on the device (device-resident data)
  // staged: the mini-batch is on the device; computed: its forward/backward and
  // injected delay are done (real clock, non-blocking windows: what the worker's
  // completion watcher waits on); done: the slot is free again (after the commit).
  Event staged, computed, done;
  // Host-side copy of the indices the gather task reads (owned here so the task
  // outlives nothing).
  std::vector<int32_t> indices;
};

class Worker {
 public:
  // host_threads: OpenMP threads the host backend's streams of this worker may use
  // (cores shared among the host workers, so N workers do not oversubscribe them).
  // deterministic: cuDNN picks deterministic algorithms only (--deterministic).
  Worker(int index, const Device& device, ClockKind clock, const std::string& net, int max_mini_batch, int slots,
         uint64_t seed, int host_threads = 1, bool deterministic = false);

  int index() const { return index_; }
  DeviceContext& ctx() { return *ctx_; }
  nets::Model& model() { return *model_; }
  size_t P() const { return P_; }
  float* params() { return model_->params(); }
  // Two accumulators, used by alternate steps (step & 1): the ring's sum of step t
  // reads its own, so it need not wait for a worker's update of step t-1, which on
  // a worker still running a cancelled mini-batch comes late (METHOD.md's window,
  // real_driver.cpp). accumulator() is step 0's (AD-PSGD, benches).
  float* accumulator(int64_t step = 0) { return acc_[step & 1].as<float>(); }
  float* momentum() { return momentum_.as<float>(); }
  int slots() const { return static_cast<int>(slots_.size()); }
  Slot& slot(int k) { return slots_[k]; }

  // Enqueues the gather + copy of `indices` into slot k on the copy stream (after
  // the slot's previous use is done), then forward/backward into the slot's
  // scratch on the compute stream. Returns nothing; the caller adds the commit.
  // `stamp` (optional, device memory): the compute stream's time just before the
  // forward pass, for the duty-cycle throttle.
  // With the training set on this worker's device, stage_and_compute gathers there
  // from the given data set's copy (`d` made from the same Dataset; null: gather on
  // the host). Set before the first mini-batch.
  void use_data(const DeviceData* d) { data_ = d; }
  const DeviceData* device_data() const { return data_; }
  void stage_and_compute(int k, const data::Dataset& ds, const std::vector<int32_t>& indices,
                         uint64_t* stamp = nullptr);
  // Evaluation of a whole split on this worker; returns (mean loss, accuracy).
  // Mean loss and accuracy over `ds`; NaNs when `stop` is set before the end (it
  // is looked at between chunks).
  std::pair<double, double> evaluate(const data::Dataset& ds, int batch, const std::atomic<bool>* stop = nullptr);

  // Host copies (synchronous; for checkpoints and replica checks).
  std::vector<float> download_params();
  std::vector<float> download_momentum();
  std::vector<float> download_bn();
  void upload_params(const std::vector<float>& p);
  void upload_momentum(const std::vector<float>& m);
  void upload_bn(const std::vector<float>& b);

  Event update_done;  // recorded after the step's update; the next step waits on it
  // Recorded after the update of a step of this parity: accumulator(t) is zero, and
  // nothing reads it, once the update of step t-2 is done.
  Event update_done_of[2];
  const Event& accumulator_free(int64_t step) const { return update_done_of[step & 1]; }

  // Host backend: mini-batches whose staging, and whose forward/backward, actually
  // ran (a cancelled one skipped before it began counts in neither). -1 on CUDA,
  // where counting would take a host function in the streams.
  int64_t staged_runs() const { return host_counts_ ? staged_.load() : -1; }
  int64_t computed_runs() const { return host_counts_ ? computed_.load() : -1; }

 private:
  int index_;
  std::unique_ptr<DeviceContext> ctx_;
  std::unique_ptr<nets::Model> model_;
  size_t P_ = 0;
  int max_mb_ = 0;
  Buffer acc_[2], momentum_;
  std::vector<Slot> slots_;
  Slot eval_;  // evaluate()'s own staging buffers (x, y, pinned_x, pinned_y), made on first use
  bool host_counts_ = false;
  const DeviceData* data_ = nullptr;
  // Pinned buffers for the indices on their way to a slot, each free once the copy
  // that reads it has run (its event): a buffer is reused only then, and the ring
  // grows instead of waiting, so the issuer never waits on the device for it.
  struct IndexStage {
    Buffer pinned;
    Event read;
  };
  std::vector<IndexStage> index_ring_;
  size_t index_next_ = 0;
  IndexStage& free_index_stage();
  void stage_on_host(Slot& s, const data::Dataset& ds, const std::vector<int32_t>& indices, int64_t sample);
  std::atomic<int64_t> staged_{0}, computed_{0};
};

}  // namespace nbsgd::engine
