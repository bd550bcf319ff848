// A small file system for full-disk tests: a tmpfs of `bytes` mounted on a fresh
// folder when the process may mount (root, or CAP_SYS_ADMIN), unmounted at the end.
// When it may not, ok() is false and why() says so, and the test falls back to a
// file size limit (RLIMIT_FSIZE) in a child process or skips with that reason.
#pragma once

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "support/test_support.h"

namespace nbsgd::test {

class SmallDisk {
 public:
  explicit SmallDisk(size_t bytes) : dir_(make_temp_dir("smalldisk")) {
    const std::string opts = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) == 0) {
      mounted_ = true;
    } else {
      why_ = std::string("cannot mount a small tmpfs here (") + std::strerror(errno) + ")";
    }
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    ::rmdir(dir_.c_str());
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;

  bool ok() const { return mounted_; }
  const std::string& why() const { return why_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string why_;
};

}  // namespace nbsgd::test
