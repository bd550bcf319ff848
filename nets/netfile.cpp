// TOML -> NetSpec. The description is a list of [[layer]] tables run in order; a
// `residual` layer holds a `body` list and an optional `shortcut` list (identity
// when absent) whose outputs are added. Shapes are inferred as the file is read, so
// every problem is reported at the line of the layer that has it.
#include "nets/netfile.h"

#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <set>
#include <sstream>

#include "runtime/device/check.h"

namespace nbsgd::nets {

namespace {

constexpr int64_t kMaxSize = int64_t(1) << 24;  // channels, features, kernel, ...: far past any real net

int line_of(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

std::string shape_str(const Shape& s) {
  return std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w);
}

std::string join(std::initializer_list<const char*> v) {
  std::string s;
  for (const char* x : v) s += (s.empty() ? "" : ", ") + std::string(x);
  return s;
}

const char* const kTypes = "conv2d, linear, batchnorm2d, relu, maxpool2d, global_avg_pool, flatten, residual";

class Parser {
 public:
  explicit Parser(std::string source) : source_(std::move(source)) {}

  NetSpec parse(const toml::table& root, const std::string& default_name) {
    net_.name = default_name;
    const toml::array* layers = nullptr;
    bool have_input = false, have_classes = false;
    for (auto&& [k, v] : root) {
      const std::string key(k.str());
      if (key == "name") {
        const auto* s = v.as_string();
        if (!s || s->get().empty()) fail(line_of(v), "name: must be a non-empty string");
        net_.name = s->get();
      } else if (key == "input") {
        const auto* a = v.as_array();
        if (!a || a->size() != 3) fail(line_of(v), "input: must be [channels, height, width]");
        int d[3];
        for (size_t i = 0; i < 3; ++i) d[i] = int_value(*a->get(i), "input", 1, 1 << 16, "input");
        net_.input = {d[0], d[1], d[2]};
        have_input = true;
      } else if (key == "classes") {
        net_.classes = int_value(v, "classes", 1, kMaxSize, "classes");
        have_classes = true;
      } else if (key == "layer") {
        layers = v.as_array();
        if (!layers || !layers->is_array_of_tables()) fail(line_of(v), "layer: must be a list of [[layer]] tables");
      } else {
        fail(line_of(v), "unknown key '" + key + "' (expected one of: " + join({"name", "input", "classes", "layer"}) +
                             ")");
      }
    }
    if (!have_input) fail(0, "missing field 'input' (= [channels, height, width] of one sample)");
    if (!have_classes) fail(0, "missing field 'classes'");
    if (!layers || layers->empty()) fail(0, "no [[layer]] tables");
    const int last = parse_list(*layers, NetBuilder::kInput, "");
    const Shape out = shapes_[last];
    if (net_.layers[last].kind == LayerKind::Flatten || !(out == Shape{net_.classes, 1, 1}))
      fail(lines_[last], "the last layer, " + whats_[last] + ", gives " + shape_str(out) + " but the net has classes = " +
                             std::to_string(net_.classes) + " (it must end in " + std::to_string(net_.classes) +
                             " logits, " + std::to_string(net_.classes) + "x1x1)");
    return net_;
  }

 private:
  [[noreturn]] void fail(int line, const std::string& msg) const {
    throw InputError(source_ + (line > 0 ? ":" + std::to_string(line) : "") + ": " + msg);
  }

  int int_value(const toml::node& v, const std::string& what, int64_t lo, int64_t hi, const std::string& key) const {
    const auto* i = v.as_integer();
    if (!i) fail(line_of(v), what + ": '" + key + "' must be an integer");
    const int64_t x = i->get();
    if (x < 0 && lo >= 0) fail(line_of(v), what + ": '" + key + "' is a negative size (" + std::to_string(x) + ")");
    if (x < lo) fail(line_of(v), what + ": '" + key + "' must be >= " + std::to_string(lo) + " (got " +
                                     std::to_string(x) + ")");
    if (x > hi) fail(line_of(v), what + ": '" + key + "' is too large (" + std::to_string(x) + ")");
    return static_cast<int>(x);
  }

