#include "runtime/apps/cli/metrics_log.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/device/check.h"
#include "runtime/device/file_io.h"

namespace nbsgd::cli {

namespace {

// The records of steps before `step`, as text; refuses a gap before it.
std::string records_before(const std::string& path, int64_t step) {
  std::ifstream in(path, std::ios::binary);
  std::string kept, line;
  int64_t last = -1;
  bool any = false;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (in.eof()) break;  // no newline: a record cut short by a crash, dropped
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
      throw InputError(fmt::format("--resume: {}: line {} is not a step record; move the file away to start a "
                                   "new log", path, lineno));
    const int64_t s = j["step"].get<int64_t>();
    if (s >= step) continue;  // logged after the checkpoint was written: the resumed run logs it again
    if (any && s != last + 1)
      throw InputError(fmt::format("--resume: {}: step {} follows step {}; the log is not one run's", path, s, last));
    kept += line + "\n";
    last = s;
    any = true;
  }
  if (any && last != step - 1)
    throw InputError(fmt::format("--resume: {} ends at step {}, the checkpoint is at step {}: steps {} to {} would be "
                                 "missing from it",
                                 path, last, step, last + 1, step - 1));
  return kept;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, int64_t resume_step) : path_(path) {
  if (resume_step >= 0 && std::filesystem::exists(path))
    write_file_atomically(path, records_before(path, resume_step), "metrics");
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) throw InputError("cannot write " + path + ": " + std::strerror(errno));
  good_bytes_ = std::ftell(f_);
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::append(const std::string& line) {
  const std::string rec = line + "\n";
  if (std::fwrite(rec.data(), 1, rec.size(), f_) == rec.size() && std::fflush(f_) == 0) {
    good_bytes_ += static_cast<long>(rec.size());
    return;
  }
  const int err = errno;
  // Cut the file back to its last whole record; the stream is done with.
  std::fclose(f_);
  f_ = nullptr;
  if (::truncate(path_.c_str(), good_bytes_) != 0) { /* the error below names the file anyway */ }
  throw InputError("cannot write " + path_ + ": " + std::strerror(err) + " (the run stopped; the log holds every step "
                   "before this one)");
}

}  // namespace nbsgd::cli
