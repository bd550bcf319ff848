// The virtual clock's duration model. Fixed and documented, never measured, so a
// seed gives the same run on any machine (`nbsgd predict` uses the same numbers):
//
//   mini-batch of s samples on worker i at step t:
//       compute  c = launch_overhead_s + s * flops_per_sample / (gflops * 1e9)
//       where launch_overhead_s defaults (when < 0) to the net's kernel launches,
//       3 per layer (forward, input gradient, weight gradient) + 2 (loss, commit),
//       at kernel_launch_s = 4 us each: small nets are launch-bound (LeNet: 152 us
//       per mini-batch, about what PyTorch eager takes at a batch of a few samples)
//       plus the injected straggling, before the commit (never cut short):
//                (slowdown_i(t) - 1) * c  +  random delay D ~ profile
//   times, with jitter_cv > 0, a factor J drawn per mini-batch: lognormal with mean 1
//       and coefficient of variation jitter_cv (the device's own run-to-run
//       variation; the throttle scales c x J, as the real throttle scales what it
//       measured). Drawn from the profile seed's per-(worker, step) stream, as the
//       profile's delays are, in hand-out order, so a seed still gives one run. 0 (the default): every mini-batch takes
//       exactly c, so equal workers tie exactly and a tie counts; no real device ties.
//   the close, seen by a worker's stream notice_latency_s after it (default 0): the
//       real engine decides each completion on the host while the stream runs on
//       (the next queued mini-batch starts before its own worker's completion is
//       decided), so the first queued mini-batch a stream reaches within that lag
//       of a non-sync window's close still runs (wasted), and its worker's update
//       waits for it. 0: a stream looks at the window after that instant's closes.
//       And what a completion releases (a place in flight) is handed out two such
//       wake-ups after its end (the watcher's, then the issuer's); the decision
//       itself takes the completion's own time, as the engine's does. With one
//       mini-batch in flight the stream waits for that hand-out every time.
//   plus, per mini-batch, host_cpu_s (default 0): the CPU the engine's own threads
//       spend issuing and deciding it (the issuer's enqueue, the watcher's wake-up
//       and decision). On the host backend with as many workers as cores those
//       threads take it from the cores the compute runs on; it is added to c before
//       the throttle, as the real throttle scales the compute it measured, preempted
//       or not. On a GPU the host's threads run beside the device: 0. It is measured
//       (bench_fidelity: the issuers' and watchers' thread CPU per mini-batch).
//   a handed-out mini-batch reaches its stream issue_latency_s after its hand-out
//       at the earliest (default 0): the issuer's enqueue, the staging on the copy
//       stream, and the compute stream's wake-up, in series. With two or more in
//       flight it overlaps the running mini-batch; with one in flight (or at a
//       window's open, if the update ends first) the stream waits for it. Measured
//       on the host backend (summary.json issue_lag_s; bench_fidelity).
//   all-reduce of `bytes` over N workers (ring: 2(N-1)/N of the bytes cross each link):
//       latency_s * 2(N-1) + 2(N-1)/N * bytes / (link_gbps * 1e9)       (0 if N = 1)
//   fused update of P parameters: launch_overhead_s + 16 P bytes / (mem_gbps * 1e9)
//
// Defaults are GPU-like: 10 TFLOP/s sustained, 4 us per kernel launch, a 20 GB/s
// link (PCIe Gen4 all-reduce bus bandwidth) with 5 us per hop, 1 TB/s memory.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "runtime/train/straggler/distribution.h"

namespace nbsgd::engine {

struct DurationModel {
  double gflops = 10000.0;
  double launch_overhead_s = -1.0;  // per mini-batch; < 0: from the net (for_net)
  double kernel_launch_s = 4e-6;
  double link_gbps = 20.0;
  double link_latency_s = 5e-6;
  double mem_gbps = 1000.0;
  double jitter_cv = 0.0;  // a mini-batch's compute: c x J, J lognormal, E J = 1, CV as given
  double notice_latency_s = 0.0;  // how long after a close a stream still starts its next mini-batch
  double host_cpu_s = 0.0;  // per mini-batch: the engine's own host CPU taken from the compute's cores
  double issue_latency_s = 0.0;  // a mini-batch's hand-out to the earliest its stream can reach it
  // --cancel-at kernel: a running mini-batch is cut at the first of this many equal
  // slices of its slowed compute that ends after the close is seen (1: it runs to
  // its end, the GPU case).
  int cancel_kernels = 1;

  // This model with launch_overhead_s resolved for a net of `layers` layers.
  DurationModel for_layers(int layers) const {
    DurationModel m = *this;
    if (m.launch_overhead_s < 0) m.launch_overhead_s = (3.0 * layers + 2.0) * kernel_launch_s;
    return m;
  }
  double compute_s(double flops_per_sample, int samples) const {
    return launch_overhead_s + samples * flops_per_sample / (gflops * 1e9);
  }
  double allreduce_s(size_t bytes, int workers) const {
    if (workers <= 1) return 0.0;
    const double hops = 2.0 * (workers - 1);
    return link_latency_s * hops + hops / workers * double(bytes) / (link_gbps * 1e9);
  }
  // Gossip: each worker sends its model to each active neighbour at once.
  double gossip_s(size_t bytes, int max_neighbours) const {
    if (max_neighbours <= 0) return 0.0;
    return link_latency_s + max_neighbours * double(bytes) / (link_gbps * 1e9);
  }
  // J for one mini-batch, from `rng` (two uniforms; none when jitter_cv is 0).
  double jitter(straggler::Rng& rng) const {
    if (jitter_cv <= 0) return 1.0;
    const double sigma = std::sqrt(std::log1p(jitter_cv * jitter_cv));
    return straggler::Distribution::lognormal(-0.5 * sigma * sigma, sigma).sample_ms(rng);
  }
  double update_s(size_t params) const { return launch_overhead_s + 16.0 * double(params) / (mem_gbps * 1e9); }
};

}  // namespace nbsgd::engine

namespace nbsgd::engine {
// The model with its launch overhead resolved for a named net (mlp, lenet, resnet20).
DurationModel duration_model_for_net(const DurationModel& base, const std::string& net);
}  // namespace nbsgd::engine
