// How a cuDNN convolution picks its algorithm, as a pure function so that the rules
// are tested on the host (nets/cuda/conv_cudnn.cpp feeds it cuDNN's heuristics).
//
// Candidates come in the heuristics' order of preference. One is taken when
//   - its status is success;
//   - its math is plain FP32 (CUDNN_DEFAULT_MATH or CUDNN_FMA_MATH): a TENSOR_OP
//     candidate would run FP32 as TF32 and the CUDA layers would no longer agree
//     with the host backend to FP32 tolerances. The convolution descriptor asks
//     for FMA math, but the heuristics still list what else exists;
//   - it is deterministic, when --deterministic asked for that;
//   - the workspace of that algorithm, asked of cuDNN for the algorithm itself
//     (cudnnGet...WorkspaceSize), fits the limit. The heuristics' `memory` is an
//     estimate that can differ from what the call then needs.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

namespace nbsgd::nets {

struct ConvAlgoCandidate {
  int algo = 0;
  bool ok = false;           // perf.status == CUDNN_STATUS_SUCCESS
  bool tensor_math = false;  // perf.mathType is a TENSOR_OP math
  bool deterministic = false;  // perf.determinism == CUDNN_DETERMINISTIC
};

struct ConvAlgoChoice {
  int algo = -1;  // -1: none qualifies
  size_t workspace = 0;
};

inline ConvAlgoChoice pick_conv_algo(const std::vector<ConvAlgoCandidate>& candidates, size_t limit,
                                     bool deterministic, const std::function<size_t(int algo)>& workspace_of) {
  for (const ConvAlgoCandidate& c : candidates) {
    if (!c.ok || c.tensor_math || (deterministic && !c.deterministic)) continue;
    const size_t need = workspace_of(c.algo);
    if (need <= limit) return {c.algo, need};
  }
  return {};
}

}  // namespace nbsgd::nets
