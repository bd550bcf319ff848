#include "runtime/apps/predict/net_cost.h"

#include "nets/model.h"
#include "runtime/device/context.h"
#include "runtime/device/device.h"

namespace nbsgd::predict {

NetCost net_cost(const std::string& net) {
  // describe_net throws the InputError listing the known nets.
  const nets::NetSpec spec = nets::describe_net(net);
  DeviceContext ctx(host_devices(1, "net cost").devices[0], ClockKind::Real);
  // The engine seeds with --seed; P and FLOPs do not depend on the seed.
  nets::Model model = nets::Model::create(spec, ctx, 1, 0);
  return {net, model.num_params(), model.flops_per_sample()};
}

}  // namespace nbsgd::predict
