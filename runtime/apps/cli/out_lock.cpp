#include "runtime/apps/cli/out_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "runtime/device/check.h"

namespace nbsgd::cli {

namespace {

// Takes the lock on an open lock file, or throws naming the holder's pid.
void lock_or_refuse(int& fd, const std::string& dir, const std::string& path, const std::string& flag) {
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return;
  const int err = errno;
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
  ::close(fd);
  fd = -1;
  if (err == EWOULDBLOCK)
    throw InputError(flag + " " + dir + " is in use by another nbsgd run (pid " +
                     (holder.empty() ? std::string("unknown") : holder) + ", holding " + path +
                     "); wait for it to end, or choose another directory");
  throw InputError(flag + " " + dir + ": cannot lock " + path + ": " + std::strerror(err));
}

}  // namespace

void OutDirLock::refuse_if_held(const std::string& dir, const std::string& flag) {
  const std::string path = dir + "/" + kFileName;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;  // no lock file: nobody holds it
  lock_or_refuse(fd, dir, path, flag);
  ::close(fd);
}

OutDirLock::OutDirLock(const std::string& dir, const std::string& flag) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw InputError(flag + " " + dir + ": " + ec.message());
  const std::string path = dir + "/" + kFileName;
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw InputError(flag + " " + dir + ": cannot open its lock " + path + ": " + std::strerror(errno));
  lock_or_refuse(fd_, dir, path, flag);
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw InputError("cannot write the lock " + path + ": " + std::strerror(err));
  }
}

OutDirLock::~OutDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
}

}  // namespace nbsgd::cli
