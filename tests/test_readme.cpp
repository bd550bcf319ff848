// Every example command in README.md runs, exactly as written apart from small
// limits appended (fewer steps and samples), and exits 0. The commands are read from
// README.md itself at test time: a `$B ...` line in a ```sh block (with its `\`
// continuations), and every inline `nbsgd ...` span that is a whole command (not a
// template with <...> or A|B in it). Relative paths (out/run1, npy:cifar) resolve
// in a fresh folder; the npy example's folder is made there, in the layout the
// README's Python snippet writes (uint8 NHWC images, int64 labels).
// GCC 12's libstdc++ <regex> trips -Wmaybe-uninitialized inside std::function at -O2
// with -fsanitize=address (a known false positive in the library's own code): the
// ASan preset's -Werror would fail on it. Only this warning, only in this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_support.h"

namespace nbsgd::test {
namespace {

namespace fs = std::filesystem;

std::string readme() {
  std::ifstream f(std::string(NBSGD_SOURCE_DIR) + "/README.md");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The commands, each without its leading `$B ` / `nbsgd `.
std::vector<std::string> examples(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  bool in_sh = false;
  std::string line, pending;
  while (std::getline(in, line)) {
    if (line.rfind("```", 0) == 0) {
      in_sh = !in_sh && line == "```sh";
      continue;
    }
    if (!in_sh) continue;
    if (pending.empty() && line.rfind("$B ", 0) != 0) continue;
    const size_t hash = line.find(" #");
    if (hash != std::string::npos) line.resize(hash);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    const bool more = !line.empty() && line.back() == '\\';
    if (more) line.pop_back();
    pending += (pending.empty() ? line.substr(3) : " " + line);
    if (!more) {
      out.push_back(std::regex_replace(pending, std::regex(" +"), " "));
      pending.clear();
    }
  }
  const std::regex inline_cmd("`nbsgd ([^`]+)`");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), inline_cmd); it != std::sregex_iterator(); ++it) {
    const std::string c = (*it)[1];
    const bool seen = std::find(out.begin(), out.end(), c) != out.end();
    if (!seen && c.find('<') == std::string::npos && c.find('|') == std::string::npos) out.push_back(c);
  }
  return out;
}

// Small limits per command; nothing else is changed.
std::string limits(const std::string& cmd) {
  const std::string sub = cmd.substr(0, cmd.find(' '));
  if (sub == "train" || sub == "compare")
    return std::string(" --steps 3 --train-limit 512 --test-limit 64") +
           (cmd.find("--batch") == std::string::npos ? " --batch 32 --split 4" : "");
  if (sub == "predict") return " --steps 3";
  if (sub == "devices" && cmd.find("--measure") != std::string::npos) return " --steps 3";
  return "";
}

void write_npy(const std::string& path, const std::string& dtype, const std::vector<int64_t>& shape,
               const std::string& data) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  std::string header = "{'descr': '" + dtype + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.append(reinterpret_cast<const char*>(&len), 2);
  out += header + data;
  std::ofstream(path, std::ios::binary) << out;
}

// A tiny CIFAR-like folder: 16 training and 8 test images.
void write_cifar_npy(const std::string& dir) {
  fs::create_directories(dir);
  for (const auto& [split, n] : {std::pair<std::string, int>{"train", 16}, {"test", 8}}) {
    std::string images(static_cast<size_t>(n) * 32 * 32 * 3, '\0');
    for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<char>((i * 37) % 251);
    std::string labels(static_cast<size_t>(n) * 8, '\0');
    for (int i = 0; i < n; ++i) {
      const int64_t y = i % 10;
      std::memcpy(labels.data() + 8 * i, &y, 8);
    }
    write_npy(dir + "/x_" + split + ".npy", "|u1", {n, 32, 32, 3}, images);
    write_npy(dir + "/y_" + split + ".npy", "<i8", {n}, labels);
  }
}

TEST(Readme, EveryExampleRunsAsWritten) {
  const std::vector<std::string> cmds = examples(readme());
  ASSERT_GE(cmds.size(), 8u);  // the "Using it" block and the npy example at least
  const std::string work = make_temp_dir("readme");
  write_cifar_npy(work + "/cifar");
  const fs::path here = fs::current_path();
  fs::current_path(work);
  for (const std::string& c : cmds) {
    const std::string args = c + limits(c);
    SCOPED_TRACE("nbsgd " + args);
    std::printf("[ readme   ] nbsgd %s\n", args.c_str());
    const CommandResult r = run_nbsgd(args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find("error"), std::string::npos) << r.output;
  }
  fs::current_path(here);
  EXPECT_TRUE(fs::exists(work + "/out/run1/summary.json"));
  EXPECT_TRUE(fs::exists(work + "/out/cmp/compare.json"));
  fs::remove_all(work);
}

}  // namespace
}  // namespace nbsgd::test
