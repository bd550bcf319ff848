// VirtualDriver: the window on the virtual clock. A timeline decides what counted
// on the duration model's time; then the math runs for exactly those mini-batches,
// in each worker's hand-out order, and every cancelled one goes back to the queue.
//   - exchanges that wait for every worker (the ring): VirtualTimeline, whose steps
//     start and end together;
//   - gossip exchanges: GossipTimeline, one clock per worker, no global barrier.
#include <nlohmann/json.hpp>

#include <map>

#include "nets/optim/commit.h"
#include "runtime/device/check.h"
#include "runtime/train/gossip_timeline.h"
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
const Event* run_counted(Setup& s, int w, const std::vector<int32_t>& indices, int& used) {
  Worker& wk = *s.workers[static_cast<size_t>(w)];
  const int k = used++ % wk.slots();
  wk.stage_and_compute(k, s.data.train, indices);
  optim::commit(wk.ctx().compute(), wk.slot(k).scratch.as<float>(), wk.accumulator(), s.P);
  wk.ctx().compute().record(wk.slot(k).done);
  return &wk.slot(k).done;
}

std::vector<const Event*> update_events(Setup& s) {
  std::vector<const Event*> r;
  for (auto& w : s.workers) r.push_back(&w->update_done);
  return r;
}

class RingVirtualDriver final : public WindowDriver {
 public:
  RingVirtualDriver(Setup& s, Exchange& x) : s_(s) {
    TimelineConfig tc;
    tc.controller = s.ctl;
    tc.model = s.cfg.model;
    tc.flops_per_sample = s.flops;
    tc.params = s.P;
    tc.exchange_s = x.modelled_s(0, 0);
    timeline_ = std::make_unique<VirtualTimeline>(tc, s.profile);
  }

  void step(int64_t step, StepWindow& out) override {
    std::vector<data::MiniBatch> handed;
    auto take = [&](int, int size, int& actual) -> int64_t {
      auto mb = s_.queue->take(size);
      actual = mb ? static_cast<int>(mb->indices.size()) : 0;
      if (!mb) return -1;
      handed.push_back(std::move(*mb));
      return static_cast<int64_t>(handed.size()) - 1;
    };
    out.epoch = s_.queue->current_epoch();
    const StepOutcome o = timeline_->step(step, take);
    std::vector<int> used(s_.n(), 0);
    out.ready = update_events(s_);
    for (const SimMiniBatch& mb : o.minibatches)
      if (mb.counted) out.ready[mb.worker] = run_counted(s_, mb.worker, handed[mb.handle].indices, used[mb.worker]);
    // Cancelled mini-batches go back, the last handed out first, so the queue hands
    // them out again in their original order.
    for (auto it = o.minibatches.rbegin(); it != o.minibatches.rend(); ++it) {
      if (it->counted) continue;
      s_.queue->give_back(std::move(handed[it->handle]));
      ++out.wasted;
    }
    for (const SimMiniBatch& mb : o.minibatches)
      if (mb.counted) s_.queue->commit(handed[mb.handle]);
    out.t_end = o.end;
    out.window_s = o.window_s();
    out.finished = o.finished;
    out.samples = o.samples;
    out.delay_s = o.delay_s;
  }
  double now() const override { return timeline_->now(); }

  std::string save_state() const override {
    return nlohmann::json{{"now", timeline_->now()},
                          {"free_at", timeline_->free_at()},
                          {"rates", timeline_->controller().rates()}}
        .dump();
  }
  void restore_state(const std::string& state, int64_t) override {
    auto tl = nlohmann::json::parse(state, nullptr, false);
    if (tl.is_discarded() || !tl.is_object() || !tl.contains("now") || !tl.contains("free_at") ||
        !tl.contains("rates"))
      throw InputError("its timeline state is missing: it was written by a real-clock run; resume it with --clock real");
    try {
      const auto free_at = tl["free_at"].get<std::vector<double>>();
      const auto rates = tl["rates"].get<std::vector<double>>();
      if (static_cast<int>(free_at.size()) != s_.n() || static_cast<int>(rates.size()) != s_.n())
        throw InputError("nbsgd.timeline: state for " + std::to_string(free_at.size()) + " workers, this run has " +
                         std::to_string(s_.n()));
      timeline_->restore(tl["now"].get<double>(), free_at, rates);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(std::string("nbsgd.timeline: ") + e.what());
    }
  }

 private:
  Setup& s_;
  std::unique_ptr<VirtualTimeline> timeline_;
};

