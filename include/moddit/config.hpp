#pragma once
// Every MOD-DiT parameter, with its default. JSON keys are the field names;
// unknown keys and out-of-range values are refused with a message naming the key.
// docs/CONFIG.md documents each key.
#include <string>
#include <vector>

namespace moddit {

struct ModditConfig {
  int block_size = 128;          // 64 or 128
  double eta = 1e-3;             // sparsity threshold of Eq. 2, > 0 (default chosen on moddit-tiny: docs/CONFIG.md)
  // What the map pass measures per block (attention_params.hpp MapStatistic):
  // "eq2" (the paper's count of P < eta) or "mass" (the block's share of its
  // rows' mass, in Eq. 2's units; sees attention sinks). docs/CONFIG.md.
  std::string map_statistic = "eq2";
  double ridge_lambda = 1e-3;    // ridge of the fit (MtM + lambda I), >= 0 (chosen by eval: docs/CONFIG.md)
  int warmup_steps = 12;         // m: steps < m are dense; m-2 and m-1 record the map
  int interval = 10;             // delta t between refresh steps
  int top_k = 0;                 // K lines kept per head; 0 = derive from target_density
  double target_density = 0.15;  // used when top_k == 0: smallest K whose mask reaches it
  double tau_e = -0.2;           // keep frame block-diagonal f iff e_f <= tau_e at both references (why not moddit-tiny's 1.0: docs/CONFIG.md)
  std::string refresh = "masked";  // "masked" (paper 5.1) or "dense" (official code)
  std::vector<int> dense_layers;   // layers always computed densely
  // Run the MOD-DiT step (map fusion, fit, prediction, masks, layout) on the
  // backend's GPU when it has one; false keeps it on the host. ridge_lambda = 0
  // (the pseudo-inverse reference) always runs on the host.
  bool device_step = true;
  // Precision (attention_params.hpp) of the record, sparse and refresh calls
  // (their map passes included), and of the plain dense calls (the warm-up
  // steps before the first record, dense_layers): "exact" or "fp8".
  std::string precision = "exact";
  std::string warmup_precision = "exact";
  // Sparse warm-up: the first sparse_warmup_steps steps (0 .. warmup_steps-2)
  // run a static mask instead of dense attention; the record steps m-2, m-1 stay
  // dense. 0 (off) keeps the paper's dense warm-up. The mask is "radial" or
  // "window" (core/static_masks.hpp) at sparse_warmup_density, in (0, 1], the
  // token-pair weighted video x video density. docs/CONFIG.md.
  int sparse_warmup_steps = 0;
  std::string sparse_warmup_mask = "radial";
  double sparse_warmup_density = 0.30;

  // Throws moddit::Error naming the offending key.
  void validate() const;
};

ModditConfig moddit_config_from_json(const std::string& json_text);  // unknown keys refused
std::string moddit_config_to_json(const ModditConfig& config);
ModditConfig load_moddit_config(const std::string& path);  // errors name the file

}  // namespace moddit
