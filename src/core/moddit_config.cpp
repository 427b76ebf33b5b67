#include <cmath>

#include <nlohmann/json.hpp>

#include "core/static_mask_layout.hpp"
#include "io/input_file.hpp"
#include "io/json_number.hpp"
#include "moddit/config.hpp"
#include "moddit/error.hpp"

namespace moddit {

void ModditConfig::validate() const {
  MODDIT_CHECK(block_size == 64 || block_size == 128, "config: block_size must be 64 or 128, got ",
               block_size);
  MODDIT_CHECK(std::isfinite(eta) && eta > 0.0, "config: eta must be > 0, got ", eta);
  MODDIT_CHECK(std::isfinite(ridge_lambda) && ridge_lambda >= 0.0,
               "config: ridge_lambda must be >= 0, got ", ridge_lambda);
  MODDIT_CHECK(warmup_steps >= 2, "config: warmup_steps must be >= 2 (steps m-2 and m-1 record "
               "the two reference fits), got ", warmup_steps);
  MODDIT_CHECK(interval >= 1, "config: interval must be >= 1, got ", interval);
  MODDIT_CHECK(top_k >= 0, "config: top_k must be >= 0 (0 = derive from target_density), got ",
               top_k);
  MODDIT_CHECK(std::isfinite(target_density) && target_density > 0.0 && target_density <= 1.0,
               "config: target_density must be in (0, 1], got ", target_density);
  MODDIT_CHECK(std::isfinite(tau_e), "config: tau_e must be finite, got ", tau_e);
  MODDIT_CHECK(map_statistic == "eq2" || map_statistic == "mass",
               "config: map_statistic must be \"eq2\" or \"mass\", got \"", map_statistic, "\"");
  MODDIT_CHECK(refresh == "masked" || refresh == "dense",
               "config: refresh must be \"masked\" or \"dense\", got \"", refresh, "\"");
  for (int l : dense_layers)
    MODDIT_CHECK(l >= 0, "config: dense_layers entries must be >= 0, got ", l);
  MODDIT_CHECK(precision == "exact" || precision == "fp8",
               "config: precision must be \"exact\" or \"fp8\", got \"", precision, "\"");
  MODDIT_CHECK(warmup_precision == "exact" || warmup_precision == "fp8",
               "config: warmup_precision must be \"exact\" or \"fp8\", got \"", warmup_precision,
               "\"");
  MODDIT_CHECK(sparse_warmup_steps >= 0 && sparse_warmup_steps <= warmup_steps - 2,
               "config: sparse_warmup_steps must be in [0, warmup_steps-2 = ", warmup_steps - 2,
               "] (the record steps stay dense), got ", sparse_warmup_steps);
  core::static_mask_kind(sparse_warmup_mask, "config: sparse_warmup_mask");  // the one list of names
  MODDIT_CHECK(std::isfinite(sparse_warmup_density) && sparse_warmup_density > 0.0 &&
                   sparse_warmup_density <= 1.0,
               "config: sparse_warmup_density must be in (0, 1], got ", sparse_warmup_density);
}

namespace {

using nlohmann::json;

// The strict readers of io/json_number.hpp; validate() checks each field's range.
int get_int(const json& v, const char* key) { return json_int32(v, std::string("config: ") + key); }
double get_double(const json& v, const char* key) { return json_real(v, std::string("config: ") + key); }

}  // namespace

ModditConfig moddit_config_from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    throw Error(std::string("config: invalid JSON: ") + e.what());
  }
  MODDIT_CHECK(j.is_object(), "config: expected a JSON object, got ", j.type_name());
  ModditConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k == "block_size") c.block_size = get_int(v, "block_size");
    else if (k == "eta") c.eta = get_double(v, "eta");
    else if (k == "ridge_lambda") c.ridge_lambda = get_double(v, "ridge_lambda");
    else if (k == "warmup_steps") c.warmup_steps = get_int(v, "warmup_steps");
    else if (k == "interval") c.interval = get_int(v, "interval");
    else if (k == "top_k") c.top_k = get_int(v, "top_k");
    else if (k == "target_density") c.target_density = get_double(v, "target_density");
    else if (k == "tau_e") c.tau_e = get_double(v, "tau_e");
    else if (k == "refresh") c.refresh = json_string(v, "config: refresh");
    else if (k == "map_statistic") c.map_statistic = json_string(v, "config: map_statistic");
    else if (k == "dense_layers") c.dense_layers = json_int_list(v, "config: dense_layers");
    else if (k == "precision" || k == "warmup_precision")
      (k == "precision" ? c.precision : c.warmup_precision) = json_string(v, "config: " + k);
    else if (k == "sparse_warmup_steps") c.sparse_warmup_steps = get_int(v, "sparse_warmup_steps");
    else if (k == "sparse_warmup_mask")
      c.sparse_warmup_mask = json_string(v, "config: sparse_warmup_mask");
    else if (k == "sparse_warmup_density")
      c.sparse_warmup_density = get_double(v, "sparse_warmup_density");
    else if (k == "device_step") {
      MODDIT_CHECK(v.is_boolean(), "config: device_step must be true or false, got ", v.dump());
      c.device_step = v.get<bool>();
    } else {
      throw Error("config: unknown key \"" + k + "\"");
    }
  }
  c.validate();
  return c;
}

std::string moddit_config_to_json(const ModditConfig& c) {
  json j;
  j["block_size"] = c.block_size;
  j["eta"] = c.eta;
  j["map_statistic"] = c.map_statistic;
  j["ridge_lambda"] = c.ridge_lambda;
  j["warmup_steps"] = c.warmup_steps;
  j["interval"] = c.interval;
  j["top_k"] = c.top_k;
  j["target_density"] = c.target_density;
  j["tau_e"] = c.tau_e;
  j["refresh"] = c.refresh;
  j["dense_layers"] = c.dense_layers;
  j["device_step"] = c.device_step;
  j["precision"] = c.precision;
  j["warmup_precision"] = c.warmup_precision;
  j["sparse_warmup_steps"] = c.sparse_warmup_steps;
  j["sparse_warmup_mask"] = c.sparse_warmup_mask;
  j["sparse_warmup_density"] = c.sparse_warmup_density;
  return j.dump(2);
}

ModditConfig load_moddit_config(const std::string& path) {
  const std::string text = read_input_file(path, "config file");
  try {
    return moddit_config_from_json(text);
  } catch (const Error& e) {
    throw Error("config file '" + path + "': " + e.what());
  }
}

}  // namespace moddit
