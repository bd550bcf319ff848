// nbsgd plot and compare's report.md: the PNGs exist, have the size and the number
// of series the script's own plots.json says, and that count is the one the run
// folders imply (runs per exchange, workers per heat map and Gantt chart).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace nbsgd::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool have_matplotlib() {
  return std::system("/usr/bin/python3 -c 'import matplotlib, numpy' >/dev/null 2>&1") == 0 ||
         std::system("python3 -c 'import matplotlib, numpy' >/dev/null 2>&1") == 0;
}

// Width and height from a PNG's IHDR chunk; {0, 0} when it is not a PNG.
std::pair<int, int> png_size(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  unsigned char h[24] = {};
  f.read(reinterpret_cast<char*>(h), sizeof h);
  if (!f || h[0] != 0x89 || h[1] != 'P' || h[2] != 'N' || h[3] != 'G') return {0, 0};
  auto be = [&](int o) { return (h[o] << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3]; };
  return {be(16), be(20)};
}

json read_json(const std::string& p) {
  std::ifstream f(p);
  return json::parse(f);
}

const json* find_plot(const json& plots, const std::string& file) {
  for (const auto& p : plots)
    if (p["file"] == file) return &p;
  return nullptr;
}

void expect_pngs_match(const std::string& dir, const json& plots) {
  for (const auto& p : plots) {
    const std::string file = dir + "/plots/" + p["file"].get<std::string>();
    ASSERT_TRUE(fs::exists(file)) << file;
    const auto [w, h] = png_size(file);
    EXPECT_EQ(w, p["width_px"].get<int>()) << file;
    EXPECT_EQ(h, p["height_px"].get<int>()) << file;
    EXPECT_EQ(w, 900) << file;
    EXPECT_EQ(h, 500) << file;
    EXPECT_FALSE(p["title"].get<std::string>().empty()) << file;
    EXPECT_GT(p["series"].get<int>(), 0) << file;
  }
}

TEST(Plot, CompareFolderPlotsAndReport) {
  if (!have_matplotlib()) GTEST_SKIP() << "no python3 with matplotlib and numpy (scripts/setup.sh installs them)";
  const std::string dir = make_temp_dir("plot-compare");
  CommandResult r = run_nbsgd("compare --runs ring/sync,ring/fastest,dpsgd/fastest --host-workers 3 --net mlp "
                              "--train-limit 2048 --test-limit 128 --batch 32 --split 4 --slowdown 1,1,3 --steps 8 "
                              "--clock real --seed 2 --log-every 4 --out " +
                              dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Progress within each run, named.
  EXPECT_NE(r.output.find("[2/3 ring/fastest] step 4/8 50.0%"), std::string::npos) << r.output;
  const json pj = read_json(dir + "/plots/plots.json");
  const json& plots = pj["plots"];
  expect_pngs_match(dir, plots);
  // One loss chart per exchange, holding that exchange's runs.
  for (const auto& [file, n] : std::vector<std::pair<std::string, int>>{{"loss_vs_time_ring.png", 2},
                                                                         {"loss_vs_samples_ring.png", 2},
                                                                         {"loss_vs_time_dpsgd.png", 1},
                                                                         {"samples_per_s.png", 3}}) {
    const json* p = find_plot(plots, file);
    ASSERT_NE(p, nullptr) << file;
    EXPECT_EQ((*p)["series"], n) << file;
  }
  // Per run: a heat map and a Gantt chart with a row per worker.
  for (const char* run : {"ring_sync", "ring_fastest", "dpsgd_fastest"})
    for (const char* kind : {"finished_", "gantt_"}) {
      const json* p = find_plot(plots, std::string(kind) + run + ".png");
      ASSERT_NE(p, nullptr) << kind << run;
      EXPECT_EQ((*p)["series"], 3) << kind << run;
    }
  // report.md: legend, only columns with values, speed-ups, clock, links.
  std::ifstream f(dir + "/report.md");
  const std::string md((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(md.find("Columns:"), std::string::npos);
  EXPECT_NE(md.find("real clock"), std::string::npos);
  EXPECT_EQ(md.find("| time to target |"), std::string::npos) << md;  // no --target-loss: no such column
  EXPECT_EQ(md.find("| efficiency |"), std::string::npos) << md;
  EXPECT_NE(md.find("speed-up over own sync (samples/s)"), std::string::npos) << md;
  EXPECT_NE(md.find("- ring/fastest: "), std::string::npos) << md;
  for (const auto& p : plots)
    EXPECT_NE(md.find("(plots/" + p["file"].get<std::string>() + ")"), std::string::npos) << p["file"];
}

TEST(Plot, RunFolder) {
  if (!have_matplotlib()) GTEST_SKIP() << "no python3 with matplotlib and numpy (scripts/setup.sh installs them)";
  const std::string dir = make_temp_dir("plot-run");
  CommandResult r = run_nbsgd("train --host-workers 2 --net mlp --train-limit 1024 --test-limit 128 --batch 32 "
                              "--split 4 --steps 5 --clock real --quiet --out " + dir + " --trace " + dir + "/trace.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  CommandResult p = run_nbsgd("plot " + dir);
  ASSERT_EQ(p.exit_code, 0) << p.output;
  const json pj = read_json(dir + "/plots/plots.json");
  expect_pngs_match(dir, pj["plots"]);
  for (const char* file : {"loss_vs_time.png", "loss_vs_samples.png", "samples_per_s.png", "finished_run.png",
                           "gantt_run.png"})
    EXPECT_NE(find_plot(pj["plots"], file), nullptr) << file;
  EXPECT_EQ((*find_plot(pj["plots"], "gantt_run.png"))["series"], 2);
  EXPECT_EQ((*find_plot(pj["plots"], "loss_vs_time.png"))["series"], 1);
}

TEST(Plot, NotARunFolderIsOneLine) {
  const std::string dir = make_temp_dir("plot-empty");
  CommandResult r = run_nbsgd("plot " + dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("neither compare.json"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

}  // namespace
}  // namespace nbsgd::test
