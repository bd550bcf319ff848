#include "runtime/engine/config.h"

#include <nlohmann/json.hpp>

namespace nbsgd::engine {

std::string config_json(const TrainConfig& c) {
  nlohmann::json j{
      {"net", c.net},
      {"data", c.data},
      {"data_dir", c.data_dir},
      {"train_limit", c.train_limit},
      {"test_limit", c.test_limit},
      {"exchange", c.exchange},
      {"window", c.window},
      {"cap", c.cap.empty() ? "default" : c.cap},
      {"topology", c.topology},
      {"window_scope", c.window_scope},
      {"budget", c.budget},
      {"devices", c.devices},
      {"host_workers", c.host_workers},
      {"clock", c.clock},
      {"slowdown", c.slowdown},
      {"profile", c.profile},
      {"ceiling", c.ceiling},
      {"inflight", c.inflight},
      {"virtual_gflops", c.model.gflops},
      {"virtual_launch_overhead_s", c.model.launch_overhead_s},
      {"virtual_link_gbps", c.model.link_gbps},
      {"virtual_link_latency_s", c.model.link_latency_s},
      {"batch", c.batch},
      {"split", c.split},
      {"lr", c.lr},
      {"momentum", c.momentum},
      {"weight_decay", c.weight_decay},
      {"nesterov", c.nesterov},
      {"lr_schedule", c.lr_schedule},
      {"lr_scaling", c.lr_scaling},
      {"epochs", c.epochs},
      {"steps", c.steps},
      {"target_loss", c.target_loss},
      {"seed", c.seed},
      {"shuffle", c.shuffle},
      {"checkpoint_every", c.checkpoint_every},
      {"eval_every", c.eval_every},
      {"adaptive_guard", c.adaptive_guard},
  };
  return j.dump(2);
}

}  // namespace nbsgd::engine
