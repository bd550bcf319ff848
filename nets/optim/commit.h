// Committing a finished mini-batch into the step's accumulator.
//
// Why scratch + commit. A mini-batch's backward pass is many kernels (one or more
// per layer). If they accumulated straight into the accumulator, a mini-batch cut
// off by the step window would leave some layers' gradients in it, and fp32
// addition cannot be undone bit for bit. So the backward writes the scratch buffer,
// and `commit` adds all P+2 entries (gradients, count, loss) in ONE kernel: the
// event the engine records right after it completes only when every entry is in,
// and before the kernel runs none is. The price is one extra pass over 2P floats
// per mini-batch (read scratch, read-modify-write accumulator), small next to the
// backward. A "fused" variant that accumulates in the backward's last kernel would
// need every layer's gradient to be produced by that one kernel, which no layer
// library (cuBLAS, cuDNN, oneDNN) offers; we do not provide one.
//
// A commit that is already enqueued when the window closes still runs; the engine
// must keep it away from an exchange in progress (order the exchange after it, or
// give each step its own accumulator).
#pragma once

#include <cstddef>

#include "runtime/device/stream.h"

namespace nbsgd::optim {

// accumulator[i] += scratch[i] for i in [0, P+2), one kernel on `s`.
void commit(Stream& s, const float* scratch, float* accumulator, size_t P);

// Zeroes the P+2 entries of an accumulator (or a scratch buffer).
void zero(Stream& s, float* accumulator, size_t P);

}  // namespace nbsgd::optim