  // One layer table's fields, with the unknown ones rejected up front (a typo must
  // not silently fall back to a default).
  class Fields {
   public:
    Fields(const Parser& p, const toml::table& t, std::string what, std::initializer_list<const char*> allowed)
        : p_(p), t_(t), what_(std::move(what)), line_(line_of(t)) {
      for (auto&& [k, v] : t) {
        const std::string key(k.str());
        if (key == "type") continue;
        if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }))
          p_.fail(line_of(v), what_ + ": unknown field '" + key + "'" +
                                  (allowed.size() ? " (fields: " + join(allowed) + ")" : " (it takes none)"));
      }
    }
    bool has(const char* key) const { return t_.contains(key); }
    int integer(const char* key, int64_t lo) const {
      const toml::node* v = t_.get(key);
      if (!v) p_.fail(line_, what_ + ": missing field '" + key + "'");
      return p_.int_value(*v, what_, lo, kMaxSize, key);
    }
    int integer(const char* key, int64_t lo, int def) const { return has(key) ? integer(key, lo) : def; }
    bool boolean(const char* key, bool def) const {
      const toml::node* v = t_.get(key);
      if (!v) return def;
      const auto* b = v->as_boolean();
      if (!b) p_.fail(line_of(*v), what_ + ": '" + key + "' must be true or false");
      return b->get();
    }
    int line_of_key(const char* key) const { return has(key) ? line_of(*t_.get(key)) : line_; }
    int line() const { return line_; }

