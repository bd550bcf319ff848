#include "nets/optim/sgd.h"

#include "nets/optim/ops.h"
#include "runtime/device/check.h"
#include "kernels/launch.h"

namespace nbsgd::optim {

void fused_sgd_update(Stream& s, float* params, float* momentum, float* accumulator, size_t P, float lr,
                      const SgdConfig& cfg, float lr_scale) {
  NBSGD_CHECK(cfg.momentum == 0.0 || momentum != nullptr, "fused_sgd_update: momentum > 0 needs a momentum buffer");
  NBSGD_CHECK(!cfg.nesterov || cfg.momentum > 0.0, "fused_sgd_update: Nesterov needs momentum > 0");
  SgdUpdateOp op{params,
                 momentum,
                 accumulator,
                 P,
                 static_cast<float>(static_cast<double>(lr) * lr_scale),
                 static_cast<float>(cfg.momentum),
                 static_cast<float>(cfg.weight_decay),
                 cfg.nesterov,
                 static_cast<float>(cfg.count_ref)};
  kernels::launch_1d(s, P, op);
  kernels::launch_1d(s, 2, ZeroOp{accumulator + P});
}

void SgdReference::step(std::vector<float>& params, std::vector<float>& accumulator, double lr,
                        const SgdConfig& cfg, double lr_scale) {
  const size_t P = params.size();
  NBSGD_CHECK(accumulator.size() == P + 2 && buf_.size() == P, "SgdReference: size mismatch");
  const double n = accumulator[P];
  if (n != 0.0) {
    double eff = lr * lr_scale;
    if (cfg.count_ref > 0.0) eff *= n / cfg.count_ref;
    for (size_t i = 0; i < P; ++i) {
      double d_p = accumulator[i] / n;
      const double p = params[i];
      if (cfg.weight_decay != 0.0) d_p += cfg.weight_decay * p;
      if (cfg.momentum != 0.0) {
        buf_[i] = has_buffer_ ? cfg.momentum * buf_[i] + d_p : d_p;
        d_p = cfg.nesterov ? d_p + cfg.momentum * buf_[i] : buf_[i];
      }
      params[i] = static_cast<float>(p - eff * d_p);
    }
    if (cfg.momentum != 0.0) has_buffer_ = true;
  }
  for (auto& a : accumulator) a = 0.0f;
}

}  // namespace nbsgd::optim
