// Links the installed library: a host device context, two kernels, a model.
#include <cstdio>

#include "kernels/basic.h"
#include "nets/model.h"
#include "runtime/device/buffer.h"
#include "runtime/device/context.h"
#include "runtime/device/device.h"

int main() {
  using namespace nbsgd;
  Device d = host_devices(1, "install test").devices[0];
  DeviceContext ctx(d, ClockKind::Real);
  Buffer x(Backend::Host, 0, 1000 * sizeof(float)), total(Backend::Host, 0, sizeof(float));
  kernels::fill(ctx.compute(), x.as<float>(), 0.5f, 1000);
  kernels::sum(ctx.compute(), x.as<float>(), 1000, total.as<float>());
  ctx.compute().synchronize();
  nets::Model m = nets::Model::create("lenet", ctx, 4, 1);
  std::printf("sum %g params %zu\n", double(*total.as<float>()), m.num_params());
  return 0;
}
