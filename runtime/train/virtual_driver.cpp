// VirtualDriver: the window on the virtual clock, for every exchange. The Timeline
// (timeline.h) decides what counted on the duration model's time, modelling what the
// real driver issues; then the math runs for exactly those mini-batches, in each
// worker's hand-out order. Cancelled ones went back to the queue when the timeline
// noticed them, as the real driver's completion notices give them back.
#include <nlohmann/json.hpp>

#include <atomic>
#include <map>

#include "nets/optim/commit.h"
#include "runtime/device/check.h"
#include "runtime/train/timeline.h"
#include "runtime/train/virtual_driver.h"

namespace nbsgd::engine {

int64_t StepWindow::total_samples() const {
  int64_t n = 0;
  for (int s : samples) n += s;
  return n;
}

namespace {

// The forward/backward and commit of one counted mini-batch of worker w; its
// slot's done event is then the accumulator's last writer.
// With a stop flag to watch, the mini-batch is one cancellable unit per stream: a
// signal skips what has not begun (VirtualDriver::abandon_step undoes the rest).
const Event* run_counted(Setup& s, int w, int64_t step, const std::vector<int32_t>& indices, int& used,
                         const std::atomic<bool>* stop) {
  Worker& wk = *s.workers[static_cast<size_t>(w)];
  const int k = used++ % wk.slots();
  if (stop) {
    wk.ctx().copy().begin_cancellable([stop] { return stop->load(); });
    wk.ctx().compute().begin_cancellable([stop] { return stop->load(); });
  }
  wk.stage_and_compute(k, s.data.train, indices);
  optim::commit(wk.ctx().compute(), wk.slot(k).scratch.as<float>(), wk.accumulator(step), s.P);
  if (stop) {
    wk.ctx().compute().end_cancellable();
    wk.ctx().copy().end_cancellable();
  }
  wk.ctx().compute().record(wk.slot(k).done);
  return &wk.slot(k).done;
}

// A worker that counts nothing: its accumulator(step) is ready once the update that
// last read it is done.
std::vector<const Event*> update_events(Setup& s, int64_t step) {
  std::vector<const Event*> r;
  for (auto& w : s.workers) r.push_back(&w->accumulator_free(step));
  return r;
}

// One driver for every exchange: the timeline decides, then the math runs step by
// step for exactly what counted.
class VirtualDriver final : public WindowDriver {
 public:
  VirtualDriver(Setup& s, Exchange& x) : s_(s), x_(x) { make_timeline(); }

  void step(int64_t step, StepWindow& out) override {
    if (compute_ && stop_) {
      // What abandon_step puts back (host copies: the virtual clock runs on host
      // workers, and the previous step has been synchronised).
      undo_.queue = s_.queue->save_state();
      undo_.skipped = skipped_;
      undo_.bn.clear();
      for (auto& w : s_.workers) undo_.bn.push_back(w->download_bn());
    }
    TimelineStep o = timeline_->finish_step(step);
    const int N = s_.n();
    out.ready = update_events(s_, step);
    out.finished.assign(N, 0);
    out.samples.assign(N, 0);
    out.delay_s.assign(N, 0.0);
    out.open_t.assign(N, 0.0);
    out.close_t.assign(N, 0.0);
    out.window_s = 0;
    out.epoch = -1;
    for (int i = 0; i < N; ++i) {
      const TimelineWorkerStep& r = o.workers[static_cast<size_t>(i)];
      int used = 0;
      for (const TimelineMiniBatch& mb : r.minibatches) {
        if (mb.fate == TimelineMiniBatch::Fate::Wasted) ++out.wasted;
        if (mb.fate != TimelineMiniBatch::Fate::Counted) continue;
        auto it = handed_.find(mb.handle);
        NBSGD_CHECK(it != handed_.end(), "virtual driver: counted mini-batch without its samples");
        out.epoch = out.epoch < 0 ? it->second.epoch : std::min(out.epoch, it->second.epoch);
        if (compute_ && s_.span.owns(i)) out.ready[i] = run_counted(s_, i, step, it->second.indices, used, stop_);
        s_.queue->commit(it->second);
        handed_.erase(it);
      }
      out.finished[i] = r.finished;
      out.samples[i] = r.samples;
      out.delay_s[i] = r.delay_s;
      out.open_t[i] = r.start;  // the window's clock (timeline.h)
      out.close_t[i] = r.close;
      out.window_s = std::max(out.window_s, r.close - r.start);
      if (trace_) add_spans(i, r, out.spans);
    }
    if (compute_) share_accumulators(s_, out.ready, step);  // across ranks (ranks.h); nothing in one process
    if (out.epoch < 0) out.epoch = s_.queue->current_epoch();
    skipped_ += o.skipped();
    cut_ += o.cut();
    out.t_end = o.end();
  }
  double now() const override { return timeline_->now(); }
  int64_t skipped() const override { return skipped_; }
  int64_t cut() const override { return cut_; }

  bool abandon_step(int64_t step) override {
    if (!compute_ || !stop_) return false;
    for (auto& w : s_.workers) {
      w->ctx().copy().synchronize();
      w->ctx().compute().synchronize();
    }
    for (size_t i = 0; i < s_.workers.size(); ++i) {
      Worker& w = *s_.workers[i];
      optim::zero(w.ctx().compute(), w.accumulator(step), s_.P);
      w.ctx().compute().synchronize();
      w.upload_bn(undo_.bn[i]);
    }
    *s_.queue = data::EpochQueue::restore(undo_.queue);
    skipped_ = undo_.skipped;
    return true;
  }