class GossipVirtualDriver final : public WindowDriver {
 public:
  GossipVirtualDriver(Setup& s, Exchange& x) : s_(s), x_(x) { make_timeline(); }

  void step(int64_t step, StepWindow& out) override {
    out.epoch = s_.queue->current_epoch();
    GossipStepOutcome o = timeline_->finish_step(step);
    neighbours_.erase(neighbours_.begin(), neighbours_.lower_bound(step + 1));  // never asked for again
    const int N = s_.n();
    out.ready = update_events(s_);
    out.finished.assign(N, 0);
    out.samples.assign(N, 0);
    out.delay_s.assign(N, 0.0);
    out.window_s = 0;
    for (int i = 0; i < N; ++i) {
      const GossipWorkerStep& r = o.workers[static_cast<size_t>(i)];
      int used = 0;
      for (const GossipMiniBatch& mb : r.minibatches) {
        if (!mb.counted) {
          ++out.wasted;
          continue;
        }
        auto it = handed_.find(mb.handle);
        NBSGD_CHECK(it != handed_.end(), "gossip: counted mini-batch without its samples");
        if (compute_) out.ready[i] = run_counted(s_, i, it->second.indices, used);
        s_.queue->commit(it->second);
        handed_.erase(it);
      }
      out.finished[i] = r.finished;
      out.samples[i] = r.samples;
      out.delay_s[i] = r.delay_s;
      out.window_s = std::max(out.window_s, r.close - r.start);
    }
    out.t_end = o.end();
    now_ = std::max(now_, out.t_end);
  }
  double now() const override { return now_; }

  // The timeline's state between two steps is large (other workers may be well
  // into later steps), but it never depends on the models' values: a resumed run
  // replays the schedule from step 0 without the math, and must arrive at the
  // checkpoint's epoch queue exactly.
  std::string save_state() const override { return nlohmann::json{{"replay", true}, {"now", now_}}.dump(); }
  void restore_state(const std::string& state, int64_t step) override {
    auto st = nlohmann::json::parse(state, nullptr, false);
    if (st.is_discarded() || !st.is_object() || !st.contains("replay"))
      throw InputError("its timeline state is missing: it was written by a real-clock run; resume it with --clock real");
    const std::string expect = s_.queue->save_state();
    *s_.queue = data::EpochQueue(s_.data.train.n, s_.cfg.seed, s_.cfg.shuffle, -1);
    handed_.clear();
    next_handle_ = 0;
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
  void make_timeline() {
    GossipTimelineConfig tc;
    tc.controller = s_.ctl;
    tc.neighbors_scope = s_.cfg.window_scope == "neighbors";
    tc.model = s_.cfg.model;
    tc.flops_per_sample = s_.flops;
    tc.params = s_.P;
    tc.exchange_s = [this](int64_t step, int w) { return x_.modelled_s(step, w); };
    auto take = [this](int, int size, int& actual) -> int64_t {
      auto mb = s_.queue->take(size);
      actual = mb ? static_cast<int>(mb->indices.size()) : 0;
      if (!mb) return -1;
      handed_.emplace(next_handle_, std::move(*mb));
      return next_handle_++;
    };
    auto give_back = [this](int64_t h) {
      auto it = handed_.find(h);
      NBSGD_CHECK(it != handed_.end(), "gossip: unknown mini-batch handle");
      s_.queue->give_back(std::move(it->second));
      handed_.erase(it);
    };
    auto neighbours = [this](int64_t step) -> const std::vector<std::vector<int>>& {
      auto it = neighbours_.find(step);
      if (it == neighbours_.end()) {
        std::vector<std::vector<int>> nb;
        for (int w = 0; w < s_.n(); ++w) nb.push_back(x_.waits_for(step, w));
        it = neighbours_.emplace(step, std::move(nb)).first;
      }
      return it->second;
    };
    timeline_ = std::make_unique<GossipTimeline>(tc, s_.profile, neighbours, take, give_back);
  }

  Setup& s_;
  Exchange& x_;
  std::unique_ptr<GossipTimeline> timeline_;
  std::map<int64_t, data::MiniBatch> handed_;
  std::map<int64_t, std::vector<std::vector<int>>> neighbours_;
  int64_t next_handle_ = 0;
  double now_ = 0;
  bool compute_ = true;
};

}  // namespace

std::unique_ptr<WindowDriver> make_virtual_driver(Setup& s, Exchange& x) {
  if (x.replicated()) return std::make_unique<RingVirtualDriver>(s, x);
  return std::make_unique<GossipVirtualDriver>(s, x);
}

}  // namespace nbsgd::engine
