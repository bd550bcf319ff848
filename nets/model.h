// Model: one replica of a net on one worker's device. It owns its device buffers
// (the flat parameter buffer, the BatchNorm buffers, activations and gradients
// sized for a max mini-batch, library workspaces) and enqueues all its work on the
// context's compute stream, on both backends. Move-only.
//
// Flat buffers (see the shared contract): params holds P floats, the parameters of
// every layer in description order, each tensor contiguous in PyTorch layout;
// forward_backward writes the P+2 scratch entries [g (P), count, loss_sum], with g
// the SUM of the per-sample gradients. BatchNorm running statistics live in a
// separate buffer, outside P.
//
// The DeviceContext must outlive the model and stay at its address. A model is
// driven by one thread at a time (the calls only enqueue work).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nets/checkpoint.h"
#include "nets/models.h"

namespace nbsgd {
class DeviceContext;
}

namespace nbsgd::nets {

struct ParamInfo {
  std::string name;  // "<layer>.weight", "<layer>.running_mean", ...
  std::vector<int64_t> shape;
  size_t offset = 0;  // in floats, into params() (or bn_buffers() for buffer_info())
  size_t count = 0;
};

class Model {
 public:
  // A net from describe_net (a built-in name or a .toml path), or any description. Parameters
  // are drawn on the host from `seed` with the portable generator (Kaiming normal,
  // std sqrt(2/fan_in), for conv and linear weights; zero biases; BN weight 1, bias
  // 0, running mean 0, var 1) and copied to the device: identical on every backend.
  // Returns once the parameters are on the device.
  static Model create(const std::string& net, DeviceContext& ctx, int max_batch, uint64_t seed);
  static Model create(const NetSpec& net, DeviceContext& ctx, int max_batch, uint64_t seed);

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const std::string& net_name() const;
  // Net name + hash of the description (net_signature): "made for another net" check.
  std::string description() const;
  int input_channels() const;
  int input_height() const;
  int input_width() const;
  size_t input_size() const;  // floats per sample
  int classes() const;
  int max_batch() const;
  DeviceContext& context() const;

  size_t num_params() const;
  float* params() const;  // device pointer, num_params() floats
  size_t num_bn_buffers() const;
  float* bn_buffers() const;  // device pointer, num_bn_buffers() floats (may be 0)
  std::vector<ParamInfo> param_info() const;
  std::vector<ParamInfo> buffer_info() const;

  // Training FLOPs per sample, from the layer shapes: 2*MACs forward, 2*MACs for
  // the weight gradient and 2*MACs for the input gradient (not computed for a layer
  // fed by the network input). Element-wise layers are not counted.
  double flops_per_sample() const;

  // One mini-batch in training mode, on ctx.compute(): x [count, C, H, W] and labels
  // [count] are device pointers; scratch has P+2 floats and receives the gradient
  // sum (every entry of g written, never accumulated), scratch[P] = count and
  // scratch[P+1] = the loss sum. Updates the BN running statistics.
  void forward_backward(const float* x, const int32_t* labels, int count, float* scratch);
  // Eval mode (BN running statistics): out[0] += loss sum, out[1] += correct count.
  void evaluate(const float* x, const int32_t* labels, int count, float* out);
  // Forward only; logits() then holds [count, classes] once the stream gets there.
  void forward(const float* x, int count, bool train);
  const float* logits() const;

  // Host copies; these synchronise the compute stream.
  std::vector<float> download_params() const;
  void upload_params(const std::vector<float>& host);
  std::vector<float> download_bn_buffers() const;
  void upload_bn_buffers(const std::vector<float>& host);
  // Parameters and BN buffers from another replica of the same net on the same
  // backend (any device), enqueued on this model's compute stream. The source must
  // not be written until this model's compute stream has passed the copy.
  void copy_params_from(const Model& src);

  // Checkpoints (safetensors, nets/checkpoint.h): the parameters and BN buffers
  // under their PyTorch names, `extra` tensors (e.g. optimizer state), the metadata
  // plus "nbsgd.net" = description(). Atomic; synchronises the compute stream.
  void save(const std::string& path, const std::vector<TensorView>& extra = {},
            std::map<std::string, std::string> metadata = {}) const;
  // Loads parameters and BN buffers; the file must hold exactly these plus the
  // `extra` tensors (name, shape), else InputError "was made for another net".
  // Returns everything read, so the caller can take the extra tensors and metadata.
  LoadedTensors load(const std::string& path,
                     const std::vector<std::pair<std::string, std::vector<int64_t>>>& extra = {});

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nbsgd::nets
