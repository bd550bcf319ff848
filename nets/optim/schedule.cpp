#include "nets/optim/schedule.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <numbers>
#include <sstream>
#include <vector>

#include "runtime/device/check.h"

namespace nbsgd::optim {

double LrSchedule::lr_at(int64_t step) const {
  if (step < 0) step = 0;
  if (step < warmup) {
    // Linear ramp to the main schedule's first value; never 0, so step 0 moves.
    LrSchedule main = *this;
    main.warmup = 0;
    return main.lr_at(0) * static_cast<double>(step + 1) / static_cast<double>(warmup);
  }
  const int64_t t = step - warmup;
  switch (kind) {
    case ScheduleKind::Constant:
      return base_lr;
    case ScheduleKind::Step:
      return base_lr * std::pow(gamma, static_cast<double>(t / period));
    case ScheduleKind::Cosine: {
      const double progress = static_cast<double>(std::min(t, horizon)) / static_cast<double>(horizon);
      return eta_min + (base_lr - eta_min) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    }
  }
  return base_lr;
}

std::string LrSchedule::describe() const {
  std::ostringstream o;
  o.precision(17);
  if (warmup > 0) o << "warmup:" << warmup << "+";
  switch (kind) {
    case ScheduleKind::Constant:
      o << "constant";
      break;
    case ScheduleKind::Step:
      o << "step:" << period << ":" << gamma;
      break;
    case ScheduleKind::Cosine:
      o << "cosine:" << horizon;
      if (eta_min != 0.0) o << ":" << eta_min;
      break;
  }
  return o.str();
}

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) return out;
    start = p + 1;
  }
}

struct Parser {
  const std::string& spec;
  int64_t steps_per_epoch;

  [[noreturn]] void fail(const std::string& why) const {
    throw InputError("--lr-schedule '" + spec + "': " + why +
                     " (expected constant, step:N:GAMMA, cosine:T[:ETA_MIN], optionally preceded by "
                     "warmup:W+; counts in steps, or epochs with a trailing e)");
  }

  // A positive count of steps, or of epochs with a trailing `e`.
  int64_t count(const std::string& text, const char* what) const {
    std::string digits = text;
    bool epochs = !digits.empty() && digits.back() == 'e';
    if (epochs) digits.pop_back();
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
      fail(std::string(what) + " '" + text + "' is not a positive integer");
    errno = 0;
    const long long v = std::strtoll(digits.c_str(), nullptr, 10);
    if (errno == ERANGE || v <= 0) fail(std::string(what) + " '" + text + "' is not a positive integer");
    if (!epochs) return v;
    if (steps_per_epoch <= 0) fail(std::string(what) + " '" + text + "' is in epochs, but the steps per epoch are unknown");
    return v * steps_per_epoch;
  }

  double number(const std::string& text, const char* what) const {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(v))
      fail(std::string(what) + " '" + text + "' is not a number");
    return v;
  }
};

}  // namespace

LrSchedule parse_lr_schedule(const std::string& spec, double base_lr, int64_t steps_per_epoch) {
  Parser ps{spec, steps_per_epoch};
  if (!std::isfinite(base_lr) || base_lr <= 0.0) ps.fail("the base learning rate must be positive");
  LrSchedule s;
  s.base_lr = base_lr;
  std::vector<std::string> parts = split(spec, '+');
  if (parts.size() > 2) ps.fail("at most one warm-up and one schedule");
  if (parts.size() == 2) {
    std::vector<std::string> w = split(parts[0], ':');
    if (w.size() != 2 || w[0] != "warmup") ps.fail("'" + parts[0] + "' before '+' must be warmup:W");
    s.warmup = ps.count(w[1], "warm-up length");
  }
  std::vector<std::string> f = split(parts.back(), ':');
  const std::string& kind = f[0];
  if (kind == "constant") {
    if (f.size() != 1) ps.fail("constant takes no arguments");
    s.kind = ScheduleKind::Constant;
  } else if (kind == "step") {
    if (f.size() != 3) ps.fail("step needs step:N:GAMMA");
    s.kind = ScheduleKind::Step;
    s.period = ps.count(f[1], "step period");
    s.gamma = ps.number(f[2], "step factor");
    if (s.gamma <= 0.0) ps.fail("step factor must be positive");
  } else if (kind == "cosine") {
    if (f.size() != 2 && f.size() != 3) ps.fail("cosine needs cosine:T or cosine:T:ETA_MIN");
    s.kind = ScheduleKind::Cosine;
    s.horizon = ps.count(f[1], "cosine length");
    if (f.size() == 3) s.eta_min = ps.number(f[2], "cosine floor");
    if (s.eta_min < 0.0 || s.eta_min > base_lr) ps.fail("cosine floor must lie in [0, base learning rate]");
  } else if (kind == "warmup") {
    ps.fail("warm-up needs a schedule after it, e.g. warmup:W+constant");
  } else {
    ps.fail("unknown schedule '" + kind + "'");
  }
  return s;
}

}  // namespace nbsgd::optim
