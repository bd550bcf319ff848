// The trainer's side of --trace: the driver's spans (StepWindow::spans, and on the
// real clock those reported after step() returned), each step's window, and on the
// real clock the exchange, into the TraceWriter; the file at the end of the run.
//
// The real clock sees a step's comm-stream work as one piece: per worker, from the
// moment its exchange could begin (its own and the workers it waits for have their
// last counted mini-batch done, and its previous exchange is over) to the worker's
// step-done event (host: the event's timestamp; CUDA: its elapsed time from the
// base event, the same event the step's time comes from). It is named
// "exchange+update" (ring) or "gossip exchange" (gossip).
#include <fmt/format.h>

#include <algorithm>

#include "runtime/device/file_io.h"
#include "runtime/train/trainer.h"

namespace nbsgd::engine {

void Engine::Impl::trace_open() {
  if (s->cfg.trace.empty()) return;
  std::vector<std::string> names;
  for (int i = 0; i < n(); ++i) names.push_back(fmt::format("worker {}: {}", i, s->devices.devices[i].name));
  trace = std::make_unique<TraceWriter>(names, s->cfg.exchange, s->virtual_clock ? "virtual" : "real",
                                        parse_trace_steps(s->cfg.trace_steps));
  if (s->virtual_clock) {
    trace->note("times", "the virtual clock's timeline: exact modelled times");
  } else if (s->devices.backend == Backend::Host) {
    trace->note("times", "host workers, real clock: a mini-batch from the moment its stream reached it to its "
                         "completion notice; the exchange from its inputs' completion to the step-done event");
  } else {
    trace->note("times", "GPUs, real clock: a mini-batch ends at its completion notice (a host function after it on "
                         "the stream) and begins at the worker's previous end or its window's open; an injected "
                         "throttle is inside the mini-batch's span and a stall is its drawn length; the exchange ends "
                         "at the step-done event's time");
  }
  trace_comm_end.assign(static_cast<size_t>(n()), 0.0);
}

void Engine::Impl::trace_spans(std::vector<TraceSpan>& spans, int64_t window_step) {
  for (TraceSpan& sp : spans) {
    if (sp.step < 0) sp.step = window_step;
    if (sp.step < 0) continue;
    if (!s->virtual_clock && sp.kind == TraceSpan::Kind::MiniBatch && sp.fate == TraceSpan::Fate::Counted) {
      auto& r = trace_ready[sp.step];
      if (r.empty()) r.assign(static_cast<size_t>(n()), -1.0);
      r[static_cast<size_t>(sp.worker)] = std::max(r[static_cast<size_t>(sp.worker)], sp.end);
    }
    trace->add(sp, !s->virtual_clock && sp.kind == TraceSpan::Kind::Exchange);
  }
  spans.clear();
}

double Engine::Impl::worker_event_time(int slot, int w) const {
  const Event& e = step_done[static_cast<size_t>(slot)][static_cast<size_t>(w)];
  return e.backend() == Backend::Host ? e.host_timestamp() - host_base
                                      : base_t[static_cast<size_t>(w)] + Event::elapsed_s(base_events[w], e);
}

// Called by record_of once the step's exchange has completed on every worker: every
// mini-batch of the step that ran has reported by then.
void Engine::Impl::trace_step(Pending& p, const StepRecord& rec) {
  std::vector<TraceSpan> spans = std::move(p.window.spans);
  driver->take_spans(spans);
  trace_spans(spans, p.step);
  const StepWindow& W = p.window;
  const size_t N = static_cast<size_t>(n());
  std::vector<double> open(N, rec.t - rec.window_s);
  if (trace->range().contains(p.step)) {
    if (W.close_t.size() == N && W.open_t.size() == N) {
      open = W.open_t;
      const bool global = std::all_of(W.close_t.begin(), W.close_t.end(), [&](double c) { return c == W.close_t[0]; }) &&
                          std::all_of(W.open_t.begin(), W.open_t.end(), [&](double o) { return o == W.open_t[0]; });
      if (global) {
        trace->window(p.step, W.open_t[0], W.close_t[0]);
      } else {
        for (size_t w = 0; w < N; ++w) trace->window(p.step, W.open_t[w], W.close_t[w], static_cast<int>(w));
      }
    } else {
      // Sync on the real clock: the window is the step, from the previous step's end.
      trace->window(p.step, rec.t - rec.window_s, rec.t);
    }
    if (!s->virtual_clock) {
      auto it = trace_ready.find(p.step);
      std::vector<double> ready(N);
      for (size_t w = 0; w < N; ++w) {
        const double counted = it != trace_ready.end() ? it->second[w] : -1.0;
        ready[w] = counted >= 0 ? counted : std::max(trace_comm_end[w], open[w]);
      }
      for (size_t w = 0; w < N; ++w) {
        const double end = worker_event_time(p.slot, static_cast<int>(w));
        double start = std::max(ready[w], trace_comm_end[w]);
        for (int j : exchange->waits_for(p.step, static_cast<int>(w))) start = std::max(start, ready[static_cast<size_t>(j)]);
        start = std::min(start, end);
        trace->add({TraceSpan::Kind::Exchange, TraceSpan::Fate::Counted, static_cast<int>(w), 0, start, end, p.step},
                   true);
        trace_comm_end[w] = end;
      }
    }
  }
  trace_ready.erase(trace_ready.begin(), trace_ready.upper_bound(p.step));
}

void Engine::Impl::trace_close(RunSummary& sum) {
  if (!trace) return;
  if (driver) {
    std::vector<TraceSpan> late;
    driver->take_spans(late);
    trace_spans(late, -1);
  }
  const std::string text = trace->json();
  write_file_atomically(s->cfg.trace, text, "trace");
  sum.trace_path = s->cfg.trace;
  sum.trace_events = static_cast<int64_t>(trace->events());
  sum.trace_bytes = static_cast<int64_t>(text.size());
  sum.trace_steps = fmt::format("{}:{}", trace->range().first, std::min(trace->range().last, step));
}

}  // namespace nbsgd::engine
