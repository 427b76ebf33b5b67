// Parsing of policy lists ("dense,moddit:ridge_lambda=1,oracle") and of
// synthetic-trajectory settings ("frames=4 heads=2"), shared by the commands.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <set>
#include <sstream>

#include "moddit/error.hpp"
#include "moddit/eval.hpp"

namespace moddit {

const std::vector<std::string>& eval_policy_kinds() {
  static const std::vector<std::string> kinds = {"dense", "moddit", "oracle", "window", "radial", "svg", "sparse_vdit"};
  return kinds;
}

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, sep)) parts.push_back(cur);
  if (!s.empty() && s.back() == sep) parts.emplace_back();
  return parts;
}

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  const auto b = s.find_last_not_of(" \t");
  return s.substr(a, b - a + 1);
}

// A value as JSON: numbers and JSON literals as such, anything else as a string.
nlohmann::json value_of(const std::string& text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    return text;
  }
}

}  // namespace

std::vector<EvalPolicySpec> parse_policy_list(const std::string& list, const ModditConfig& base,
                                              double target_density) {
  MODDIT_CHECK(target_density > 0.0 && target_density <= 1.0,
               "density must be in (0, 1], got ", target_density);
  ModditConfig with_density = base;
  with_density.target_density = target_density;
  const std::string base_json = moddit_config_to_json(with_density);
  std::vector<EvalPolicySpec> specs;
  std::set<std::string> labels;
  for (const std::string& raw : split(list, ',')) {
    const std::string item = trim(raw);
    MODDIT_CHECK(!item.empty(), "empty policy name in '", list, "'");
    std::vector<std::string> parts = split(item, ':');
    EvalPolicySpec spec;
    spec.kind = trim(parts[0]);
    const auto& kinds = eval_policy_kinds();
    if (std::find(kinds.begin(), kinds.end(), spec.kind) == kinds.end()) {
      std::string known;
      for (const auto& k : kinds) known += (known.empty() ? "" : ", ") + k;
      throw Error("unknown policy '" + spec.kind + "' (known: " + known + ")");
    }
    spec.config = with_density;
    spec.label = spec.kind;
    if (parts.size() > 1) {
      nlohmann::json j = nlohmann::json::parse(base_json);
      std::string suffix;
      for (size_t p = 1; p < parts.size(); ++p) {
        const std::string kv = trim(parts[p]);
        const auto eq = kv.find('=');
        MODDIT_CHECK(eq != std::string::npos && eq > 0,
                     "policy '", item, "': expected key=value after ':', got '", kv, "'");
        const std::string key = trim(kv.substr(0, eq)), value = trim(kv.substr(eq + 1));
        MODDIT_CHECK(j.contains(key), "policy '", item, "': unknown config key '", key, "'");
        j[key] = value_of(value);
        suffix += (suffix.empty() ? "" : ",") + key + "=" + value;
      }
      spec.config = moddit_config_from_json(j.dump());
      spec.label = spec.kind + "[" + suffix + "]";
    }
    spec.config.validate();
    MODDIT_CHECK(labels.insert(spec.label).second, "policy '", spec.label, "' is listed twice");
    specs.push_back(std::move(spec));
  }
  MODDIT_CHECK(!specs.empty(), "no policies given");
  return specs;
}

void apply_synthetic_settings(const std::vector<std::string>& key_values, SyntheticSpec& spec) {
  // Only parsed here; the ranges are SyntheticSpec::validate()'s (make_synthetic).
  auto to_int = [](const std::string& key, const std::string& v, long lo = INT32_MIN,
                   long hi = INT32_MAX) {
    char* end = nullptr;
    const long x = std::strtol(v.c_str(), &end, 10);
    MODDIT_CHECK(!v.empty() && end && *end == '\0', "synthetic setting ", key,
                 ": expected an integer, got '", v, "'");
    MODDIT_CHECK(x >= lo && x <= hi, "synthetic setting ", key, " = ", x, " is out of range [",
                 lo, ", ", hi, "]");
    return static_cast<int>(x);
  };
  auto to_double = [](const std::string& key, const std::string& v) {
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    MODDIT_CHECK(!v.empty() && end && *end == '\0', "synthetic setting ", key,
                 ": expected a number, got '", v, "'");
    return x;
  };
  for (const std::string& kv_raw : key_values) {
    for (const std::string& kv0 : split(kv_raw, ',')) {
      const std::string kv = trim(kv0);
      if (kv.empty()) continue;
      const auto eq = kv.find('=');
      MODDIT_CHECK(eq != std::string::npos, "synthetic setting '", kv, "': expected key=value");
      const std::string key = trim(kv.substr(0, eq)), v = trim(kv.substr(eq + 1));
      if (key == "frames") spec.frames = to_int(key, v);
      else if (key == "height") spec.height = to_int(key, v);
      else if (key == "width") spec.width = to_int(key, v);
      else if (key == "text_tokens") spec.text_tokens = to_int(key, v);
      else if (key == "text_valid") spec.text_valid = to_int(key, v);
      else if (key == "text_position") {
        text_position_from_string(v);  // validates
        spec.text_position = v;
      } else if (key == "num_steps" || key == "steps") spec.num_steps = to_int(key, v);
      else if (key == "layers") spec.layers = to_int(key, v);
      else if (key == "heads") spec.heads = to_int(key, v);
      else if (key == "head_dim") spec.head_dim = to_int(key, v);
      else if (key == "batch") spec.batch = to_int(key, v);
      else if (key == "seed") spec.seed = static_cast<unsigned>(to_int(key, v, 0));
      else if (key == "head_logit_spread") spec.head_logit_spread = to_double(key, v);
      else if (key == "value_offset") spec.value_offset = to_double(key, v);
      else
        throw Error("unknown synthetic setting '" + key +
                    "' (known: frames, height, width, text_tokens, text_valid, text_position, "
                    "num_steps, layers, heads, head_dim, batch, seed, head_logit_spread, value_offset)");
    }
  }
}

}  // namespace moddit