   private:
    const Parser& p_;
    const toml::table& t_;
    std::string what_;
    int line_;
  };

  Shape shape(int x) const { return x < 0 ? net_.input : shapes_[x]; }
  // "the network input, 1x28x28" or "the output of relu (line 14), 6x28x28".
  std::string from(int x) const {
    if (x < 0) return "the network input, " + shape_str(net_.input);
    return "the output of " + whats_[x] + " (line " + std::to_string(lines_[x]) + "), " + shape_str(shapes_[x]);
  }

  int push(LayerSpec s, int line, std::string what) {
    std::vector<Shape> in;
    for (int i : s.inputs) in.push_back(shape(i));
    Shape out;
    try {
      out = infer_shape(s, in);
    } catch (const Error& e) {  // the parser checks geometry first; this is a backstop
      fail(line, what + ": " + e.what());
    }
    if (out.size() > std::numeric_limits<int>::max()) fail(line, what + ": output " + shape_str(out) + " is too large");
    if (!s.name.empty() && !names_.insert(s.name).second)
      fail(line, what + ": the name '" + s.name + "' is used twice (parameter names must be unique)");
    net_.layers.push_back(std::move(s));
    shapes_.push_back(out);
    lines_.push_back(line);
    whats_.push_back(std::move(what));
    return int(net_.layers.size()) - 1;
  }

  int parse_list(const toml::array& list, int x, const std::string& prefix) {
    for (const toml::node& n : list) {
      const toml::table* t = n.as_table();
      if (!t) fail(line_of(n), "a layer must be a table");
      x = parse_layer(*t, x, prefix);
    }
    return x;
  }

  std::string full_name(const toml::table& t, const std::string& prefix, const std::string& type, bool required) const {
    const toml::node* v = t.get("name");
    if (!v) {
      if (required) fail(line_of(t), type + ": missing field 'name' (the PyTorch module name of its parameters)");
      return prefix;
    }
    const auto* s = v->as_string();
    if (!s || s->get().empty()) fail(line_of(*v), type + ": 'name' must be a non-empty string");
    return prefix.empty() ? s->get() : prefix + "." + s->get();
  }

  int parse_layer(const toml::table& t, int x, const std::string& prefix) {
    const int line = line_of(t);
    const toml::node* tn = t.get("type");
    if (!tn) fail(line, "layer without a 'type' (one of: " + std::string(kTypes) + ")");
    const auto* ts = tn->as_string();
    if (!ts) fail(line_of(*tn), "'type' must be a string (one of: " + std::string(kTypes) + ")");
    const std::string type = ts->get();
    auto what = [&](const std::string& name) { return type + (name.empty() ? "" : " '" + name + "'"); };
    const Shape in = shape(x);

    if (type == "conv2d") {
      const std::string name = full_name(t, prefix, type, true);
      Fields f(*this, t, what(name), {"name", "in_channels", "out_channels", "kernel", "stride", "padding", "bias"});
      LayerSpec s{LayerKind::Conv2d, name, {x}, f.integer("out_channels", 1), f.integer("kernel", 1),
                  f.integer("stride", 1, 1), f.integer("padding", 0, 0), f.boolean("bias", true)};
      if (f.has("in_channels") && f.integer("in_channels", 1) != in.c)
        fail(f.line_of_key("in_channels"), what(name) + ": in_channels = " + std::to_string(f.integer("in_channels", 1)) +
                                               " does not fit " + from(x));
      if (in.h + 2 * s.pad < s.kernel || in.w + 2 * s.pad < s.kernel)
        fail(line, what(name) + ": kernel " + std::to_string(s.kernel) + " does not fit " + from(x) + " padded by " +
                       std::to_string(s.pad));
      return push(std::move(s), line, what(name));
    }
    if (type == "linear") {
      const std::string name = full_name(t, prefix, type, true);
      Fields f(*this, t, what(name), {"name", "in_features", "out_features", "bias"});
      LayerSpec s{LayerKind::Linear, name, {x}, f.integer("out_features", 1), 0, 1, 0, f.boolean("bias", true)};
      // PyTorch's Linear acts on the last dimension only: an image input needs a
      // flatten first, or the checkpoint would mean something else there.
      if (in.h != 1 || in.w != 1)
        fail(line, what(name) + " takes a flat input but gets " + from(x) + " (put a flatten before it)");
      if (f.has("in_features") && f.integer("in_features", 1) != in.c)
        fail(f.line_of_key("in_features"), what(name) + ": in_features = " + std::to_string(f.integer("in_features", 1)) +
                                               " does not fit " + from(x));
      return push(std::move(s), line, what(name));
    }
    if (type == "batchnorm2d") {
      const std::string name = full_name(t, prefix, type, true);
      Fields f(*this, t, what(name), {"name", "num_features"});
      if (f.has("num_features") && f.integer("num_features", 1) != in.c)
        fail(f.line_of_key("num_features"), what(name) + ": num_features = " +
                                                std::to_string(f.integer("num_features", 1)) + " does not fit " + from(x));
      return push({LayerKind::BatchNorm2d, name, {x}}, line, what(name));
    }
    if (type == "maxpool2d") {
      Fields f(*this, t, type, {"kernel", "stride"});
      const int k = f.integer("kernel", 1);
      LayerSpec s{LayerKind::MaxPool2d, "", {x}, 0, k, f.integer("stride", 1, k), 0, false};  // stride defaults to kernel, as in PyTorch
      if (in.h < k || in.w < k) fail(line, type + ": kernel " + std::to_string(k) + " does not fit " + from(x));
      return push(std::move(s), line, type);
    }
    if (type == "relu" || type == "global_avg_pool" || type == "flatten") {
      Fields f(*this, t, type, {});
      const LayerKind kind = type == "relu" ? LayerKind::ReLU
                             : type == "flatten" ? LayerKind::Flatten
                                                 : LayerKind::GlobalAvgPool;
      return push({kind, "", {x}}, line, type);
    }
    if (type == "residual") {
      const std::string name = full_name(t, prefix, type, false);
      Fields f(*this, t, what(name), {"name", "body", "shortcut"});
      const toml::array* body = t.get("body") ? t.get("body")->as_array() : nullptr;
      if (!f.has("body")) fail(line, what(name) + ": missing field 'body' (a list of [[...body]] layers)");
      if (!body || body->empty() || !body->is_array_of_tables())
        fail(f.line_of_key("body"), what(name) + ": 'body' must be a non-empty list of layer tables");
      const int y = parse_list(*body, x, name);
      int sc = x;
      if (f.has("shortcut")) {
        const toml::array* s = t.get("shortcut")->as_array();
        if (!s || !s->is_array_of_tables())
          fail(f.line_of_key("shortcut"), what(name) + ": 'shortcut' must be a list of layer tables");
        sc = parse_list(*s, x, name);
      }
      if (!(shape(y) == shape(sc)))
        fail(line, what(name) + ": the body's output (" + whats_[y] + ", line " + std::to_string(lines_[y]) + ") is " +
                       shape_str(shape(y)) + ", which does not fit " +
                       (sc == x ? "the identity shortcut carrying " + from(x) + " (add a projection shortcut)"
                                : "the shortcut's output (" + whats_[sc] + ", line " + std::to_string(lines_[sc]) +
                                      ") " + shape_str(shape(sc))));
      return push({LayerKind::Add, "", {y, sc}}, line, what(name));
    }
    fail(line_of(*tn), "unknown layer type '" + type + "' (known: " + std::string(kTypes) + ")");
  }

  std::string source_;
  NetSpec net_;
  std::vector<Shape> shapes_;
  std::vector<int> lines_;
  std::vector<std::string> whats_;
  std::set<std::string> names_;
};

}  // namespace

NetSpec parse_net_toml(std::string_view text, const std::string& source, const std::string& default_name) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw InputError(source + ":" + std::to_string(e.source().begin.line) + ": TOML syntax error: " +
                     std::string(e.description()));
  }
  return Parser(source).parse(root, default_name);
}

NetSpec load_net_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("--net " + path + ": cannot open the net description file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError("--net " + path + ": read error");
  return parse_net_toml(ss.str(), path, std::filesystem::path(path).stem().string());
}

}  // namespace nbsgd::nets
