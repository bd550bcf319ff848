// Checkpoints and exact resume, for every exchange.
//
// The model under PyTorch's names is what a checkpoint is read for outside nbsgd:
// replica 0 for the ring (all replicas are identical), the averaged model for
// gossip. An exact resume needs more, kept beside it: for gossip every replica's
// parameters, momentum and BN buffers ("replica.I.<name>"); the epoch queue, the
// clock and the driver's state (the virtual timeline, or the real clock's time);
// and the training-loss window, so that save-at-k + resume to k+m is the
// uninterrupted run bit for bit on the virtual clock.
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "nets/checkpoint.h"
#include "runtime/device/check.h"
#include "runtime/train/limits.h"
#include "runtime/train/trainer.h"

namespace nbsgd::engine {

namespace {

struct ModelTensors {
  std::vector<float> params, bn, mom;
};

void add_views(std::vector<TensorView>& v, const nets::Model& model, const ModelTensors& t, const std::string& prefix) {
  for (const auto& p : model.param_info()) v.push_back({prefix + p.name, p.shape, t.params.data() + p.offset});
  for (const auto& b : model.buffer_info()) v.push_back({prefix + b.name, b.shape, t.bn.data() + b.offset});
  for (const auto& p : model.param_info()) v.push_back({prefix + "momentum." + p.name, p.shape, t.mom.data() + p.offset});
}

std::string replica_prefix(int i) { return fmt::format("replica.{}.", i); }

// A diverged run must not overwrite the checkpoint of its last finite step.
void check_finite(const std::vector<float>& v, const char* what, int64_t step) {
  for (float x : v)
    if (!std::isfinite(x))
      throw InputError(fmt::format("step {}: the model's {} are not finite (the run diverged; try a smaller --lr); "
                                   "stopped, and the last checkpoint written, if any, was kept",
                                   step, what));
}

// What makes a checkpoint's run the run it continues: refused, naming the flag and
// both values, when this run's differs. (The learning rate, its schedule, the
// stopping condition, evaluation and checkpoint intervals, the straggler profile
// may change on a resume.)
void check_same_run(const LoadedTensors& t, const std::string& path, const Setup& s, int workers, bool virtual_clock) {
  const auto differs = [&](const std::string& flag, const std::string& theirs, const std::string& mine) {
    if (theirs != mine)
      throw InputError(fmt::format("--resume {}: {}: the checkpoint has {}, this run {} (a resume continues the same "
                                   "run; see nbsgd train --help, --resume)",
                                   path, flag, theirs, mine));
  };
  const std::string& cfg_text = meta_string(t, "nbsgd.config", path);
  const nlohmann::json theirs = nlohmann::json::parse(cfg_text, nullptr, false);
  if (theirs.is_discarded() || !theirs.is_object())
    throw InputError("checkpoint " + path + ": metadata 'nbsgd.config' is not a JSON object");
  const nlohmann::json mine = nlohmann::json::parse(config_json(s.cfg));
  const auto text = [](const nlohmann::json& j, const char* key) {
    if (!j.contains(key)) return std::string("(none)");
    return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
  };
  const auto same = [&](const char* key, const std::string& flag) { differs(flag, text(theirs, key), text(mine, key)); };
  same("exchange", "--exchange");
  // The clock the checkpoint's run had (older checkpoints: its driver's state says).
  std::string clock;
  if (auto it = t.metadata.find("nbsgd.clock"); it != t.metadata.end()) {
    clock = it->second;
  } else {
    clock = meta_string(t, "nbsgd.timeline", path).find("real_clock_s") != std::string::npos ? "real" : "virtual";
  }
  differs("--clock", clock, virtual_clock ? "virtual" : "real");
  // The one exception: a ring run on the real clock holds one model and no
  // per-worker state, so it continues on any number of workers (documented in
  // --help). The virtual clock's timeline is per worker; gossip has a model each.
  const bool any_workers = s.cfg.exchange == "ring" && !virtual_clock;
  if (!any_workers)
    differs("the number of workers (--host-workers, --devices)",
            std::to_string(meta_int(t, "nbsgd.workers", 1, kMaxWorkers, path)), std::to_string(workers));
  same("batch", "--batch");
  same("split", "--split");
  same("window", "--window");
  same("seed", "--seed");
  if (is_gossip_exchange(s.cfg.exchange)) {
    same("topology", "--topology");
    same("window_scope", "--window-scope");
    if (s.cfg.exchange == "matcha") same("budget", "--budget");
  }
}

}  // namespace

void Engine::Impl::save_checkpoint(const std::string& path) const {
  const nets::Model& model = s->workers[0]->model();
  std::vector<ModelTensors> reps;
  for (auto& w : s->workers) reps.push_back({w->download_params(), w->download_bn(), w->download_momentum()});
  ModelTensors shown = reps[0];
  if (!replicated()) {
    std::vector<std::vector<float>> x, m;
    for (const auto& r : reps) {
      x.push_back(r.params);
      m.push_back(r.mom);
    }
    shown.params = average(x);
    shown.mom = average(m);
  }
  for (const auto& r : reps) {
    check_finite(r.params, "weights", step);
    check_finite(r.mom, "momentum buffers", step);
  }
  std::vector<TensorView> views;
  add_views(views, model, shown, "");
  if (!replicated())
    for (int i = 0; i < n(); ++i) add_views(views, model, reps[static_cast<size_t>(i)], replica_prefix(i));
  std::map<std::string, std::string> meta{
      {"nbsgd.net", model.description()},
      {"nbsgd.exchange", s->cfg.exchange},
      {"nbsgd.workers", std::to_string(n())},
      {"nbsgd.step", std::to_string(step)},
      {"nbsgd.epoch", std::to_string(s->queue->current_epoch())},
      {"nbsgd.seed", std::to_string(s->cfg.seed)},
      {"nbsgd.queue", s->queue->save_state()},
      {"nbsgd.timeline", driver ? driver->save_state() : std::string()},
      {"nbsgd.clock_s", fmt::format("{:.17g}", now())},
      {"nbsgd.samples_total", std::to_string(samples_total)},
      {"nbsgd.losses", losses.save_state()},
      {"nbsgd.time_to_target", time_to_target ? fmt::format("{:.17g}", *time_to_target) : std::string()},
      {"nbsgd.config", config_json(s->cfg)},
      {"nbsgd.clock", s->virtual_clock ? "virtual" : "real"},
      {"format", "pt"},
  };
  if (!replicated()) meta["nbsgd.averaged_replicas"] = std::to_string(n());
  save_safetensors(path, views, meta);
}

void Engine::Impl::load_checkpoint(const std::string& path) {
  if (adpsgd())
    throw InputError("--resume " + path + ": --exchange adpsgd runs cannot be resumed (its iterations in flight at a "
                     "round's end are not checkpointed)");
  LoadedTensors t = load_safetensors(path);
  const nets::Model& model = s->workers[0]->model();
  auto meta = [&](const char* key) -> const std::string& { return meta_string(t, key, path); };
  meta("nbsgd.net");  // a file another tool wrote has none: say so first
  if (!t.data_checksum_verified)
    throw InputError("checkpoint " + path + ": no checksum of its tensors ('nbsgd.data_crc32'): it was not written "
                     "by nbsgd, or by an older nbsgd; --resume needs one of its own checkpoints");
  if (meta("nbsgd.net") != model.description())
    throw InputError("checkpoint " + path + " was made for another net: " + meta("nbsgd.net") + ", this run is " +
                     model.description());
  check_same_run(t, path, *s, n(), s->virtual_clock);

  ModelTensors mt{std::vector<float>(s->P), std::vector<float>(model.num_bn_buffers()), std::vector<float>(s->P)};
  std::vector<TensorView> views;
  add_views(views, model, mt, "");
  if (!replicated())
    for (int i = 0; i < n(); ++i) add_views(views, model, mt, replica_prefix(i));
  check_matches(t, views, path);
  auto fill = [&](const std::string& prefix, ModelTensors& dst) {
    auto copy = [&](const std::string& name, std::vector<float>& v, size_t offset) {
      const auto& src = t.tensors.at(prefix + name).second;
      std::copy(src.begin(), src.end(), v.begin() + static_cast<std::ptrdiff_t>(offset));
    };
    for (const auto& p : model.param_info()) {
      copy(p.name, dst.params, p.offset);
      copy("momentum." + p.name, dst.mom, p.offset);
    }
    for (const auto& b : model.buffer_info()) copy(b.name, dst.bn, b.offset);
  };
  for (int i = 0; i < n(); ++i) {
    fill(replicated() ? std::string() : replica_prefix(i), mt);
    Worker& w = *s->workers[static_cast<size_t>(i)];
    w.upload_params(mt.params);
    w.upload_momentum(mt.mom);
    w.upload_bn(mt.bn);
  }
  step = meta_int(t, "nbsgd.step", 0, int64_t{1} << 50, path);
  samples_total = meta_int(t, "nbsgd.samples_total", 0, int64_t{1} << 62, path);
  meta_double(t, "nbsgd.clock_s", 0, kMaxClockNs * 1e-9, path);
  if (s->cfg.steps > 0 && step >= s->cfg.steps)
    throw InputError(fmt::format("--resume {}: the checkpoint is at step {}, and --steps {} is already reached "
                                 "(give a larger --steps)", path, step, s->cfg.steps));
  try {
    *s->queue = data::EpochQueue::restore(meta("nbsgd.queue"));
  } catch (const std::exception& e) {
    throw InputError("checkpoint " + path + ": metadata 'nbsgd.queue': " + e.what());
  }
  try {
    if (auto it = t.metadata.find("nbsgd.losses"); it != t.metadata.end()) losses.restore_state(it->second);
    if (auto it = t.metadata.find("nbsgd.time_to_target"); it != t.metadata.end() && !it->second.empty())
      time_to_target = std::stod(it->second);
  } catch (const InputError& e) {
    throw InputError("checkpoint " + path + ": " + e.what());
  } catch (const std::exception& e) {
    throw InputError("checkpoint " + path + ": bad run state in its metadata (" + e.what() + ")");
  }
  if (s->queue->dataset_size() != s->data.train.n)
    throw InputError(fmt::format("checkpoint {}: made for a training set of {} samples, this one has {}", path,
                                 s->queue->dataset_size(), s->data.train.n));
  std::string state = meta("nbsgd.timeline");
  if (!s->virtual_clock) state = fmt::format("{{\"real_clock_s\": {}}}", meta("nbsgd.clock_s"));
  try {
    driver->restore_state(state, step);
  } catch (const std::exception& e) {
    throw InputError("checkpoint " + path + ": metadata 'nbsgd.timeline': " + e.what());
  }
}

}  // namespace nbsgd::engine
