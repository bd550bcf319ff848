// The flags a CUDA event is created with, as a pure function so that the choice is
// tested on the host. The values are cudart's (checked against cuda_runtime_api.h
// by static_asserts in runtime/device/cuda/cuda_runtime.cpp).
//
// Host waits block instead of spinning: cudaEventBlockingSync on every event, and
// cudaDeviceScheduleBlockingSync on every device (set in discovery, before the
// primary context exists). The device flag is the one that matters: it covers
// cudaStreamSynchronize and blocking copies as well, which a per-event flag does
// not. The event flag keeps event waits blocking even when some other code made the
// context first, so the device flag could not be applied. The cost is wake-up
// latency (an interrupt, some microseconds) on waits the training path does not
// make per mini-batch; the gain is a free core per waiting thread on boxes where
// several workers each have one.
#pragma once

namespace nbsgd {

inline constexpr unsigned kCudaEventBlockingSync = 0x01;   // cudaEventBlockingSync
inline constexpr unsigned kCudaEventDisableTiming = 0x02;  // cudaEventDisableTiming
inline constexpr unsigned kCudaDeviceScheduleBlockingSync = 0x04;  // cudaDeviceScheduleBlockingSync

constexpr unsigned cuda_event_flags(bool timed) {
  return kCudaEventBlockingSync | (timed ? 0u : kCudaEventDisableTiming);
}

}  // namespace nbsgd