  // The timeline's state between two steps holds work of later steps already handed
  // out (and, for gossip, workers well into later steps), but it never depends on
  // the models' values: a resumed run replays the schedule from step 0 without the
  // math, and must arrive at the checkpoint's epoch queue exactly.
  std::string save_state() const override {
    return nlohmann::json{{"replay", true}, {"now", timeline_->now()}}.dump();
  }
  void restore_state(const std::string& state, int64_t step) override {
    auto st = nlohmann::json::parse(state, nullptr, false);
    if (st.is_discarded() || !st.is_object() || !st.contains("replay"))
      throw InputError("its timeline state is missing: it was written by a real-clock run or an older nbsgd; "
                       "resume it with --clock real, or start a new run");
    const std::string expect = s_.queue->save_state();
    *s_.queue = data::EpochQueue(s_.data.train.n, s_.cfg.seed, s_.cfg.shuffle, -1);
    handed_.clear();
    next_handle_ = 0;
    skipped_ = 0;
    cut_ = 0;
    make_timeline();
    compute_ = false;
    StepWindow ignored;
    for (int64_t k = 0; k < step; ++k) this->step(k, ignored);
    compute_ = true;
    // (A restored queue holds the outstanding batches as given back: compare alike.)
    if (data::EpochQueue::restore(s_.queue->save_state()).save_state() != expect)
      throw InputError("nbsgd.queue: replaying the schedule to step " + std::to_string(step) +
                       " does not reach the saved epoch queue (another profile, window or data?)");
  }

 private:
  // What a step changes before its exchange, kept at its start for abandon_step.
  struct Undo {
    std::string queue;
    int64_t skipped = 0;
    std::vector<std::vector<float>> bn;
  } undo_;

  static void add_spans(int w, const TimelineWorkerStep& r, std::vector<TraceSpan>& spans) {
    using K = TraceSpan::Kind;
    auto span = [&](K kind, double a, double b, int size = 0, TraceSpan::Fate f = TraceSpan::Fate::Counted) {
      TraceSpan t;
      t.kind = kind;
      t.fate = f;
      t.worker = w;
      t.size = size;
      t.start = a;
      t.end = b;
      spans.push_back(t);
    };
    if (r.stall_s > 0 && r.stall_begin >= 0) span(K::Stall, r.stall_begin, add_ns(r.stall_begin, r.stall_s));
    for (const TimelineMiniBatch& mb : r.minibatches) {
      using F = TimelineMiniBatch::Fate;
      const TraceSpan::Fate f = mb.fate == F::Counted  ? TraceSpan::Fate::Counted
                                : mb.fate == F::Wasted ? TraceSpan::Fate::Wasted
                                                       : TraceSpan::Fate::Skipped;
      if (mb.begin < 0) continue;  // skipped: it never ran
      const double c_end = add_ns(mb.begin, mb.compute_s);
      span(K::MiniBatch, mb.begin, c_end, mb.size, f);
      if (mb.injected_s > 0) span(K::Throttle, c_end, mb.end, mb.size, f);
    }
    span(K::Exchange, r.exchange_begin, r.exchange_end);
    span(K::Update, r.update_begin, r.update_end);
  }

  void make_timeline() {
    TimelineConfig tc;
    tc.controller = s_.ctl;
    tc.neighbors_scope = s_.cfg.window_scope == "neighbors";
    tc.inflight = s_.cfg.inflight;
    tc.model = s_.cfg.model;
    tc.flops_per_sample = s_.flops;
    tc.params = s_.P;
    tc.mixes_models = !x_.replicated();
    tc.exchange_s = [this](int64_t step, int w) { return x_.modelled_s(step, w); };
    tc.waits_for = [this](int64_t step, int w) -> const std::vector<int>& { return x_.waits_for(step, w); };
    auto take = [this](int, int size, int& actual) -> int64_t {
      auto mb = s_.queue->take(size);
      actual = mb ? static_cast<int>(mb->indices.size()) : 0;
      if (!mb) return -1;
      handed_.emplace(next_handle_, std::move(*mb));
      return next_handle_++;
    };
    auto give_back = [this](int64_t h) {
      auto it = handed_.find(h);
      NBSGD_CHECK(it != handed_.end(), "virtual driver: unknown mini-batch handle");
      s_.queue->give_back(std::move(it->second));
      handed_.erase(it);
    };
    timeline_ = std::make_unique<Timeline>(tc, s_.profile, take, give_back);
  }

  Setup& s_;
  Exchange& x_;
  std::unique_ptr<Timeline> timeline_;
  std::map<int64_t, data::MiniBatch> handed_;
  int64_t next_handle_ = 0;
  int64_t skipped_ = 0;
  int64_t cut_ = 0;
  bool compute_ = true;
};

}  // namespace

std::unique_ptr<WindowDriver> make_virtual_driver(Setup& s, Exchange& x) {
  return std::make_unique<VirtualDriver>(s, x);
}

}  // namespace nbsgd::engine
