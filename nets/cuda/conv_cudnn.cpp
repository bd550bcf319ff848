// CUDA convolution through cuDNN's convolution API: cudnnConvolutionForward,
// BackwardData and BackwardFilter (+ AddTensor / BackwardBias for the bias).
//
// Algorithms come from cuDNN's heuristics (the _v7 queries), filtered by
// nets/cuda/conv_pick.h: plain FP32 math only (CUDNN_FMA_MATH, no TF32, so the CUDA
// layers agree with the host backend to fp32 tolerances), deterministic ones only
// under --deterministic (DeviceContext::deterministic), and the first whose own
// workspace size (asked of cuDNN for that algorithm) fits. The workspace is sized
// once, for the max batch, so nothing is allocated while work is being enqueued;
// smaller batches pick among algorithms that fit it.
//
// Descriptors per batch size are cached; the cache is touched only by the thread
// that enqueues the model's work.
#include <cudnn.h>

#include <algorithm>
#include <string>
#include <vector>
#include <map>
#include <memory>

#include "nets/cuda/conv_pick.h"
#include "nets/layers/conv.h"
#include "runtime/device/buffer.h"
#include "runtime/device/context.h"
#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/device_guard.h"

namespace nbsgd::nets {
namespace {

constexpr size_t kWorkspaceCap = size_t(64) << 20;

template <class Perf>
std::vector<ConvAlgoCandidate> candidates(const Perf* perf, int count) {
  std::vector<ConvAlgoCandidate> c;
  for (int i = 0; i < count; ++i)
    c.push_back({int(perf[i].algo), perf[i].status == CUDNN_STATUS_SUCCESS,
                 perf[i].mathType == CUDNN_TENSOR_OP_MATH || perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
                 perf[i].determinism == CUDNN_DETERMINISTIC});
  return c;
}

class CudnnConv final : public ConvImpl {
 public:
  CudnnConv(DeviceContext& ctx, const ConvGeometry& g, int max_batch) : ctx_(ctx), g_(g), dev_(ctx.device().ordinal) {
    DeviceGuard guard(dev_);
    NBSGD_CUDNN_CHECK(dev_, cudnnCreateFilterDescriptor(&wdesc_));
    NBSGD_CUDNN_CHECK(dev_, cudnnSetFilter4dDescriptor(wdesc_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g.cout, g.cin, g.k, g.k));
    NBSGD_CUDNN_CHECK(dev_, cudnnCreateConvolutionDescriptor(&cdesc_));
    NBSGD_CUDNN_CHECK(dev_, cudnnSetConvolution2dDescriptor(cdesc_, g.pad, g.pad, g.stride, g.stride, 1, 1,
                                                            CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    NBSGD_CUDNN_CHECK(dev_, cudnnSetConvolutionMathType(cdesc_, CUDNN_FMA_MATH));
    NBSGD_CUDNN_CHECK(dev_, cudnnCreateTensorDescriptor(&bdesc_));
    NBSGD_CUDNN_CHECK(dev_, cudnnSetTensor4dDescriptor(bdesc_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, g.cout, 1, 1));
    ws_bytes_ = kWorkspaceCap;
    const PerBatch& pb = per_batch(max_batch);
    ws_bytes_ = pb.need;
    cache_.clear();  // re-pick against the real workspace size
    workspace_ = Buffer(Backend::Cuda, dev_, ws_bytes_ == 0 ? 256 : ws_bytes_);
  }

  ~CudnnConv() override {
    cache_.clear();
    if (bdesc_) cudnnDestroyTensorDescriptor(bdesc_);
    if (cdesc_) cudnnDestroyConvolutionDescriptor(cdesc_);
    if (wdesc_) cudnnDestroyFilterDescriptor(wdesc_);
  }

  void forward(int n, const float* x, const float* w, const float* b, float* y) override {
    DeviceGuard guard(dev_);  // cuDNN runs on the current device: the handle's
    const PerBatch& pb = per_batch(n);
    cudnnHandle_t h = handle();
    const float one = 1.0f, zero = 0.0f;
    ctx_.compute().note(Issue::Library);
    NBSGD_CUDNN_CHECK(dev_, cudnnConvolutionForward(h, &one, pb.x, x, wdesc_, w, cdesc_, pb.fwd, workspace_.data(),
                                                    ws_bytes_, &zero, pb.y, y));
    if (g_.bias) {
      ctx_.compute().note(Issue::Library);
      NBSGD_CUDNN_CHECK(dev_, cudnnAddTensor(h, &one, bdesc_, b, &one, pb.y, y));
    }
  }

  void backward_data(int n, const float* dy, const float* w, float* dx, bool accumulate) override {
    DeviceGuard guard(dev_);  // cuDNN runs on the current device: the handle's
    const PerBatch& pb = per_batch(n);
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    ctx_.compute().note(Issue::Library);
    NBSGD_CUDNN_CHECK(dev_, cudnnConvolutionBackwardData(handle(), &one, wdesc_, w, pb.y, dy, cdesc_, pb.bwd_data,
                                                         workspace_.data(), ws_bytes_, &beta, pb.x, dx));
  }

  void backward_weights(int n, const float* x, const float* dy, float* dw, float* db) override {
    DeviceGuard guard(dev_);  // cuDNN runs on the current device: the handle's
    const PerBatch& pb = per_batch(n);
    cudnnHandle_t h = handle();
    const float one = 1.0f, zero = 0.0f;
    ctx_.compute().note(Issue::Library);
    NBSGD_CUDNN_CHECK(dev_, cudnnConvolutionBackwardFilter(h, &one, pb.x, x, pb.y, dy, cdesc_, pb.bwd_filter,
                                                           workspace_.data(), ws_bytes_, &zero, wdesc_, dw));
    if (g_.bias) {
      ctx_.compute().note(Issue::Library);
      NBSGD_CUDNN_CHECK(dev_, cudnnConvolutionBackwardBias(h, &one, pb.y, dy, &zero, bdesc_, db));
    }
  }

 private:
  struct PerBatch {
    cudnnTensorDescriptor_t x = nullptr, y = nullptr;
    cudnnConvolutionFwdAlgo_t fwd{};
    cudnnConvolutionBwdDataAlgo_t bwd_data{};
    cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
    size_t need = 0;  // largest workspace of the three chosen algorithms
    PerBatch() = default;
    PerBatch(const PerBatch&) = delete;
    PerBatch& operator=(const PerBatch&) = delete;
    ~PerBatch() {
      if (x) cudnnDestroyTensorDescriptor(x);
      if (y) cudnnDestroyTensorDescriptor(y);
    }
  };

  cudnnHandle_t handle() {
    auto h = static_cast<cudnnHandle_t>(ctx_.cudnn());
    // The handle is shared by the context's streams: bind it to compute per call.
    NBSGD_CUDNN_CHECK(dev_, cudnnSetStream(h, static_cast<cudaStream_t>(ctx_.compute().native())));
    return h;
  }

  const PerBatch& per_batch(int n) {
    auto it = cache_.find(n);
    if (it != cache_.end()) return *it->second;
    auto pb = std::make_unique<PerBatch>();
    NBSGD_CUDNN_CHECK(dev_, cudnnCreateTensorDescriptor(&pb->x));
    NBSGD_CUDNN_CHECK(dev_, cudnnSetTensor4dDescriptor(pb->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, g_.cin, g_.h, g_.w));
    NBSGD_CUDNN_CHECK(dev_, cudnnCreateTensorDescriptor(&pb->y));
    NBSGD_CUDNN_CHECK(dev_, cudnnSetTensor4dDescriptor(pb->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, g_.cout, g_.oh, g_.ow));
    cudnnHandle_t h = static_cast<cudnnHandle_t>(ctx_.cudnn());
    int got = 0;

    const bool det = ctx_.deterministic();
    auto choose = [&](const std::vector<ConvAlgoCandidate>& c, const char* pass,
                      const std::function<size_t(int)>& workspace_of) {
      const ConvAlgoChoice ch = pick_conv_algo(c, ws_bytes_, det, workspace_of);
      if (ch.algo < 0)
        throw Error("cuDNN offers no " + std::string(pass) + " algorithm for this convolution that is FP32 (no TF32)" +
                        (det ? ", deterministic" : "") + " and fits " + std::to_string(ws_bytes_) + " bytes of workspace",
                    dev_);
      pb->need = std::max(pb->need, ch.workspace);
      return ch.algo;
    };

    cudnnConvolutionFwdAlgoPerf_t fp[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    NBSGD_CUDNN_CHECK(dev_, cudnnGetConvolutionForwardAlgorithm_v7(h, pb->x, wdesc_, cdesc_, pb->y,
                                                                   CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, fp));
    pb->fwd = cudnnConvolutionFwdAlgo_t(choose(candidates(fp, got), "forward", [&](int a) {
      size_t b = 0;
      NBSGD_CUDNN_CHECK(dev_, cudnnGetConvolutionForwardWorkspaceSize(h, pb->x, wdesc_, cdesc_, pb->y,
                                                                      cudnnConvolutionFwdAlgo_t(a), &b));
      return b;
    }));

    cudnnConvolutionBwdDataAlgoPerf_t dp[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    NBSGD_CUDNN_CHECK(dev_, cudnnGetConvolutionBackwardDataAlgorithm_v7(h, wdesc_, pb->y, cdesc_, pb->x,
                                                                        CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, dp));
    pb->bwd_data = cudnnConvolutionBwdDataAlgo_t(choose(candidates(dp, got), "backward-data", [&](int a) {
      size_t b = 0;
      NBSGD_CUDNN_CHECK(dev_, cudnnGetConvolutionBackwardDataWorkspaceSize(h, wdesc_, pb->y, cdesc_, pb->x,
                                                                           cudnnConvolutionBwdDataAlgo_t(a), &b));
      return b;
    }));

    cudnnConvolutionBwdFilterAlgoPerf_t wp[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    NBSGD_CUDNN_CHECK(dev_, cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                                h, pb->x, pb->y, cdesc_, wdesc_, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, wp));
    pb->bwd_filter = cudnnConvolutionBwdFilterAlgo_t(choose(candidates(wp, got), "backward-filter", [&](int a) {
      size_t b = 0;
      NBSGD_CUDNN_CHECK(dev_, cudnnGetConvolutionBackwardFilterWorkspaceSize(h, pb->x, pb->y, cdesc_, wdesc_,
                                                                             cudnnConvolutionBwdFilterAlgo_t(a), &b));
      return b;
    }));
    return *cache_.emplace(n, std::move(pb)).first->second;
  }

  DeviceContext& ctx_;
  ConvGeometry g_;
  int dev_;
  cudnnFilterDescriptor_t wdesc_ = nullptr;
  cudnnConvolutionDescriptor_t cdesc_ = nullptr;
  cudnnTensorDescriptor_t bdesc_ = nullptr;
  size_t ws_bytes_ = 0;
  Buffer workspace_;
  std::map<int, std::unique_ptr<PerBatch>> cache_;
};

}  // namespace

std::unique_ptr<ConvImpl> make_cudnn_conv(DeviceContext& ctx, const ConvGeometry& g, int max_batch) {
  return std::make_unique<CudnnConv>(ctx, g, max_batch);
}

}  // namespace nbsgd::nets
