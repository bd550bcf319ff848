// metrics.jsonl of a run folder: one JSON line per step, every write checked.
//
// A write that fails (a full disk) is a one-line error, and the file is cut back to
// its last whole record, so it never ends mid-record. On --resume the log
// continues exactly after the checkpoint's step: records of later steps (logged
// after that checkpoint by a run that was then killed) are dropped, so no step is
// logged twice and none is missing.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace nbsgd::cli {

class MetricsLog {
 public:
  // Opens `path` for appending. With `resume_step` >= 0, first keeps only the
  // records of steps before it (rewritten atomically), and refuses a log whose
  // kept records do not end at resume_step - 1 (steps would be missing).
  MetricsLog(const std::string& path, int64_t resume_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void append(const std::string& line);  // one record, without its newline

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  long good_bytes_ = 0;  // the end of the last whole record
};

}  // namespace nbsgd::cli
