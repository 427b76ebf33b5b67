#pragma once
// MOD-DiT as a Policy (DESIGN.md 2): dense warm-up, two recorded reference fits,
// per-step linear prediction of the line intensities, Top-K + frame
// block-diagonal + diagonal masks, refresh steps with temporal fusion.
// On a Session with the CUDA backend the whole step runs on the GPU (state,
// fusion, fit, prediction, masks and layout; no host round trip per call) unless
// config.device_step is false; elsewhere it runs on the host. Both give the same
// masks for the same maps (tests/gpu/test_cuda_moddit_step.cpp). GPU state stays
// bound to the backend it was made on: a call through another backend (another
// device or instance) is refused; use one policy per backend. The map threshold
// is config.eta (the plans carry it: Plan::map_eta).
#include <cstdint>
#include <memory>
#include <vector>

#include "moddit/config.hpp"
#include "moddit/tensor.hpp"
#include "moddit/policy.hpp"

namespace moddit {

struct FitRecord {
  int step = 0, layer = 0, slot = 0, head = 0;
  double nae = 0.0;
};

class ModditPolicy : public Policy {
 public:
  ModditPolicy(const ModditConfig& config, int num_layers, int num_heads);
  ~ModditPolicy() override;
  std::string name() const override { return "moddit"; }
  Plan plan(const CallInfo& call) override;
  void observe(const CallInfo& call, const Plan& plan, const int32_t* map_counts) override;
  // Dense layers and the dense warm-up steps (before the first record), but not
  // the sparse warm-up's static-mask steps (step < sparse_warmup_steps).
  bool plain_dense(const CallInfo& call) const override;
  // What a call of `layer` at `step` is: Dense (warm-up, dense layers), Record,
  // Sparse or Refresh. The sparse warm-up's steps are Dense too (no map, no
  // state; their plan's group is labelled "static"). Sequence-parallel drivers pick how to run a call by it.
  CallKind kind_of(int step, int layer) const;

  const ModditConfig& config() const;
  // Diagnostics for pictures and reports (empty vectors before the first fit):
  // the fused map S^ (n x n), the fitted map M X of the latest fit, the latest
  // video mask (n x n, 1 = live).
  std::vector<float> fused_map(int layer, int slot, int head) const;
  std::vector<float> fitted_map(int layer, int slot, int head) const;
  std::vector<uint8_t> video_mask(int layer, int slot, int head) const;
  const std::vector<FitRecord>& fits() const;
  // Bytes of state held (maps, intensities, masks), on state_device().
  int64_t state_bytes() const;
  // Where the state lives: decided by the first record or sparse call.
  Device state_device() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moddit
