// SGD with momentum, Nesterov and weight decay over flat buffers: the fused update
// that reads the accumulator on the device, and the plain host reference it is
// tested against.
#pragma once

#include <cstddef>
#include <vector>

#include "runtime/device/stream.h"

namespace nbsgd::optim {

struct SgdConfig {
  double lr = 0.1;  // base learning rate (the schedule's starting value)
  double momentum = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  // lr_scaling = linear: the step is further multiplied by n / count_ref, with n
  // the accumulator's sample count read on the device (pass N*B). 0: off. The
  // scale needs n, which only the device knows without a sync, so it is applied
  // inside the kernel rather than through lr_scale.
  double count_ref = 0.0;
};

// One optimizer step, ONE pass over the data on `s`:
//   n = accumulator[P] (read on the device; no host sync)
//   n == 0: params and momentum untouched;
//   else    g = G/n + wd*w; buf = mu*buf + g; step = nesterov ? g + mu*buf : buf
//           (mu == 0: step = g); w -= lr * lr_scale [* n/count_ref] * step
//   then all P+2 accumulator entries are zeroed.
// `lr` is this step's scheduled rate (LrSchedule::lr_at), cfg.lr is not used here.
// `momentum` must start zeroed (that equals PyTorch's first-step buf = g); it may be
// null when cfg.momentum == 0. Gradient + count + loss tail are cleared by a second
// 2-element launch on the same stream (see SgdUpdateOp).
void fused_sgd_update(Stream& s, float* params, float* momentum, float* accumulator, size_t P, float lr,
                      const SgdConfig& cfg, float lr_scale);

// The reference: torch.optim.SGD's step, literally, in double on the host, with an
// explicit "buffer is None" state. Used by tests and the bench's validation.
class SgdReference {
 public:
  explicit SgdReference(size_t P) : buf_(P, 0.0) {}
  // Same contract as fused_sgd_update on host vectors (accumulator has P+2 entries).
  void step(std::vector<float>& params, std::vector<float>& accumulator, double lr, const SgdConfig& cfg,
            double lr_scale);
  const std::vector<double>& momentum() const { return buf_; }
  bool has_buffer() const { return has_buffer_; }

 private:
  std::vector<double> buf_;
  bool has_buffer_ = false;
};

}  // namespace nbsgd::optim
