// The --out folder's lock: one run at a time writes into a folder. The lock is
// flock(2) on "<out>/nbsgd.lock", held for the run's lifetime and released by the
// kernel however the process ends (SIGKILL included), so a stale lock file never
// blocks anybody. The holder's pid is written into the file, so a second run is
// refused naming it. The file stays: removing it would let a third run lock a new
// file while the second still holds the old one.
#pragma once

#include <string>

namespace nbsgd::cli {

class OutDirLock {
 public:
  // Creates `dir` when needed and takes its lock, or throws an InputError that
  // names the folder and the holder's pid. `flag` names the flag ("--out").
  OutDirLock(const std::string& dir, const std::string& flag = "--out");
  ~OutDirLock();
  OutDirLock(const OutDirLock&) = delete;
  OutDirLock& operator=(const OutDirLock&) = delete;

  // Throws as the constructor would when another run holds `dir`'s lock; creates
  // nothing (a run checks this before its set-up, and locks after it).
  static void refuse_if_held(const std::string& dir, const std::string& flag = "--out");

  static constexpr const char* kFileName = "nbsgd.lock";

 private:
  int fd_ = -1;
};

}  // namespace nbsgd::cli
