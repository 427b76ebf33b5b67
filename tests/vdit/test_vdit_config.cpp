// The Sparse-vDiT config: round trip, validation on load, shape check.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>

#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"
#include "vdit_test_util.hpp"

using namespace moddit;

namespace {

VditConfig random_config(unsigned seed) {
  std::mt19937 rng(seed);
  VditConfig c;
  c.shape.num_layers = 3;
  c.shape.num_heads = 5;
  c.shape.head_dim = 64;
  c.shape.num_steps = 20;
  c.shape.block_size = 64;
  c.shape.tokens = vdit_test::small_layouts()[1];
  c.search.lambda = 0.25 + (rng() % 100) / 100.0;
  c.search.eps = 0.5 + (rng() % 100) / 10.0;
  c.search.diagonal_windows = {0, 3};
  c.calibration = {"random test trajectory"};
  const int n = make_block_grid(c.shape.tokens, 64).num_video_blocks;
  for (int s : {2, 5, 11}) {
    c.steps.push_back(s);
    std::vector<std::vector<VditHeadChoice>> layers(3);
    for (auto& heads : layers)
      for (int h = 0; h < 5; ++h) {
        VditHeadChoice x;
        x.mode = static_cast<VditMode>(rng() % kNumVditModes);
        if (x.mode == VditMode::Diagonal || x.mode == VditMode::MultiDiagonal) x.window = int(rng() % 9);
        if (x.mode == VditMode::VerticalStripe)
          for (int b = 0; b < n; ++b)
            if (rng() % 2) x.stripes.push_back(b);
        heads.push_back(x);
      }
    c.choices.push_back(layers);
  }
  return c;
}

void expect_equal(const VditConfig& a, const VditConfig& b) {
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.shape.num_layers, b.shape.num_layers);
  EXPECT_EQ(a.shape.num_heads, b.shape.num_heads);
  EXPECT_EQ(a.shape.head_dim, b.shape.head_dim);
  EXPECT_EQ(a.shape.num_steps, b.shape.num_steps);
  EXPECT_EQ(a.shape.block_size, b.shape.block_size);
  EXPECT_EQ(a.shape.tokens.describe(), b.shape.tokens.describe());
  EXPECT_DOUBLE_EQ(a.search.lambda, b.search.lambda);
  EXPECT_DOUBLE_EQ(a.search.eps, b.search.eps);
  EXPECT_EQ(a.search.diagonal_windows, b.search.diagonal_windows);
  EXPECT_EQ(a.calibration, b.calibration);
  ASSERT_EQ(a.choices.size(), b.choices.size());
  for (size_t i = 0; i < a.choices.size(); ++i)
    for (size_t l = 0; l < a.choices[i].size(); ++l)
      for (size_t h = 0; h < a.choices[i][l].size(); ++h)
        EXPECT_TRUE(a.choices[i][l][h] == b.choices[i][l][h]) << i << " " << l << " " << h;
}

std::string temp_path(const char* name) {
  return std::string(MODDIT_BINARY_DIR) + "/" + name;
}

}  // namespace

TEST(VditConfig, RoundTripsThroughJsonAndFile) {
  for (unsigned seed : {1u, 2u, 3u}) {
    const VditConfig c = random_config(seed);
    expect_equal(c, vdit_config_from_json(vdit_config_to_json(c)));
    const std::string path = temp_path("vdit_config_roundtrip.json");
    save_vdit_config(c, path);
    expect_equal(c, load_vdit_config(path));
    std::remove(path.c_str());
  }
}

TEST(VditConfig, LooksUpTheLatestSearchedStep) {
  const VditConfig c = random_config(4);
  EXPECT_TRUE(c.layer_choices(5, 1) == c.choices[1][1]);
  EXPECT_TRUE(c.layer_choices(10, 2) == c.choices[1][2]);
  EXPECT_TRUE(c.layer_choices(19, 0) == c.choices[2][0]);
  for (const auto& h : c.layer_choices(1, 0)) EXPECT_EQ(h.mode, VditMode::Full);  // before step 2
  EXPECT_THROW(c.layer_choices(5, 3), Error);
}

TEST(VditConfig, RefusesAnotherShape) {
  const VditConfig c = random_config(5);
  const TokenLayout& t = c.shape.tokens;
  EXPECT_NO_THROW(c.check_matches(t, 64, 5, 64, 20));
  TokenLayout other = t;
  other.text_valid = 10;  // the prompt's text length may change: text is dense
  EXPECT_NO_THROW(c.check_matches(other, 64, 5, 64, 20));
  other = t;
  other.width += 1;
  try {
    c.check_matches(other, 64, 5, 64, 20);
    FAIL() << "accepted another token layout";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("searched for tokens"), std::string::npos) << e.what();
  }
  EXPECT_THROW(c.check_matches(t, 128, 5, 64, 20), Error);  // block size
  EXPECT_THROW(c.check_matches(t, 64, 6, 64, 20), Error);   // heads
  EXPECT_THROW(c.check_matches(t, 64, 5, 128, 20), Error);  // head dim
  EXPECT_THROW(c.check_matches(t, 64, 5, 64, 50), Error);   // schedule
}

TEST(VditConfig, RefusesBadFiles) {
  const VditConfig c = random_config(6);
  const std::string good = vdit_config_to_json(c);
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };
  EXPECT_THROW(vdit_config_from_json("{"), Error);
  EXPECT_THROW(vdit_config_from_json(replaced("\"version\": 1", "\"version\": 2")), Error);
  EXPECT_THROW(vdit_config_from_json(replaced("moddit.sparse_vdit", "moddit.other")), Error);
  EXPECT_THROW(vdit_config_from_json(replaced("\"num_heads\": 5", "\"num_heads\": 4")), Error);
  EXPECT_THROW(vdit_config_from_json(replaced("\"block_size\": 64", "\"block_size\": 64, \"extra\": 1")),
               Error);
  EXPECT_THROW(vdit_config_from_json(replaced("\"step\": 5", "\"step\": 1")), Error);  // not ascending
  EXPECT_THROW(load_vdit_config(temp_path("does_not_exist.json")), Error);
}
