// The standalone rates r_i that `nbsgd devices --measure` writes: each device's
// samples per second when it trains alone under its profile. Their sum is the
// efficiency ceiling (METHOD.md, "The run-time model"); `nbsgd train --ceiling`
// and `nbsgd predict --rates` read the file back.
//
//   {"rates": [r_0, ...], "sum": r_0 + ..., "net": "lenet", "profile": "one-slow",
//    "batch": 128, "split": 8, "clock": "virtual", "devices": ["host-worker-0", ...]}
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nbsgd::predict {

struct MeasuredRates {
  std::vector<double> rates;
  std::vector<std::string> devices;
  double sum = 0;
  std::string net, profile, clock;
  int batch = 0, split = 0;
};

nlohmann::json to_json(const MeasuredRates& r);
// Reads and checks a rates file; InputError names `flag` and the file.
MeasuredRates load_rates(const std::string& path, const std::string& flag);

}  // namespace nbsgd::predict
