// Stream and Event: the same semantics on both backends.
//
//   CUDA: a non-blocking cudaStream_t and a cudaEvent_t.
//   Host: a worker thread running an ordered queue of tasks; an event is a marker
//         task that completes when the stream reaches it and carries a timestamp,
//         on the real (steady) clock or on the stream's virtual clock.
//
// Stream and Event are move-only owners. Work is enqueued and returns at once;
// query/synchronize observe completion; Stream::wait orders one stream after an
// event recorded on another, without blocking the host.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "runtime/device/backend.h"

namespace nbsgd {

class StreamImpl;
class EventImpl;

// Whether an event records time. Timing costs a timestamp write per record on the
// GPU and keeps the driver from taking its fast path for events, so only the events
// that measure something ask for it; Event::elapsed_s refuses the others on both
// backends (the host mirrors CUDA's rule so host tests catch a missing Timing::On).
enum class Timing { Off, On };

class Event {
 public:
  Event();
  Event(Backend backend, int device, Timing timing = Timing::Off);
  Event(Event&&) noexcept;
  Event& operator=(Event&&) noexcept;
  ~Event();

  bool valid() const { return impl_ != nullptr; }
  Backend backend() const;
  bool timed() const;
  // True when the most recent record has completed (or nothing was ever recorded).
  bool query() const;
  void synchronize() const;
  // Host backend only: the completion time of the latest record, in seconds on the
  // clock of the stream it was recorded on (virtual time, or steady_now_s()).
  double host_timestamp() const;
  // Seconds from `start` to `end`, both completed, both on the same backend, both
  // created with Timing::On.
  static double elapsed_s(const Event& start, const Event& end);

  EventImpl* impl() const { return impl_.get(); }

 private:
  std::unique_ptr<EventImpl> impl_;
};

// What a stream was asked to do, by kind (issue 13: the work per mini-batch). Counted
// as it is enqueued, on both backends, so the host backend's issue path, which
// mirrors the CUDA one call for call, gives the CUDA path's counts without a GPU.
//   launch        a kernel (CUDA), or its host twin: a functor's loop;
//   library       a cuBLAS/cuDNN call (CUDA), or its host twin (oneDNN, dnnl_sgemm);
//   host_function a host function in the stream (cudaLaunchHostFunc): the GPU waits
//                 for the host to run it;
//   wait, record  a stream's wait on an event, an event's record;
//   copy          a memcpy in the stream.
struct IssueCounts {
  int64_t launch = 0, library = 0, host_function = 0, wait = 0, record = 0, copy = 0;
  IssueCounts operator-(const IssueCounts& o) const {
    return {launch - o.launch, library - o.library, host_function - o.host_function,
            wait - o.wait,     record - o.record,   copy - o.copy};
  }
  IssueCounts& operator+=(const IssueCounts& o) {
    launch += o.launch, library += o.library, host_function += o.host_function;
    wait += o.wait, record += o.record, copy += o.copy;
    return *this;
  }
  bool operator==(const IssueCounts&) const = default;
};
enum class Issue { Launch, Library, Copy };

struct StreamOptions {
  std::string name = "stream";
  ClockKind clock = ClockKind::Real;  // host backend only
};

class Stream {
 public:
  Stream();
  // A host-backend stream: its own worker thread.
  static Stream host(const StreamOptions& opt);
  // A new non-blocking CUDA stream on device `ordinal`.
  static Stream cuda(int ordinal, const StreamOptions& opt);
  // Wraps an existing CUDA stream (e.g. one made in a green context); `owned`
  // destroys it with the Stream.
  static Stream adopt_cuda(int ordinal, void* native, bool owned, const StreamOptions& opt);

  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;
  ~Stream();

  bool valid() const { return impl_ != nullptr; }
  Backend backend() const;
  int device() const;
  const std::string& name() const;
  ClockKind clock() const;

  // Host function ordered with the stream's other work (CUDA: cudaLaunchHostFunc;
  // the function must not call CUDA). On the host backend with the virtual clock,
  // `modelled_s` is added to the stream's time after the function ran.
  void host_task(std::function<void()> fn, double modelled_s = 0.0);
  // The host backend's twin of a device operation (a kernel, a library call, a
  // copy): an ordered task like host_task, counted as `as`. Host streams only.
  void device_task(std::function<void()> fn, Issue as);
  // Host backend only: bookkeeping that has no counterpart on a GPU (the host's own
  // counters), an ordered task that the counts leave out. It is no kernel: in a
  // cancellable unit it runs unless the whole unit is skipped, even after a cut.
  void host_bookkeeping(std::function<void()> fn);
  // Counts a device operation enqueued on a CUDA stream (kernels, cuBLAS, cuDNN, copies).
  void note(Issue as);
  // Everything enqueued on this stream so far, by kind.
  IssueCounts counts() const;
  // Holds the stream for `seconds` of its clock: modelled on the virtual clock, a
  // real sleep on the host real clock. CUDA streams use kernels::delay instead.
  void hold(double seconds);
  void record(Event& e);
  void wait(const Event& e);
  void synchronize();
  bool query();

