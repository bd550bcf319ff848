#include "runtime/device/stream.h"

#include <chrono>

#include "runtime/device/check.h"
#include "runtime/device/cuda/cuda_backend.h"
#include "runtime/device/host/host_stream.h"

namespace nbsgd {

double steady_now_s() {
  using namespace std::chrono;
  static const steady_clock::time_point t0 = steady_clock::now();
  return duration<double>(steady_clock::now() - t0).count();
}

// ---------------------------------------------------------------- Event
Event::Event() = default;
Event::Event(Backend backend, int device, Timing timing) {
  const bool timed = timing == Timing::On;
  if (backend == Backend::Host) {
    impl_ = std::make_unique<HostEventImpl>(timed);
  } else {
    impl_ = cuda_backend::make_event(device, timed);
  }
}
Event::Event(Event&&) noexcept = default;
Event& Event::operator=(Event&&) noexcept = default;
Event::~Event() = default;

Backend Event::backend() const { return impl_->backend(); }
bool Event::timed() const { return impl_->timed(); }
bool Event::query() const { return impl_->query(); }
void Event::synchronize() const { impl_->synchronize(); }
double Event::host_timestamp() const { return impl_->host_timestamp(); }

double Event::elapsed_s(const Event& start, const Event& end) {
  NBSGD_CHECK(start.valid() && end.valid(), "elapsed_s on an empty event");
  NBSGD_CHECK(start.backend() == end.backend(), "elapsed_s across backends");
  NBSGD_CHECK(start.timed() && end.timed(), "elapsed_s needs events made with Timing::On (the others record no time)");
  if (start.backend() == Backend::Host) return end.host_timestamp() - start.host_timestamp();
  return cuda_backend::event_elapsed_s(*start.impl(), *end.impl());
}

// ---------------------------------------------------------------- Stream
Stream::Stream() = default;
Stream::Stream(std::unique_ptr<StreamImpl> impl) : impl_(std::move(impl)) {}
Stream::Stream(Stream&&) noexcept = default;
Stream& Stream::operator=(Stream&&) noexcept = default;
Stream::~Stream() = default;

Stream Stream::host(const StreamOptions& opt) {
  return Stream(std::make_unique<HostStreamImpl>(opt.name, opt.clock));
}
Stream Stream::cuda(int ordinal, const StreamOptions& opt) {
  NBSGD_CHECK(opt.clock == ClockKind::Real,
              "the virtual clock exists only on the host backend (use --clock real on GPUs)");
  return Stream(cuda_backend::make_stream(ordinal, nullptr, true, opt.name));
}
Stream Stream::adopt_cuda(int ordinal, void* native, bool owned, const StreamOptions& opt) {
  return Stream(cuda_backend::make_stream(ordinal, native, owned, opt.name));
}

Backend Stream::backend() const { return impl_->backend(); }
int Stream::device() const { return impl_->device(); }
const std::string& Stream::name() const { return impl_->name(); }
ClockKind Stream::clock() const { return impl_->clock(); }
namespace {
enum Slot { kLaunch, kLibrary, kHostFunction, kWait, kRecord, kCopy };
int slot_of(Issue as) { return as == Issue::Launch ? kLaunch : as == Issue::Library ? kLibrary : kCopy; }
}  // namespace

void Stream::host_task(std::function<void()> fn, double modelled_s) {
  impl_->issued[kHostFunction].fetch_add(1, std::memory_order_relaxed);
  impl_->host_task(std::move(fn), modelled_s);
}
void Stream::device_task(std::function<void()> fn, Issue as) {
  NBSGD_CHECK(backend() == Backend::Host, "device_task: the host twin of a device operation, on a host stream");
  impl_->issued[slot_of(as)].fetch_add(1, std::memory_order_relaxed);
  impl_->host_task(std::move(fn), 0.0);
}
void Stream::host_bookkeeping(std::function<void()> fn) {
  NBSGD_CHECK(backend() == Backend::Host, "host_bookkeeping: host streams only");
  impl_->host_bookkeeping(std::move(fn));
}
void Stream::note(Issue as) { impl_->issued[slot_of(as)].fetch_add(1, std::memory_order_relaxed); }
IssueCounts Stream::counts() const {
  auto at = [this](int k) { return impl_->issued[k].load(std::memory_order_relaxed); };
  return {at(kLaunch), at(kLibrary), at(kHostFunction), at(kWait), at(kRecord), at(kCopy)};
}
void Stream::hold(double seconds) {
  NBSGD_CHECK(seconds >= 0, "negative hold");
  impl_->hold(seconds);
}
void Stream::begin_cancellable(std::function<bool()> cancelled, int* skipped) {
  impl_->begin_cancellable(std::move(cancelled), skipped);
}
void Stream::end_cancellable() { impl_->end_cancellable(); }
void Stream::cancel_at_kernels(std::function<bool()> closed, int* cut) {
  impl_->cancel_at_kernels(std::move(closed), cut);
}
void Stream::poke() { impl_->poke(); }
int64_t Stream::kernel_cuts() const { return impl_->kernel_cuts(); }
int64_t Stream::kernels_cut() const { return impl_->kernels_cut(); }
void Stream::begin_batch() { impl_->begin_batch(); }
void Stream::end_batch() { impl_->end_batch(); }
int64_t Stream::wakeups() const { return impl_->wakeups(); }
int Stream::abandon_holds() { return impl_->abandon_holds(); }
void Stream::record(Event& e) {
  NBSGD_CHECK(e.valid() && e.backend() == backend(), "record: event of another backend");
  impl_->issued[kRecord].fetch_add(1, std::memory_order_relaxed);
  impl_->record(*e.impl());
}
void Stream::wait(const Event& e) {
  NBSGD_CHECK(e.valid() && e.backend() == backend(), "wait: event of another backend");
  impl_->issued[kWait].fetch_add(1, std::memory_order_relaxed);
  impl_->wait(*e.impl());
}
void Stream::synchronize() { impl_->synchronize(); }
bool Stream::query() { return impl_->query(); }
double Stream::host_time() const { return impl_->host_time(); }
void* Stream::native() const { return impl_->native(); }

}  // namespace nbsgd
