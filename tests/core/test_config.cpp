// ModditConfig JSON: round trip, defaults, and one error per bad key.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "moddit/config.hpp"
#include "moddit/error.hpp"

using namespace moddit;

namespace {
void expect_error(const std::string& json, const std::string& needle) {
  try {
    moddit_config_from_json(json);
    ADD_FAILURE() << "accepted " << json;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << json << " -> " << e.what();
  }
}
}  // namespace

TEST(ModditConfig, RoundTripsEveryField) {
  ModditConfig c;
  c.block_size = 64;
  c.eta = 1.5e-4;
  c.ridge_lambda = 0.0371;
  c.warmup_steps = 9;
  c.interval = 7;
  c.top_k = 123;
  c.target_density = 0.2137;
  c.tau_e = -0.075;
  c.refresh = "dense";
  c.map_statistic = "mass";
  c.dense_layers = {0, 5};
  c.device_step = false;
  c.precision = "fp8";
  c.warmup_precision = "fp8";
  c.sparse_warmup_steps = 5;
  c.sparse_warmup_mask = "window";
  c.sparse_warmup_density = 0.4375;
  const ModditConfig r = moddit_config_from_json(moddit_config_to_json(c));
  EXPECT_EQ(r.block_size, c.block_size);
  EXPECT_EQ(r.eta, c.eta);
  EXPECT_EQ(r.ridge_lambda, c.ridge_lambda);
  EXPECT_EQ(r.warmup_steps, c.warmup_steps);
  EXPECT_EQ(r.interval, c.interval);
  EXPECT_EQ(r.top_k, c.top_k);
  EXPECT_EQ(r.target_density, c.target_density);
  EXPECT_EQ(r.tau_e, c.tau_e);
  EXPECT_EQ(r.refresh, c.refresh);
  EXPECT_EQ(r.map_statistic, c.map_statistic);
  EXPECT_EQ(r.dense_layers, c.dense_layers);
  EXPECT_EQ(r.device_step, c.device_step);
  EXPECT_EQ(r.precision, c.precision);
  EXPECT_EQ(r.warmup_precision, c.warmup_precision);
  EXPECT_EQ(r.sparse_warmup_steps, c.sparse_warmup_steps);
  EXPECT_EQ(r.sparse_warmup_mask, c.sparse_warmup_mask);
  EXPECT_EQ(r.sparse_warmup_density, c.sparse_warmup_density);
  // An empty object gives the defaults; a partial one overrides only its keys.
  const ModditConfig d = moddit_config_from_json("{}");
  EXPECT_EQ(moddit_config_to_json(d), moddit_config_to_json(ModditConfig{}));
  EXPECT_EQ(moddit_config_from_json(R"({"eta": 2e-4})").eta, 2e-4);
  EXPECT_EQ(moddit_config_from_json(R"({"eta": 1})").eta, 1.0);  // integers are numbers
}

TEST(ModditConfig, RejectsEveryBadKeyByName) {
  expect_error(R"({"warmup": 3})", "warmup");  // unknown key
  expect_error(R"({"eta": 0})", "eta");
  expect_error(R"({"eta": -1e-4})", "eta");
  expect_error(R"({"eta": "small"})", "eta");
  expect_error(R"({"refresh": "sometimes"})", "refresh");
  expect_error(R"({"refresh": 1})", "refresh");
  expect_error(R"({"map_statistic": "max"})", "map_statistic");
  expect_error(R"({"map_statistic": 2})", "map_statistic");
  expect_error(R"({"warmup_steps": 1})", "warmup_steps");
  expect_error(R"({"warmup_steps": 12.5})", "warmup_steps");
  expect_error(R"({"interval": 0})", "interval");
  expect_error(R"({"target_density": 0})", "target_density");
  expect_error(R"({"target_density": 1.5})", "target_density");
  expect_error(R"({"block_size": 96})", "block_size");
  expect_error(R"({"block_size": "128"})", "block_size");
  expect_error(R"({"ridge_lambda": -1})", "ridge_lambda");
  expect_error(R"({"top_k": -2})", "top_k");
  expect_error(R"({"top_k": true})", "top_k");
  expect_error(R"({"tau_e": null})", "tau_e");
  expect_error(R"({"dense_layers": 0})", "dense_layers");
  expect_error(R"({"dense_layers": [0, "1"]})", "dense_layers");
  expect_error(R"({"dense_layers": [-1]})", "dense_layers");
  expect_error(R"({"device_step": 1})", "device_step");
  expect_error(R"({"precision": "int8"})", "precision");
  expect_error(R"({"precision": 8})", "precision");
  expect_error(R"({"warmup_precision": "bf16"})", "warmup_precision");
  expect_error(R"([1, 2])", "object");
  expect_error(R"({"eta": )", "JSON");
}

// Found by fuzzing (tests/fuzz/regressions/moddit_config/): a number beyond a
// double's range made the JSON parser throw its own out_of_range exception.
TEST(ModditConfig, RefusesANumberBeyondTheRangeOfADouble) {
  expect_error(R"({"eta": 1e999})", "number overflow");
  expect_error(R"({"unknown": -177777E7777777776777})", "number overflow");
}

TEST(ModditConfig, LoadNamesTheFile) {
  const std::string path = ::testing::TempDir() + "moddit_core_config_test.json";
  {
    std::ofstream f(path);
    f << R"({"top_k": 77, "refresh": "dense"})";
  }
  const ModditConfig c = load_moddit_config(path);
  EXPECT_EQ(c.top_k, 77);
  EXPECT_EQ(c.refresh, "dense");
  {
    std::ofstream f(path);
    f << R"({"interval": 0})";
  }
  try {
    load_moddit_config(path);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    EXPECT_NE(m.find("interval"), std::string::npos) << m;
  }
  std::remove(path.c_str());
  try {
    load_moddit_config(path);
    ADD_FAILURE() << "accepted a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(ModditConfig, SparseWarmupDefaultsOffAndRefusesBadValues) {
  const ModditConfig d;
  EXPECT_EQ(d.sparse_warmup_steps, 0);  // off: the paper's dense warm-up
  EXPECT_EQ(d.sparse_warmup_mask, "radial");
  EXPECT_EQ(d.sparse_warmup_density, 0.30);
  // Up to warmup_steps - 2: the record steps m-2, m-1 stay dense.
  EXPECT_EQ(moddit_config_from_json(R"({"sparse_warmup_steps": 10})").sparse_warmup_steps, 10);
  EXPECT_EQ(moddit_config_from_json(R"({"warmup_steps": 4, "sparse_warmup_steps": 2})")
                .sparse_warmup_steps, 2);
  expect_error(R"({"sparse_warmup_steps": 11})", "sparse_warmup_steps");
  expect_error(R"({"warmup_steps": 4, "sparse_warmup_steps": 3})", "sparse_warmup_steps");
  expect_error(R"({"sparse_warmup_steps": -1})", "sparse_warmup_steps");
  expect_error(R"({"sparse_warmup_steps": 1.5})", "sparse_warmup_steps");
  expect_error(R"({"sparse_warmup_mask": "oracle"})", "sparse_warmup_mask");
  expect_error(R"({"sparse_warmup_mask": 1})", "sparse_warmup_mask");
  expect_error(R"({"sparse_warmup_density": 0})", "sparse_warmup_density");
  expect_error(R"({"sparse_warmup_density": 1.01})", "sparse_warmup_density");
  expect_error(R"({"sparse_warmup_density": "0.3"})", "sparse_warmup_density");
  EXPECT_EQ(moddit_config_from_json(R"({"sparse_warmup_density": 1})").sparse_warmup_density, 1.0);
}
