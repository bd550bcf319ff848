#include "runtime/apps/predict/rates.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "runtime/device/check.h"

namespace nbsgd::predict {

nlohmann::json to_json(const MeasuredRates& r) {
  return {{"rates", r.rates}, {"sum", r.sum},       {"net", r.net},     {"profile", r.profile},
          {"batch", r.batch}, {"split", r.split},   {"clock", r.clock}, {"devices", r.devices}};
}

MeasuredRates load_rates(const std::string& path, const std::string& flag) {
  const std::string where = flag + " " + path;
  std::ifstream f(path);
  if (!f) throw InputError(where + ": cannot read the file");
  std::stringstream ss;
  ss << f.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw InputError(where + ": not a JSON object (expected the output of nbsgd devices --measure)");
  MeasuredRates r;
  if (!j.contains("rates") || !j["rates"].is_array() || j["rates"].empty())
    throw InputError(where + ": no 'rates' array (expected the output of nbsgd devices --measure)");
  for (const auto& v : j["rates"]) {
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0)
      throw InputError(where + ": rates: every rate must be a positive number of samples/s");
    r.rates.push_back(v.get<double>());
    r.sum += r.rates.back();
  }
  if (j.contains("sum")) {
    if (!j["sum"].is_number()) throw InputError(where + ": sum: not a number");
    const double sum = j["sum"].get<double>();
    if (std::abs(sum - r.sum) > 1e-6 * r.sum)
      throw InputError(where + ": sum " + std::to_string(sum) + " is not the sum of the rates (" +
                       std::to_string(r.sum) + ")");
  }
  auto str = [&](const char* key) { return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : ""; };
  auto num = [&](const char* key) { return j.contains(key) && j[key].is_number_integer() ? j[key].get<int>() : 0; };
  r.net = str("net");
  r.profile = str("profile");
  r.clock = str("clock");
  r.batch = num("batch");
  r.split = num("split");
  if (j.contains("devices") && j["devices"].is_array())
    for (const auto& d : j["devices"]) r.devices.push_back(d.is_string() ? d.get<std::string>() : "");
  return r;
}

}  // namespace nbsgd::predict
