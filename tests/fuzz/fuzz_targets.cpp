// The fuzzed readers (see fuzz_targets.hpp): each input goes through the reader,
// then through what consumes an accepted result, then through the checks of what
// an accepted input promises.
#include "fuzz/fuzz_targets.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "io/safetensors.hpp"
#include "moddit/config.hpp"
#include "moddit/error.hpp"
#include "moddit/eval.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/sparse_vdit.hpp"
#include "moddit/trajectory.hpp"

namespace moddit::fuzz {
namespace {

using nlohmann::json;

template <typename... Args>
[[noreturn]] void finding(Args&&... args) {
  throw Finding(detail::concat(std::forward<Args>(args)...));
}

// The readers take paths: each input is written to a file of this process's own
// temporary directory (removed at exit).
std::string& temp_dir() {
  static std::string dir;
  return dir;
}
void remove_temp_dir() {
  std::error_code ec;
  if (!temp_dir().empty()) std::filesystem::remove_all(temp_dir(), ec);
}
std::string input_file(const char* name, const uint8_t* data, size_t size) {
  if (temp_dir().empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/moddit-fuzz-XXXXXX";
    if (!mkdtemp(pattern.data())) throw std::runtime_error("fuzz: cannot make a temporary directory");
    temp_dir() = pattern;
    std::atexit(remove_temp_dir);
  }
  const std::string path = temp_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) throw std::runtime_error("fuzz: cannot write " + path);
  return path;
}

// ---- trajectory ----------------------------------------------------------------

// An accepted safetensors file has its data section covered exactly: tensors in
// offset order, each starting where the previous one ended, the last ending at
// the end of the file (as the reference implementation requires).
void check_coverage(const std::string& path, const uint8_t* data, size_t size) {
  const SafetensorsReader reader(path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  const uint64_t data_size = size - 8 - header_len;
  uint64_t covered = 0;
  for (const SafetensorsEntry& e : reader.tensors()) {
    if (e.begin != covered)
      finding("safetensors: accepted with tensor '", e.name, "' at data offset ", e.begin,
              " where the previous tensor ended at ", covered, " (gap or overlap)");
    covered = e.end;
  }
  if (covered != data_size)
    finding("safetensors: accepted with tensors covering ", covered, " of the data section's ",
            data_size, " bytes");
}

void check_info(const TrajectoryInfo& info) {
  const TokenLayout& L = info.tokens;
  int64_t hw = 0, video = 0, total = 0;
  if (__builtin_mul_overflow(L.height, L.width, &hw) ||
      __builtin_mul_overflow(L.frames, hw, &video) ||
      __builtin_add_overflow(video, L.text_tokens, &total))
    finding("trajectory: accepted with tokens ", L.frames, " x ", L.height, " x ", L.width,
            " + ", L.text_tokens, " whose count overflows int64");
  if (L.frames <= 0 || L.height <= 0 || L.width <= 0 || L.text_tokens < 0 || L.text_valid < 0 ||
      L.text_valid > L.text_tokens)
    finding("trajectory: accepted with token layout ", L.describe());
  if (info.batch <= 0 || info.heads <= 0 || info.head_dim <= 0)
    finding("trajectory: accepted with batch ", info.batch, ", heads ", info.heads, ", head_dim ",
            info.head_dim);
  if (info.steps.empty() || info.layers.empty())
    finding("trajectory: accepted with no steps or no layers");
  for (size_t i = 0; i < info.steps.size(); ++i)
    if (info.steps[i] < 0 || info.steps[i] >= info.num_steps ||
        (i && info.steps[i] <= info.steps[i - 1]))
      finding("trajectory: accepted with step ", info.steps[i], " of ", info.num_steps,
              " (steps must ascend within the schedule)");
}

void check_tensor(const HostTensor& t, const TrajectoryInfo& info, int step, int layer) {
  const int64_t want[4] = {info.batch, info.tokens.total_tokens(), info.heads, info.head_dim};
  for (int a = 0; a < 4; ++a)
    if (t.shape[a] != want[a])
      finding("trajectory: step ", step, " layer ", layer, " loaded with dimension ", a, " = ",
              t.shape[a], ", its info says ", want[a]);
  if (t.bytes.size() != size_t(t.numel()) * dtype_size(t.dtype))
    finding("trajectory: step ", step, " layer ", layer, " loaded with ", t.bytes.size(),
            " bytes for ", t.numel(), " elements");
}

// ---- configs -------------------------------------------------------------------

// An accepted number is read as written: `written` (from the input) equals what
// the config holds (`held`, as the config writes it back).
void same(const json& written, const json& held, const std::string& what) {
  if (written != held)
    finding(what, " = ", written.dump(), " was read as ", held.dump());
}

void check_vdit_roundtrip(const json& in, const VditConfig& c) {
  const json out = json::parse(vdit_config_to_json(c));
  for (const char* part : {"model", "tokens"})
    for (auto it = in[part].begin(); it != in[part].end(); ++it)
      same(it.value(), out.at(part).at(it.key()), std::string("Sparse-vDiT config: ") + part + "." + it.key());
  same(in["block_size"], out.at("block_size"), "Sparse-vDiT config: block_size");
  if (in.contains("search"))
    for (auto it = in["search"].begin(); it != in["search"].end(); ++it)
      if (it.key() != "loss")  // free text, written as the current formula
        same(it.value(), out.at("search").at(it.key()), "Sparse-vDiT config: search." + it.key());
  const json& steps = in["steps"];
  const json& out_steps = out.at("steps");
  if (steps.size() != out_steps.size())
    finding("Sparse-vDiT config: ", steps.size(), " steps were read as ", out_steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    const std::string at = "Sparse-vDiT config: steps[" + std::to_string(i) + "]";
    same(steps[i]["step"], out_steps.at(i).at("step"), at + ".step");
    const json& layers = steps[i]["layers"];
    for (size_t l = 0; l < layers.size(); ++l)
      for (size_t h = 0; h < layers[l].size(); ++h) {
        const json& head = layers[l][h];
        const json& held = out_steps.at(i).at("layers").at(l).at(h);
        const std::string where = at + ".layers[" + std::to_string(l) + "][" + std::to_string(h) + "]";
        same(head["mode"], held.at("mode"), where + ".mode");
        for (const char* key : {"window", "stripes"})
          if (head.contains(key) && held.contains(key)) same(head[key], held[key], where + "." + key);
      }
  }
}

// What a model run does with an accepted config: the plan of every searched
// (step, layer) and the summary table. Skipped for grids beyond 64 x 64 video
// blocks (real shapes are 10-600 blocks; the cost would be the policy's, not the
// reader's).
void use_vdit_config(const VditConfig& c) {
  for (size_t i = 0; i < c.steps.size(); ++i)
    for (int l = 0; l < c.shape.num_layers; ++l) c.layer_choices(c.steps[i], l);
  vdit_mode_shares(c);
  const BlockGrid grid = make_block_grid(c.shape.tokens, c.shape.block_size);
  if (grid.num_video_blocks > 64 || int64_t(c.shape.num_layers) * c.shape.num_heads > 4096) return;
  vdit_summary_table(c);
  SparseVditPolicy policy(c);
  CallInfo call;
  call.num_steps = c.shape.num_steps;
  call.batch = 1;
  call.num_heads = c.shape.num_heads;
  call.head_dim = c.shape.head_dim;
  call.tokens = &c.shape.tokens;
  call.grid = &grid;
  for (int step : c.steps)
    for (int l = 0; l < c.shape.num_layers; ++l) {
      call.step = step;
      call.layer = l;
      policy.plan(call);
    }
}

}  // namespace

bool trajectory(const uint8_t* data, size_t size) {
  const std::string path = input_file("input.safetensors", data, size);
  try {
    std::unique_ptr<TrajectorySource> src = open_trajectory(path);
    const TrajectoryInfo& info = src->info();
    check_coverage(path, data, size);
    check_info(info);
    HostTensor q, k, v;
    for (int step : info.steps)
      for (int layer : info.layers) {
        src->load(step, layer, q, k, v);
        for (const HostTensor* t : {&q, &k, &v}) check_tensor(*t, info, step, layer);
      }
    for (int block_size : {64, 128}) {
      const BlockGrid grid = make_block_grid(info.tokens, block_size);
      if (grid.starts.back() != info.tokens.total_tokens())
        finding("trajectory: the block grid ends at token ", grid.starts.back(), " of ",
                info.tokens.total_tokens());
    }
    inspect_file(path);
    return true;
  } catch (const Error&) {
    return false;
  }
}

bool moddit_config(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ModditConfig c;
  try {
    c = moddit_config_from_json(text);
  } catch (const Error&) {
    return false;
  }
  const json in = json::parse(text);
  const json out = json::parse(moddit_config_to_json(c));
  for (auto it = in.begin(); it != in.end(); ++it)
    same(it.value(), out.at(it.key()), "MOD-DiT config: " + it.key());
  try {
    ModditPolicy policy(c, 2, 2);
  } catch (const Error&) {
    return false;
  }
  return true;
}

bool vdit_config(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  VditConfig c;
  try {
    c = vdit_config_from_json(text);
  } catch (const Error&) {
    return false;
  }
  check_vdit_roundtrip(json::parse(text), c);
  try {
    use_vdit_config(c);
  } catch (const Error&) {
    return false;
  }
  return true;
}

bool report(const uint8_t* data, size_t size) {
  const std::string path = input_file("report.json", data, size);
  try {
    inspect_file(path);
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace moddit::fuzz
