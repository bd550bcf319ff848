#include "kernels/basic.h"

#include "kernels/elementwise.h"
#include "kernels/launch.h"
#include "runtime/device/check.h"

namespace nbsgd::kernels {

#if NBSGD_HAVE_CUDA
namespace cuda {
void sum(void* stream, int device, const float* x, size_t n, float* out);
void delay(void* stream, int device, double seconds, DelayMode mode);
}  // namespace cuda
#endif

void fill(Stream& s, float* p, float value, size_t n) { launch_1d(s, n, FillOp{p, value}); }
void scale(Stream& s, float* p, float a, size_t n) { launch_1d(s, n, ScaleOp{p, a}); }
void axpy(Stream& s, float a, const float* x, float* y, size_t n) { launch_1d(s, n, AxpyOp{a, x, y}); }

void sum(Stream& s, const float* x, size_t n, float* out) {
  if (s.backend() == Backend::Cuda) {
#if NBSGD_HAVE_CUDA
    s.note(Issue::Launch);
    cuda::sum(s.native(), s.device(), x, n, out);
#endif
    return;
  }
  s.device_task(
      [x, n, out] {
        double acc = 0.0;
        for (size_t i = 0; i < n; ++i) acc += x[i];
        *out = static_cast<float>(acc);
      },
      Issue::Launch);
}

void delay(Stream& s, double seconds, DelayMode mode) {
  NBSGD_CHECK(seconds >= 0.0, "negative delay");
  if (s.backend() == Backend::Cuda) {
#if NBSGD_HAVE_CUDA
    s.note(Issue::Launch);
    cuda::delay(s.native(), s.device(), seconds, mode);
#endif
    return;
  }
  s.note(Issue::Launch);  // the host twin of the delay kernel
  s.hold(seconds);
}

}  // namespace nbsgd::kernels
