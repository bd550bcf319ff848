#include "runtime/apps/cli/signals.h"

#include <unistd.h>

#include <csignal>
#include <cstring>
#include <iterator>
#include <string>

namespace nbsgd::cli {

namespace {

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};

// Process-wide by nature: a signal handler has nothing else to reach.
std::atomic<bool> g_stop{false};
std::atomic<int> g_signo{0};
int g_depth = 0;  // nesting of SignalScope (one thread sets them up: the CLI's)
struct sigaction g_previous[3];

extern "C" void on_stop_signal(int signo) {
  int none = 0;
  if (g_signo.compare_exchange_strong(none, signo)) {
    g_stop.store(true);
    return;
  }
  // The second signal: end now. Whatever write is in flight leaves a temporary file
  // (removed by the next write to that path); the renamed files are all whole.
  _exit(128 + g_signo.load());
}

}  // namespace

SignalScope::SignalScope() {
  if (g_depth++ > 0) return;
  g_stop.store(false);
  g_signo.store(0);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // reads and writes in flight are resumed, not failed with EINTR
  for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &sa, &g_previous[i]);
}

SignalScope::~SignalScope() {
  if (--g_depth > 0) return;
  for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
}

const std::atomic<bool>& SignalScope::stop_flag() { return g_stop; }
int SignalScope::signal_number() { return g_signo.load(); }
int SignalScope::exit_code() { return 128 + g_signo.load(); }

std::string SignalScope::signal_name(int signo) {
  switch (signo) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "signal " + std::to_string(signo);
  }
}

}  // namespace nbsgd::cli
