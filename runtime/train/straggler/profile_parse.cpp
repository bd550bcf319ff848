// TOML -> Profile. Every rejection is one InputError line "file:line: key: problem",
// with the line of the offending value as toml++ recorded it.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <utility>

#include <toml++/toml.h>

#include "runtime/device/check.h"
#include "runtime/train/limits.h"
#include "runtime/train/straggler/profile.h"

namespace nbsgd::straggler {

namespace {

int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

std::string fmt_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string join(std::initializer_list<const char*> names) {
  std::string s;
  for (const char* n : names) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

class Parser {
 public:
  explicit Parser(std::string source) : source_(std::move(source)) {}

  Profile parse(const toml::table& root) {
    Profile p;
    p.source = source_;
    for (auto&& [k, v] : root) {
      const std::string key(k.str());
      if (key == "seed") {
        const auto* i = v.as_integer();
        if (!i) fail(v, key, "must be an integer");
        if (i->get() < 0) fail(v, key, "must be >= 0 (got " + std::to_string(i->get()) + ")");
        p.seed = static_cast<uint64_t>(i->get());
      } else if (key == "name") {
        p.name = string_value(v, key);
      } else if (key == "description") {
        p.description = string_value(v, key);
      } else if (key == "device") {
        const auto* t = v.as_table();
        if (!t) fail(v, key, "must be a table of device sections ([device.default], [device.0], ...)");
        for (auto&& [dk, dv] : *t) p.sections.push_back(parse_section(std::string(dk.str()), dv, dk));
      } else {
        fail(v, key, "unknown key (expected one of: " + join({"seed", "name", "description", "device"}) + ")");
      }
    }
    // Sections in file order: "later in the file wins" among matching patterns.
    std::stable_sort(p.sections.begin(), p.sections.end(),
                     [](const DeviceSection& a, const DeviceSection& b) { return a.line < b.line; });
    return p;
  }

 private:
  [[noreturn]] void fail_at(int line, const std::string& key, const std::string& msg) const {
    std::string loc = source_;
    if (line > 0) loc += ":" + std::to_string(line);
    throw InputError(loc + ": " + key + ": " + msg);
  }
  [[noreturn]] void fail(const toml::node& node, const std::string& key, const std::string& msg) const {
    fail_at(line_of(node), key, msg);
  }

  std::string string_value(const toml::node& v, const std::string& key) const {
    const auto* s = v.as_string();
    if (!s) fail(v, key, "must be a string");
    return s->get();
  }

  // Integers are accepted where a number is expected ("slowdown = 4").
  double number(const toml::node& v, const std::string& key) const {
    const auto d = v.value<double>();
    if (!d || v.is_boolean()) fail(v, key, "must be a number");
    if (!std::isfinite(*d)) fail(v, key, "must be finite (got " + fmt_num(*d) + ")");
    return *d;
  }
  double non_negative(const toml::node& v, const std::string& key) const {
    const double d = number(v, key);
    if (d < 0) fail(v, key, "must be >= 0 (got " + fmt_num(d) + ")");
    return d;
  }
  double positive(const toml::node& v, const std::string& key) const {
    const double d = number(v, key);
    if (!(d > 0)) fail(v, key, "must be > 0 (got " + fmt_num(d) + ")");
    return d;
  }

  static std::string quote_key(const std::string& k) {
    const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
    return bare ? k : "\"" + k + "\"";
  }

  DeviceSection parse_section(const std::string& sel, const toml::node& node, const toml::key& key_node) {
    DeviceSection s;
    s.key = "device." + quote_key(sel);
    s.line = line_of(node) > 0 ? line_of(node) : static_cast<int>(key_node.source().begin.line);
    if (sel == "default") {
      s.selector = DeviceSection::Default;
    } else if (!sel.empty() && std::all_of(sel.begin(), sel.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      s.selector = DeviceSection::Index;
      // Indices past int range are reported at resolve time like any other
      // out-of-range index; saturate rather than overflow.
      s.index = sel.size() > 9 ? int64_t{1} << 40 : std::stoll(sel);
    } else {
      s.selector = DeviceSection::NamePattern;
      s.pattern = sel;
    }
    const auto* t = node.as_table();
    if (!t) fail_at(s.line, s.key, "must be a table");
    for (auto&& [k, v] : *t) {
      const std::string key(k.str());
      const std::string path = s.key + "." + key;
      if (key == "sm_fraction") {
        const double f = number(v, path);
        if (!(f > 0 && f <= 1)) fail(v, path, "must be in (0, 1] (got " + fmt_num(f) + ")");
        s.sm_fraction = f;
      } else if (key == "schedule") {
        parse_schedule(s, v, path);
      } else if (!parse_setting(s.settings, key, v, path)) {
        fail(v, path, "unknown key (expected one of: " +
                          join({"slowdown", "delay", "stall", "sm_fraction", "schedule"}) + ")");
      }
    }
    return s;
  }

  // Returns false if `key` is not one of the overridable settings.
  bool parse_setting(Settings& st, const std::string& key, const toml::node& v, const std::string& path) {
    if (key == "slowdown") {
      const double s = number(v, path);
      if (s < 1) fail(v, path, "must be >= 1 (got " + fmt_num(s) + "; 1 = full speed, 4 = four times slower)");
      if (s > engine::kMaxSlowdown)
        fail(v, path, "must be <= " + fmt_num(engine::kMaxSlowdown) + " (got " + fmt_num(s) + ")");
      st.slowdown = s;
    } else if (key == "delay") {
      st.delay = random_delay(v, path);
    } else if (key == "stall") {
      st.stall = random_delay(v, path);
    } else {
      return false;
    }
    return true;
  }

  void parse_schedule(DeviceSection& s, const toml::node& v, const std::string& path) {
    const auto* arr = v.as_array();
    if (!arr) fail(v, path, "must be an array of tables ([[" + path + "]])");
    for (const toml::node& e : *arr) {
      const auto* t = e.as_table();
      if (!t) fail(e.source().begin.line > 0 ? e : v, path, "entries must be tables");
      ScheduleEntry entry;
      entry.line = line_of(e) > 0 ? line_of(e) : line_of(v);
      bool have_steps = false;
      for (auto&& [k, ev] : *t) {
        const std::string key(k.str());
        const std::string epath = path + "." + key;
        if (key == "steps") {
          parse_steps(entry, ev, epath);
          have_steps = true;
        } else if (!parse_setting(entry.settings, key, ev, epath)) {
          fail(ev, epath, "unknown key (expected one of: " + join({"steps", "slowdown", "delay", "stall"}) + ")");
        }
      }
      if (!have_steps) fail_at(entry.line, path + ".steps", "missing (steps = [from, to], half-open)");
      s.schedule.push_back(std::move(entry));
    }
    std::stable_sort(s.schedule.begin(), s.schedule.end(),
                     [](const ScheduleEntry& a, const ScheduleEntry& b) { return a.from_step < b.from_step; });
    for (size_t i = 1; i < s.schedule.size(); ++i) {
      const auto& a = s.schedule[i - 1];
      const auto& b = s.schedule[i];
      if (b.from_step < a.to_step) {
        const auto& later = a.line > b.line ? a : b;
        const auto& earlier = a.line > b.line ? b : a;
        fail_at(later.line, path + ".steps",
                "range [" + std::to_string(later.from_step) + ", " + std::to_string(later.to_step) +
                    ") overlaps [" + std::to_string(earlier.from_step) + ", " +
                    std::to_string(earlier.to_step) + ") at line " + std::to_string(earlier.line));
      }
    }
  }

  void parse_steps(ScheduleEntry& entry, const toml::node& v, const std::string& path) {
    const auto* arr = v.as_array();
    if (!arr || arr->size() != 2 || !(*arr)[0].is_integer() || !(*arr)[1].is_integer())
      fail(v, path, "must be two integers [from, to] (half-open: steps from..to-1)");
    entry.from_step = (*arr)[0].as_integer()->get();
    entry.to_step = (*arr)[1].as_integer()->get();
    if (entry.from_step < 0) fail(v, path, "from must be >= 0 (got " + std::to_string(entry.from_step) + ")");
    if (entry.to_step <= entry.from_step)
      fail(v, path, "must have from < to (got [" + std::to_string(entry.from_step) + ", " +
                        std::to_string(entry.to_step) + "])");
  }

  // delay / stall = { probability = p, distribution = "...", <parameters> }.
  // probability defaults to 1; with probability = 0 the distribution may be left
  // out, which is how a schedule entry switches a delay off.
  RandomDelay random_delay(const toml::node& v, const std::string& path) {
    const auto* t = v.as_table();
    if (!t) fail(v, path, "must be a table, e.g. { probability = 0.1, distribution = \"exponential\", mean_ms = 5 }");
    RandomDelay rd;
    rd.probability = 1;
    if (const toml::node* p = t->get("probability")) {
      rd.probability = number(*p, path + ".probability");
      if (rd.probability < 0 || rd.probability > 1)
        fail(*p, path + ".probability", "must be in [0, 1] (got " + fmt_num(rd.probability) + ")");
    }
    const toml::node* dn = t->get("distribution");
    if (!dn) {
      if (rd.probability == 0) {
        for (auto&& [k, pv] : *t)
          if (k.str() != "probability") fail(pv, path + "." + std::string(k.str()), "unknown key (no distribution given)");
        return rd;
      }
      fail(v, path + ".distribution", "missing (one of: constant, uniform, exponential, shifted-exponential, pareto, lognormal)");
    }
    const std::string name = string_value(*dn, path + ".distribution");
    if (!kind_from_name(name, rd.dist.kind))
      fail(*dn, path + ".distribution",
           "unknown distribution '" + name +
               "' (one of: constant, uniform, exponential, shifted-exponential, pareto, lognormal)");

    Distribution& d = rd.dist;
    // The parameters each distribution takes, and how each is checked.
    struct Param {
      const char* key;
      double* dst;
      int check;  // 0: >= 0, 1: > 0, 2: any finite
      double max = engine::kMaxDurationMs;  // the clock's longest duration, for the _ms keys
    };
    // ln(X / 1 ms) ~ N(mu, sigma): the median exp(mu) ms must be a duration the clock
    // can hold, and sigma beyond 10 puts most of the mass at the cap.
    const double max_mu = std::log(engine::kMaxDurationMs);
    std::vector<Param> params;
    switch (d.kind) {
      case Distribution::Constant: params = {{"value_ms", &d.value_ms, 0}}; break;
      case Distribution::Uniform: params = {{"min_ms", &d.min_ms, 0}, {"max_ms", &d.max_ms, 0}}; break;
      case Distribution::Exponential: params = {{"mean_ms", &d.exp_mean_ms, 0}}; break;
      case Distribution::ShiftedExponential:
        params = {{"shift_ms", &d.shift_ms, 0}, {"mean_ms", &d.exp_mean_ms, 0}};
        break;
      case Distribution::Pareto: params = {{"scale_ms", &d.scale_ms, 1}, {"alpha", &d.alpha, 1, 1e6}}; break;
      case Distribution::Lognormal: params = {{"mu", &d.mu, 2, max_mu}, {"sigma", &d.sigma, 0, 10}}; break;
    }
    std::string expected;
    for (const auto& p : params) expected += (expected.empty() ? "" : ", ") + std::string(p.key);
    for (auto&& [k, pv] : *t) {
      const std::string key(k.str());
      if (key == "probability" || key == "distribution") continue;
      auto it = std::find_if(params.begin(), params.end(), [&](const Param& p) { return key == p.key; });
      if (it == params.end())
        fail(pv, path + "." + key, "unknown key for distribution '" + name + "' (it takes: " + expected + ")");
      const std::string kpath = path + "." + key;
      *it->dst = it->check == 0 ? non_negative(pv, kpath) : it->check == 1 ? positive(pv, kpath) : number(pv, kpath);
      if (*it->dst > it->max)
        fail(pv, kpath, "must be <= " + fmt_num(it->max) + " (got " + fmt_num(*it->dst) + ")" +
                            (it->max == engine::kMaxDurationMs ? ": the virtual clock's longest duration is 1e6 s" : ""));
    }
    for (const auto& p : params)
      if (!t->contains(p.key))
        fail(v, path + "." + p.key, "missing: distribution '" + name + "' takes " + expected);
    if (d.kind == Distribution::Uniform && d.max_ms < d.min_ms)
      fail(*t->get("max_ms"), path + ".max_ms",
           "must be >= min_ms (" + fmt_num(d.min_ms) + ", got " + fmt_num(d.max_ms) + ")");
    return rd;
  }

  std::string source_;
};

}  // namespace

Profile parse_profile(const std::string& toml_text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    throw InputError(source + ":" + std::to_string(e.source().begin.line) + ": TOML syntax error: " +
                     std::string(e.description()));
  }
  return Parser(source).parse(root);
}

Profile load_profile_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw InputError(path + ": no such profile file");
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw InputError(path + ":" + std::to_string(e.source().begin.line) + ": TOML syntax error: " +
                     std::string(e.description()));
  }
  return Parser(path).parse(root);
}

}  // namespace nbsgd::straggler
