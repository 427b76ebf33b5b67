// The Sparse-vDiT config file (docs/SPARSE_VDIT.md): versioned JSON, validated on
// load, written atomically. The per-step decisions are written one line per
// (step, layer) so the file stays readable for real models (50 x 40 x 40 heads).
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"
#include "moddit/sparse_vdit.hpp"
#include "io/atomic_file.hpp"
#include "io/input_file.hpp"
#include "io/json_number.hpp"

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
  if (j.contains("window")) c.window = json_int32(j["window"], "window", 0);
  if (j.contains("stripes")) c.stripes = json_int_list(j["stripes"], "stripes", 0);
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
    const int version = json_int32(need(j, "version", "config"), "version");
    MODDIT_CHECK(version == VditConfig::kVersion, "Sparse-vDiT config version ", version,
                 " is not supported (this moddit reads version ", VditConfig::kVersion, ")");
    // Every number through the strict readers (io/json_number.hpp): nothing wraps
    // or truncates; validate() then checks the ranges that depend on each other.
    const auto int_of = [](const json& o, const char* key, const char* where, int min = 0) {
      return json_int32(need(o, key, where), std::string(where) + "." + key, min);
    };
    VditConfig c;
    const json& m = need(j, "model", "config");
    check_keys(m, "model", {"num_layers", "num_heads", "head_dim", "num_steps"});
    c.shape.num_layers = int_of(m, "num_layers", "model");
    c.shape.num_heads = int_of(m, "num_heads", "model");
    c.shape.head_dim = int_of(m, "head_dim", "model");
    c.shape.num_steps = int_of(m, "num_steps", "model");
    const json& t = need(j, "tokens", "config");
    check_keys(t, "tokens", {"frames", "height", "width", "text_tokens", "text_valid", "text_position"});
    const auto token_count = [&](const char* key) {
      return json_int(need(t, key, "tokens"), std::string("tokens.") + key, 0, kMaxTokens);
    };
    c.shape.tokens.frames = token_count("frames");
    c.shape.tokens.height = token_count("height");
    c.shape.tokens.width = token_count("width");
    c.shape.tokens.text_tokens = token_count("text_tokens");
    c.shape.tokens.text_valid = token_count("text_valid");
    c.shape.tokens.text_position = text_position_from_string(
        json_string(need(t, "text_position", "tokens"), "tokens.text_position"));
    c.shape.block_size = int_of(j, "block_size", "config");
    if (j.contains("search")) {
      const json& s = j["search"];
      check_keys(s, "search", {"lambda", "eps", "loss", "modes", "diagonal_windows",
                               "multi_diagonal_windows", "stripe_counts", "stripe_sample_rows",
                               "first_step"});
      if (s.contains("lambda")) c.search.lambda = json_real(s["lambda"], "search.lambda");
      if (s.contains("eps")) c.search.eps = json_real(s["eps"], "search.eps");
      if (s.contains("modes")) {
        MODDIT_CHECK(s["modes"].is_array(), "search.modes must be an array of mode names");
        c.search.modes.clear();
        for (const auto& name : s["modes"])
          c.search.modes.push_back(vdit_mode_from_string(json_string(name, "search.modes")));
      }
      if (s.contains("diagonal_windows"))
        c.search.diagonal_windows = json_int_list(s["diagonal_windows"], "search.diagonal_windows");
      if (s.contains("multi_diagonal_windows"))
        c.search.multi_diagonal_windows =
            json_int_list(s["multi_diagonal_windows"], "search.multi_diagonal_windows");
      if (s.contains("stripe_counts"))
        c.search.stripe_counts = json_int_list(s["stripe_counts"], "search.stripe_counts");
      if (s.contains("stripe_sample_rows"))
        c.search.stripe_sample_rows = json_int32(s["stripe_sample_rows"], "search.stripe_sample_rows");
      if (s.contains("first_step")) c.search.first_step = json_int32(s["first_step"], "search.first_step");
      c.search.block_size = c.shape.block_size;
    }
    if (j.contains("calibration")) c.calibration = j["calibration"].get<std::vector<std::string>>();
    const json& steps = need(j, "steps", "config");
    MODDIT_CHECK(steps.is_array(), "\"steps\" must be an array");
    for (const json& st : steps) {
      check_keys(st, "steps[]", {"step", "layers"});
      c.steps.push_back(json_int32(need(st, "step", "steps[]"), "steps[].step", 0));
      std::vector<std::vector<VditHeadChoice>> layers;
      const json& ls = need(st, "layers", "steps[]");
      MODDIT_CHECK(ls.is_array(), "steps[].layers must be an array of layers");
      for (const json& layer : ls) {
        MODDIT_CHECK(layer.is_array(), "steps[].layers[] must be an array of head entries");
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
  const std::string text = read_input_file(path, "Sparse-vDiT config");
  try {
    return vdit_config_from_json(text);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

void save_vdit_config(const VditConfig& config, const std::string& path) {
  config.validate();
  write_file_atomic(path, vdit_config_to_json(config));
}

}  // namespace moddit
