#include "runtime/train/duration_model.h"

#include "nets/models.h"

namespace nbsgd::engine {

DurationModel duration_model_for_net(const DurationModel& base, const std::string& net) {
  return base.for_layers(static_cast<int>(nets::describe_net(net).layers.size()));
}

}  // namespace nbsgd::engine
