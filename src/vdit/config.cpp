// VditConfig: validation, lookup, shape check (include/moddit/sparse_vdit.hpp).
#include <algorithm>
#include <cmath>

#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"

namespace moddit {

void VditSearchOptions::validate() const {
  MODDIT_CHECK(std::isfinite(lambda) && lambda >= 0, "search: lambda must be >= 0, got ", lambda);
  MODDIT_CHECK(!std::isnan(eps) && eps >= 0, "search: eps must be >= 0, got ", eps);
  MODDIT_CHECK(block_size == 64 || block_size == 128, "search: block_size must be 64 or 128, got ",
               block_size);
  MODDIT_CHECK(!modes.empty(), "search: no candidate modes");
  for (VditMode m : modes)
    MODDIT_CHECK(m != VditMode::Full, "search: full is the fallback, not a candidate mode");
  auto has = [&](VditMode m) { return std::find(modes.begin(), modes.end(), m) != modes.end(); };
  auto nonneg = [](const std::vector<int>& v, const char* what, int min) {
    for (int x : v) MODDIT_CHECK(x >= min, "search: ", what, " must be >= ", min, ", got ", x);
  };
  nonneg(diagonal_windows, "diagonal_windows", 0);
  nonneg(multi_diagonal_windows, "multi_diagonal_windows", 0);
  nonneg(stripe_counts, "stripe_counts", 1);
  MODDIT_CHECK(!has(VditMode::Diagonal) || !diagonal_windows.empty(),
               "search: diagonal mode needs at least one diagonal window");
  MODDIT_CHECK(!has(VditMode::MultiDiagonal) || !multi_diagonal_windows.empty(),
               "search: multi_diagonal mode needs at least one window");
  MODDIT_CHECK(!has(VditMode::VerticalStripe) || !stripe_counts.empty(),
               "search: vertical_stripe mode needs at least one stripe count");
  MODDIT_CHECK(first_step >= 0, "search: first_step must be >= 0, got ", first_step);
  MODDIT_CHECK(stripe_sample_rows > 0, "search: stripe_sample_rows must be > 0, got ",
               stripe_sample_rows);
}

std::vector<VditHeadChoice> VditConfig::layer_choices(int step, int layer) const {
  MODDIT_CHECK(!steps.empty(), "Sparse-vDiT config has no steps");
  MODDIT_CHECK(layer >= 0 && layer < shape.num_layers, "Sparse-vDiT config: layer ", layer,
               " out of range [0, ", shape.num_layers, ")");
  // Latest searched step <= step; before the first searched step: full.
  auto it = std::upper_bound(steps.begin(), steps.end(), step);
  if (it == steps.begin()) return std::vector<VditHeadChoice>(size_t(shape.num_heads));
  return choices[size_t(it - steps.begin()) - 1][static_cast<size_t>(layer)];
}

void VditConfig::validate() const {
  shape.tokens.validate();
  MODDIT_CHECK(shape.num_layers > 0 && shape.num_heads > 0 && shape.head_dim > 0,
               "Sparse-vDiT config: num_layers, num_heads and head_dim must be > 0");
  MODDIT_CHECK(shape.num_steps > 0, "Sparse-vDiT config: num_steps must be > 0");
  const BlockGrid grid = make_block_grid(shape.tokens, shape.block_size);
  const int n = grid.num_video_blocks;
  MODDIT_CHECK(!steps.empty(), "Sparse-vDiT config: no steps");
  MODDIT_CHECK(choices.size() == steps.size(), "Sparse-vDiT config: ", steps.size(),
               " steps but ", choices.size(), " step entries");
  for (size_t i = 0; i < steps.size(); ++i) {
    MODDIT_CHECK(steps[i] >= 0 && steps[i] < shape.num_steps, "Sparse-vDiT config: step ",
                 steps[i], " out of range [0, ", shape.num_steps, ")");
    MODDIT_CHECK(i == 0 || steps[i - 1] < steps[i], "Sparse-vDiT config: steps not ascending at ",
                 steps[i]);
    MODDIT_CHECK(static_cast<int>(choices[i].size()) == shape.num_layers, "Sparse-vDiT config: step ",
                 steps[i], " has ", choices[i].size(), " layers, expected ", shape.num_layers);
    for (size_t l = 0; l < choices[i].size(); ++l) {
      MODDIT_CHECK(static_cast<int>(choices[i][l].size()) == shape.num_heads,
                   "Sparse-vDiT config: step ", steps[i], " layer ", l, " has ",
                   choices[i][l].size(), " heads, expected ", shape.num_heads);
      for (const VditHeadChoice& c : choices[i][l]) {
        MODDIT_CHECK(c.window >= 0, "Sparse-vDiT config: negative window at step ", steps[i],
                     " layer ", l);
        for (size_t s = 0; s < c.stripes.size(); ++s)
          MODDIT_CHECK(c.stripes[s] >= 0 && c.stripes[s] < n &&
                           (s == 0 || c.stripes[s - 1] < c.stripes[s]),
                       "Sparse-vDiT config: stripe block ", c.stripes[s], " at step ", steps[i],
                       " layer ", l, " is out of range [0, ", n, ") or not ascending");
        MODDIT_CHECK(c.mode == VditMode::VerticalStripe || c.stripes.empty(),
                     "Sparse-vDiT config: stripes given for a ", to_string(c.mode), " head");
      }
    }
  }
}

void VditConfig::check_matches(const TokenLayout& t, int block_size, int num_heads, int head_dim,
                               int num_steps) const {
  const TokenLayout& s = shape.tokens;
  // text_valid may vary with the prompt: text is dense in every mode, so only the
  // allocated text length and position matter.
  const bool tokens_ok = s.frames == t.frames && s.height == t.height && s.width == t.width &&
                         s.text_tokens == t.text_tokens && s.text_position == t.text_position;
  MODDIT_CHECK(tokens_ok, "Sparse-vDiT config was searched for tokens (", s.describe(),
               ") but this model has (", t.describe(), ")");
  MODDIT_CHECK(block_size == shape.block_size, "Sparse-vDiT config was searched with block size ",
               shape.block_size, " but the session uses ", block_size);
  MODDIT_CHECK(num_heads == shape.num_heads, "Sparse-vDiT config was searched for ",
               shape.num_heads, " heads but this model has ", num_heads);
  MODDIT_CHECK(head_dim <= 0 || head_dim == shape.head_dim,
               "Sparse-vDiT config was searched for head_dim ", shape.head_dim,
               " but this model has ", head_dim);
  MODDIT_CHECK(num_steps <= 0 || num_steps == shape.num_steps, "Sparse-vDiT config was searched for ",
               shape.num_steps, " steps but this schedule has ", num_steps);
}

double VditConfig::mean_density() const {
  const BlockGrid grid = make_block_grid(shape.tokens, shape.block_size);
  double sum = 0;
  int64_t count = 0;
  for (const auto& step : choices)
    for (const auto& layer : step)
      for (const VditHeadChoice& c : layer) {
        sum += vdit_density(c, shape.tokens, grid);
        ++count;
      }
  return count ? sum / double(count) : 1.0;
}

std::vector<double> vdit_mode_shares(const VditConfig& config, int layer) {
  std::vector<double> shares(kNumVditModes, 0.0);
  double total = 0;
  for (const auto& step : config.choices)
    for (size_t l = 0; l < step.size(); ++l) {
      if (layer >= 0 && static_cast<int>(l) != layer) continue;
      for (const VditHeadChoice& c : step[l]) {
        shares[static_cast<size_t>(c.mode)] += 1;
        total += 1;
      }
    }
  if (total > 0)
    for (double& s : shares) s /= total;
  return shares;
}

}  // namespace moddit
