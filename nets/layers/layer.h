// Layers: the pieces a net description is made of, each with forward and backward
// on both backends (host: OpenBLAS/oneDNN + functor loops; CUDA: cuBLAS/cuDNN +
// the same functors as kernels).
//
// Layout and naming follow PyTorch, so a checkpoint loads into the equivalent
// torch.nn module: activations NCHW, Linear weight [out, in], Conv2d weight
// [out, in, kh, kw], parameters `<layer>.weight` / `<layer>.bias`, BatchNorm2d
// buffers `<layer>.running_mean` / `<layer>.running_var`.
//
// Every call is enqueued on the context's compute stream; pointers are device
// pointers of that context (host memory on the host backend). Weight gradients are
// written (beta = 0, never accumulated) into the caller's gradient slot, so each
// parameter's gradient is written by exactly one call per mini-batch.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace nbsgd {
class DeviceContext;
}

namespace nbsgd::nets {

// One sample's shape: C x H x W (a feature vector is C x 1 x 1).
struct Shape {
  int c = 0, h = 1, w = 1;
  int64_t size() const { return int64_t(c) * h * w; }
  bool operator==(const Shape&) const = default;
};

enum class LayerKind { Conv2d, Linear, BatchNorm2d, ReLU, MaxPool2d, GlobalAvgPool, Flatten, Add };
const char* to_string(LayerKind k);

// One entry of a net description. `inputs` are indices of earlier entries; -1 is
// the network input. Add takes two inputs, every other kind one.
struct LayerSpec {
  LayerKind kind = LayerKind::ReLU;
  std::string name;  // parameter prefix; empty for layers without parameters
  std::vector<int> inputs;
  int out = 0;       // Conv2d: output channels; Linear: output features
  int kernel = 0;    // Conv2d, MaxPool2d
  int stride = 1;    // Conv2d, MaxPool2d
  int pad = 0;       // Conv2d
  bool bias = true;  // Conv2d, Linear
};

// A named tensor a layer owns a slice of the model's flat buffers for.
enum class Init { KaimingNormal, Zero, One };
struct TensorDecl {
  std::string suffix;  // "weight", "bias", "running_mean", "running_var"
  std::vector<int64_t> shape;
  Init init = Init::Zero;
  int64_t fan_in = 0;  // KaimingNormal: std = sqrt(2 / fan_in)
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// Output shape of `spec` for these input shapes; throws Error for a shape the
// layer cannot take (e.g. a kernel larger than the padded input).
Shape infer_shape(const LayerSpec& spec, std::span<const Shape> in);

class Layer {
 public:
  Layer(const LayerSpec& spec, std::vector<Shape> in, Shape out) : spec_(spec), in_(std::move(in)), out_(out) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  const LayerSpec& spec() const { return spec_; }
  const std::vector<Shape>& in_shapes() const { return in_; }
  const Shape& out_shape() const { return out_; }

  // Trained parameters (in this order in the flat parameter buffer) and
  // untrained buffers (BatchNorm running statistics).
  virtual std::vector<TensorDecl> params() const { return {}; }
  virtual std::vector<TensorDecl> buffers() const { return {}; }
  // Where this layer's parameters and buffers live; called before the first use.
  virtual void bind(float* params, float* buffers) {}

  // y = f(x) for n samples (n <= the max batch the layer was made for).
  virtual void forward(std::span<const float* const> x, float* y, int n, bool train) = 0;
  // From dy: dx[i] for each input (skipped where dx[i] is null; added to dx[i] when
  // accumulate[i], else written) and the parameter gradients into dparams (the
  // layer's slot of the gradient buffer, same layout as its parameters). Needs the
  // x and y of the latest forward with train = true on the same n.
  virtual void backward(std::span<const float* const> x, const float* y, const float* dy,
                        std::span<float* const> dx, std::span<const bool> accumulate, float* dparams,
                        int n) = 0;

  // Forward multiply-adds per sample (0 for element-wise layers).
  virtual double macs_per_sample() const { return 0.0; }

 protected:
  LayerSpec spec_;
  std::vector<Shape> in_;
  Shape out_;
};

// The layer for `spec` on ctx's backend, with workspaces for up to max_batch
// samples. ctx must stay at its address while the layer exists.
std::unique_ptr<Layer> make_layer(DeviceContext& ctx, const LayerSpec& spec, std::span<const Shape> in, int max_batch);

}  // namespace nbsgd::nets
