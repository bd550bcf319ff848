#include "runtime/device/file_io.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "runtime/device/check.h"

namespace nbsgd {

namespace {

namespace fs = std::filesystem;

std::string errno_str(int e) { return std::strerror(e); }

// One line: "cannot write <what> <path>: <step>: <cause>".
[[noreturn]] void fail(const std::string& what, const std::string& path, const std::string& step,
                       const std::string& cause) {
  throw InputError(fmt::format("cannot write {} {}: {}: {}", what, path, step, cause));
}

// Closes and removes the temporary file unless release()d after the rename.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void set_fd(int fd) { fd_ = fd; }
  int fd() const { return fd_; }
  int close_fd() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
  int fd_ = -1;
};

// "<path>.tmp.<pid>" of a writer that no longer runs: left by a kill, safe to remove.
void remove_stale_temps(const std::string& path) {
  const fs::path p(path);
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  const std::string prefix = p.filename().string() + ".tmp.";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        digits.size() > 10)
      continue;
    const long pid = std::strtol(digits.c_str(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) ::unlink(it->path().c_str());
  }
}

}  // namespace

std::string temp_path_for(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

void write_file_atomically(const std::string& path, const std::vector<ByteSpan>& chunks, const std::string& what) {
  remove_stale_temps(path);
  const std::string tmp = temp_path_for(path);
  TempFile guard(tmp);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int e = errno;
    guard.release();  // nothing was created
    fail(what, path, "cannot create " + tmp, errno_str(e));
  }
  guard.set_fd(fd);
  for (const ByteSpan& c : chunks) {
    const auto* p = static_cast<const char*>(c.data);
    size_t left = c.bytes;
    while (left > 0) {
      const ssize_t n = ::write(fd, p, std::min<size_t>(left, size_t{1} << 30));
      const int e = errno;
      if (n < 0 && e == EINTR) continue;
      // write() returning 0 for a regular file means no space was given; say so.
      if (n <= 0) fail(what, path, "writing " + tmp, n < 0 ? errno_str(e) : "no space written");
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  if (::fsync(fd) != 0) {
    const int e = errno;
    fail(what, path, "fsync " + tmp, errno_str(e));
  }
  if (guard.close_fd() != 0) {
    const int e = errno;
    fail(what, path, "close " + tmp, errno_str(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    fail(what, path, "rename from " + tmp, errno_str(e));
  }
  guard.release();
  // The rename is in the folder's data: fsync the folder so it survives a crash.
  // File systems that cannot fsync a folder (EINVAL) make renames durable themselves.
  const fs::path parent = fs::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    const int e = errno;
    fail(what, path, "cannot open its folder " + dir + " to fsync it", errno_str(e));
  }
  const int rc = ::fsync(dfd);
  const int e = errno;
  ::close(dfd);
  if (rc != 0 && e != EINVAL) fail(what, path, "fsync of its folder " + dir, errno_str(e));
}

void write_file_atomically(const std::string& path, std::string_view text, const std::string& what) {
  write_file_atomically(path, std::vector<ByteSpan>{{text.data(), text.size()}}, what);
}

}  // namespace nbsgd
