// The one convolution interface the Conv2d layer calls, with a library behind it
// per backend: oneDNN on the host (nets/layers/conv_onednn.cpp), cuDNN on CUDA
// (nets/cuda/conv_cudnn.cpp). Square kernels, equal stride and padding on both
// axes, NCHW activations, OIHW weights.
#pragma once

#include <memory>

namespace nbsgd {
class DeviceContext;
}

namespace nbsgd::nets {

struct ConvGeometry {
  int cin = 0, h = 0, w = 0;
  int cout = 0, k = 0, stride = 1, pad = 0;
  int oh = 0, ow = 0;
  bool bias = false;
};

// Each call is enqueued on the context's compute stream. Primitives, descriptors
// and algorithms are made once per batch size and cached.
class ConvImpl {
 public:
  virtual ~ConvImpl() = default;
  // y = conv(x, w) (+ b)
  virtual void forward(int n, const float* x, const float* w, const float* b, float* y) = 0;
  // dx = conv_transpose(dy, w), written or added (accumulate) into dx
  virtual void backward_data(int n, const float* dy, const float* w, float* dx, bool accumulate) = 0;
  // dw = correlation of x and dy (written, beta = 0); db = sum of dy per channel if bias
  virtual void backward_weights(int n, const float* x, const float* dy, float* dw, float* db) = 0;
  // Both backward passes of one mini-batch (dx skipped when null): a library that
  // converts dy to its own layout does it once for the two.
  virtual void backward(int n, const float* x, const float* dy, const float* w, float* dw, float* db, float* dx,
                        bool accumulate) {
    backward_weights(n, x, dy, dw, db);
    if (dx) backward_data(n, dy, w, dx, accumulate);
  }
};

std::unique_ptr<ConvImpl> make_onednn_conv(DeviceContext& ctx, const ConvGeometry& g, int max_batch);
#if NBSGD_HAVE_CUDA
std::unique_ptr<ConvImpl> make_cudnn_conv(DeviceContext& ctx, const ConvGeometry& g, int max_batch);
#endif

}  // namespace nbsgd::nets