  // Cancellable work. The host functions and holds enqueued between
  // begin_cancellable() and end_cancellable() are one unit: when the first of them
  // is about to run, `cancelled()` is asked once (on the stream's thread); if it says
  // yes, the whole unit is skipped and costs only that check, and *skipped (when
  // given) is set to 1 before anything later in the stream runs. Records and waits
  // inside the unit still happen. A unit already running is never cut short.
  // Host backend only; on CUDA the work runs (skipping it needs the mini-batch's
  // kernels to read a mapped flag, or a conditional graph node).
  void begin_cancellable(std::function<bool()> cancelled, int* skipped = nullptr);
  void end_cancellable();
  // Kernel-granular cancel (host backend; call right after begin_cancellable). A
  // unit that began still looks at `closed()` (which must be a pure, cheap check)
  // before each of its later tasks: from the first that sees it closed, the unit's
  // remaining tasks are skipped (records and waits still happen). A throttle in the
  // unit (kernels::throttle) then holds only to the end of the kernel the slowed
  // device would be running when the close was seen: with slowdown s and stamp t0, a
  // task that ended at T ends at t0 + s (T - t0) there (see host_stream.h). Its
  // additive delay, once reached, is never cut short. CUDA: not available (cuDNN's
  // and cuBLAS's kernels cannot read a cancel flag); the unit stays whole.
  // *cut (when given) is set to 1 when the unit is cut, before its last task ends.
  void cancel_at_kernels(std::function<bool()> closed, int* cut = nullptr);
  // Wakes a throttle of a kernel-granular unit to look at its `closed()` now (the
  // window's close calls it). Host only; a no-op elsewhere.
  void poke();
  // Host backend: the units cut at a kernel boundary so far, and the tasks they skipped.
  int64_t kernel_cuts() const;
  int64_t kernels_cut() const;
  // Wake-ups held (StreamBatch below): what is enqueued from begin_batch() to the
  // matching end_batch() wakes an idle host stream's thread once, at the end, not
  // once per task. The order and the work are unchanged. CUDA: nothing to do (a
  // launch wakes no thread). The enqueuing thread must not wait on this stream's
  // own work in between, except through synchronize(), which releases the hold.
  void begin_batch();
  void end_batch();
  // Host backend: how many times the stream's thread has woken from waiting on an
  // empty queue (what begin_batch saves); 0 on CUDA.
  int64_t wakeups() const;
  // The end of a run: holds running or queued now return at once (an injected
  // stall never holds the run's end). Returns how many have been cut short so far
  // (call again after synchronize() for the final count). Host only.
  int abandon_holds();

  // Host backend: the stream's current time on its clock, as of the last task it
  // finished (virtual: modelled seconds since creation; real: steady_now_s()).
  double host_time() const;
  // CUDA backend: the cudaStream_t, as void*.
  void* native() const;
  StreamImpl* impl() const { return impl_.get(); }

 private:
  explicit Stream(std::unique_ptr<StreamImpl> impl);
  std::unique_ptr<StreamImpl> impl_;
};

// One issuing thread's enqueues to a stream as one batch (begin_batch): on the host
// backend the idle stream's thread wakes once, when the scope ends.
class StreamBatch {
 public:
  explicit StreamBatch(Stream& s) : s_(s) { s_.begin_batch(); }
  ~StreamBatch() { s_.end_batch(); }
  StreamBatch(const StreamBatch&) = delete;
  StreamBatch& operator=(const StreamBatch&) = delete;

 private:
  Stream& s_;
};

// Backend interfaces behind the handles (implemented in runtime/host and runtime/cuda).
class EventImpl {
 public:
  virtual ~EventImpl() = default;
  virtual Backend backend() const = 0;
  virtual bool timed() const = 0;
  virtual bool query() const = 0;
  // Blocks the calling thread without spinning a core (CUDA: blocking sync).
  virtual void synchronize() const = 0;
  virtual double host_timestamp() const = 0;
};

class StreamImpl {
 public:
  virtual ~StreamImpl() = default;
  virtual Backend backend() const = 0;
  virtual int device() const = 0;
  virtual const std::string& name() const = 0;
  virtual ClockKind clock() const = 0;
  virtual void host_task(std::function<void()> fn, double modelled_s) = 0;
  virtual void hold(double seconds) = 0;
  virtual void record(EventImpl& e) = 0;
  virtual void wait(const EventImpl& e) = 0;
  virtual void synchronize() = 0;
  virtual bool query() = 0;
  virtual double host_time() const = 0;
  virtual void* native() const = 0;
  virtual void begin_cancellable(std::function<bool()>, int*) {}
  virtual void end_cancellable() {}
  virtual void cancel_at_kernels(std::function<bool()>, int*) {}
  // Host: bookkeeping is no kernel: a kernel-granular unit never cuts it.
  virtual void host_bookkeeping(std::function<void()> fn) { host_task(std::move(fn), 0.0); }
  virtual void poke() {}
  // Host: enqueues kernels::throttle as a task of the current kernel-granular unit
  // and returns true; false (the caller enqueues the plain throttle) otherwise.
  virtual bool granular_throttle(const uint64_t*, double, double) { return false; }
  virtual int64_t kernel_cuts() const { return 0; }
  virtual int64_t kernels_cut() const { return 0; }
  virtual void begin_batch() {}
  virtual void end_batch() {}
  virtual int64_t wakeups() const { return 0; }
  virtual int abandon_holds() { return 0; }
  // Stream's counters (relaxed: read between steps, written by the issuing threads).
  std::atomic<int64_t> issued[6] = {};
};

}  // namespace nbsgd
