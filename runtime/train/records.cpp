#include "runtime/train/records.h"

#include <nlohmann/json.hpp>

#include "runtime/device/check.h"

namespace nbsgd::engine {

void LossTracker::add(double loss_sum, double count) {
  if (count <= 0) return;
  last_ = loss_sum / count;
  recent_.emplace_back(loss_sum, count);
  loss_ += loss_sum;
  n_ += count;
  if (recent_.size() > kWindow) {
    loss_ -= recent_.front().first;
    n_ -= recent_.front().second;
    recent_.pop_front();
  }
}

std::string LossTracker::save_state() const {
  nlohmann::json j{{"loss", loss_}, {"n", n_}, {"last", std::isfinite(last_) ? nlohmann::json(last_) : nlohmann::json()}};
  j["recent"] = nlohmann::json::array();
  for (auto [l, c] : recent_) j["recent"].push_back({l, c});
  return j.dump();
}

void LossTracker::restore_state(const std::string& text) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  try {
    if (j.is_discarded() || !j.is_object()) throw InputError("not a JSON object");
    recent_.clear();
    for (const auto& p : j.at("recent")) recent_.emplace_back(p.at(0).get<double>(), p.at(1).get<double>());
    if (recent_.size() > kWindow) throw InputError("more than " + std::to_string(kWindow) + " steps in its window");
    loss_ = j.at("loss").get<double>();
    n_ = j.at("n").get<double>();
    last_ = j.at("last").is_null() ? std::nan("") : j.at("last").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(e.what());
  }
}

}  // namespace nbsgd::engine
