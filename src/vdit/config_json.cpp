// The Sparse-vDiT config file (docs/SPARSE_VDIT.md): versioned JSON, validated on
// load, written atomically. The per-step decisions are written one line per
// (step, layer) so the file stays readable for real models (50 x 40 x 40 heads).
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"
#include "io/atomic_file.hpp"

namespace moddit {

namespace {
using nlohmann::json;
constexpr const char* kFormat = "moddit.sparse_vdit";

nlohmann::ordered_json head_to_json(const VditHeadChoice& c) {
  nlohmann::ordered_json j;
  j["mode"] = to_string(c.mode);
  if (c.mode == VditMode::Diagonal || c.mode == VditMode::MultiDiagonal) j["window"] = c.window;
  if (c.mode == VditMode::VerticalStripe) j["stripes"] = c.stripes;
  return j;
}

VditHeadChoice head_from_json(const json& j) {
  MODDIT_CHECK(j.is_object() && j.contains("mode") && j["mode"].is_string(),
               "head entry must be an object with a \"mode\" string");
  for (auto it = j.begin(); it != j.end(); ++it)
    MODDIT_CHECK(it.key() == "mode" || it.key() == "window" || it.key() == "stripes",
                 "unknown key \"", it.key(), "\" in a head entry");
  VditHeadChoice c;
  c.mode = vdit_mode_from_string(j["mode"].get<std::string>());
  if (j.contains("window")) c.window = j["window"].get<int>();
  if (j.contains("stripes")) c.stripes = j["stripes"].get<std::vector<int32_t>>();
  return c;
}

std::vector<std::string> mode_names(const std::vector<VditMode>& modes) {
  std::vector<std::string> out;
  for (VditMode m : modes) out.push_back(to_string(m));
  return out;
}

void check_keys(const json& j, const char* where, std::initializer_list<const char*> allowed) {
  MODDIT_CHECK(j.is_object(), "\"", where, "\" must be an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || it.key() == a;
    MODDIT_CHECK(ok, "unknown key \"", it.key(), "\" in \"", where, "\"");
  }
}

const json& need(const json& j, const char* key, const char* where) {
  MODDIT_CHECK(j.contains(key), "missing key \"", key, "\" in \"", where, "\"");
  return j[key];
}
}  // namespace

std::string vdit_config_to_json(const VditConfig& c) {
  nlohmann::ordered_json head;  // keys in the order written here
  head["format"] = kFormat;
  head["version"] = VditConfig::kVersion;
  head["model"] = {{"num_layers", c.shape.num_layers},
                   {"num_heads", c.shape.num_heads},
                   {"head_dim", c.shape.head_dim},
                   {"num_steps", c.shape.num_steps}};
  const TokenLayout& t = c.shape.tokens;
  head["tokens"] = {{"frames", t.frames},
                    {"height", t.height},
                    {"width", t.width},
                    {"text_tokens", t.text_tokens},
                    {"text_valid", t.text_valid},
                    {"text_position", to_string(t.text_position)}};
  head["block_size"] = c.shape.block_size;
  const VditSearchOptions& s = c.search;
  head["search"] = {{"lambda", s.lambda},
                    {"eps", s.eps},
                    {"loss", "mse(head) / mean_square(dense output of the layer) + lambda * density"},
                    {"modes", mode_names(s.modes)},
                    {"diagonal_windows", s.diagonal_windows},
                    {"multi_diagonal_windows", s.multi_diagonal_windows},
                    {"stripe_counts", s.stripe_counts},
                    {"stripe_sample_rows", s.stripe_sample_rows},
                    {"first_step", s.first_step}};
  head["calibration"] = c.calibration;
  head["mean_density"] = c.mean_density();

  // Header pretty-printed, then "steps" with one (step, layer) per line.
  std::string text = head.dump(2);
  text.resize(text.size() - 2);  // drop "\n}"
  std::ostringstream os;
  os << text << ",\n  \"steps\": [";
  for (size_t i = 0; i < c.steps.size(); ++i) {
    os << (i ? "," : "") << "\n    {\"step\": " << c.steps[i] << ", \"layers\": [";
    for (size_t l = 0; l < c.choices[i].size(); ++l) {
      nlohmann::ordered_json heads = nlohmann::ordered_json::array();
      for (const VditHeadChoice& h : c.choices[i][l]) heads.push_back(head_to_json(h));
      os << (l ? "," : "") << "\n      " << heads.dump();
    }
    os << "\n    ]}";
  }
  os << "\n  ]\n}\n";
  return os.str();
}

VditConfig vdit_config_from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(std::string("Sparse-vDiT config: not valid JSON: ") + e.what());
  }
  try {
    check_keys(j, "config",
               {"format", "version", "model", "tokens", "block_size", "search", "calibration",
                "mean_density", "steps"});
    MODDIT_CHECK(need(j, "format", "config") == kFormat, "not a Sparse-vDiT config (format is ",
                 j["format"].dump(), ", expected \"", kFormat, "\")");
    const int version = need(j, "version", "config").get<int>();
    MODDIT_CHECK(version == VditConfig::kVersion, "Sparse-vDiT config version ", version,
                 " is not supported (this moddit reads version ", VditConfig::kVersion, ")");
    VditConfig c;
    const json& m = need(j, "model", "config");
    check_keys(m, "model", {"num_layers", "num_heads", "head_dim", "num_steps"});
    c.shape.num_layers = need(m, "num_layers", "model").get<int>();
    c.shape.num_heads = need(m, "num_heads", "model").get<int>();
    c.shape.head_dim = need(m, "head_dim", "model").get<int>();
    c.shape.num_steps = need(m, "num_steps", "model").get<int>();
    const json& t = need(j, "tokens", "config");
    check_keys(t, "tokens", {"frames", "height", "width", "text_tokens", "text_valid", "text_position"});
    c.shape.tokens.frames = need(t, "frames", "tokens").get<int64_t>();
    c.shape.tokens.height = need(t, "height", "tokens").get<int64_t>();
    c.shape.tokens.width = need(t, "width", "tokens").get<int64_t>();
    c.shape.tokens.text_tokens = need(t, "text_tokens", "tokens").get<int64_t>();
    c.shape.tokens.text_valid = need(t, "text_valid", "tokens").get<int64_t>();
    c.shape.tokens.text_position =
        text_position_from_string(need(t, "text_position", "tokens").get<std::string>());
    c.shape.block_size = need(j, "block_size", "config").get<int>();
    if (j.contains("search")) {
      const json& s = j["search"];
      check_keys(s, "search", {"lambda", "eps", "loss", "modes", "diagonal_windows",
                               "multi_diagonal_windows", "stripe_counts", "stripe_sample_rows",
                               "first_step"});
      if (s.contains("lambda")) c.search.lambda = s["lambda"].get<double>();
      if (s.contains("eps")) c.search.eps = s["eps"].get<double>();
      if (s.contains("modes")) {
        c.search.modes.clear();
        for (const auto& name : s["modes"]) c.search.modes.push_back(vdit_mode_from_string(name));
      }
      if (s.contains("diagonal_windows")) c.search.diagonal_windows = s["diagonal_windows"].get<std::vector<int>>();
      if (s.contains("multi_diagonal_windows"))
        c.search.multi_diagonal_windows = s["multi_diagonal_windows"].get<std::vector<int>>();
      if (s.contains("stripe_counts")) c.search.stripe_counts = s["stripe_counts"].get<std::vector<int>>();
      if (s.contains("stripe_sample_rows")) c.search.stripe_sample_rows = s["stripe_sample_rows"].get<int>();
      if (s.contains("first_step")) c.search.first_step = s["first_step"].get<int>();
      c.search.block_size = c.shape.block_size;
    }
    if (j.contains("calibration")) c.calibration = j["calibration"].get<std::vector<std::string>>();
    const json& steps = need(j, "steps", "config");
    MODDIT_CHECK(steps.is_array(), "\"steps\" must be an array");
    for (const json& st : steps) {
      check_keys(st, "steps[]", {"step", "layers"});
      c.steps.push_back(need(st, "step", "steps[]").get<int>());
      std::vector<std::vector<VditHeadChoice>> layers;
      for (const json& layer : need(st, "layers", "steps[]")) {
        std::vector<VditHeadChoice> heads;
        for (const json& h : layer) heads.push_back(head_from_json(h));
        layers.push_back(std::move(heads));
      }
      c.choices.push_back(std::move(layers));
    }
    c.validate();
    return c;
  } catch (const json::exception& e) {
    throw Error(std::string("Sparse-vDiT config: bad value: ") + e.what());
  }
}

VditConfig load_vdit_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MODDIT_CHECK(in.good(), "cannot open Sparse-vDiT config '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  try {
    return vdit_config_from_json(ss.str());
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

void save_vdit_config(const VditConfig& config, const std::string& path) {
  config.validate();
  write_file_atomic(path, vdit_config_to_json(config));
}

}  // namespace moddit
