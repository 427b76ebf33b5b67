#pragma once
// The controller a model integration talks to. It is told the denoising step,
// is called per layer with Q/K/V, asks its policy what to run, runs the backend
// and writes the output. State slots follow the caller: batch item b of the
// k-th call to a layer within one step uses slot (sum of earlier batch sizes) + b,
// so CFG as batch 2 and CFG as two calls both keep their own state.
#include <memory>
#include <string>
#include <vector>

#include "moddit/backend.hpp"
#include "moddit/policy.hpp"

namespace moddit {

struct SessionOptions {
  int num_steps = 50;
  int num_layers = 1;
  int num_heads = 1;
  int head_dim = 128;
  int block_size = 128;
  // No eta here: the map's threshold is the policy's (Plan::map_eta; MOD-DiT's is
  // ModditConfig::eta), so that it has one source.
  // The precision of calls whose policy leaves it open (Plan::precision unset:
  // dense, sparse_vdit); MOD-DiT takes its config's precision / warmup_precision.
  Precision precision = Precision::Exact;
  // Wait for the backend after every call so that CallRecord::seconds is the
  // call's run time. Off: on a GPU backend `seconds` is the time to queue the work
  // (the CPU backend is synchronous either way).
  bool synchronize_calls = false;
};

struct CallRecord {
  int step = 0, layer = 0, slot_begin = 0, batch = 0;
  CallKind kind = CallKind::Dense;
  double density = 1.0;     // video x video density actually computed (mean over batch, heads)
  int launches = 0;
  double seconds = 0.0;     // wall time of the backend work (see SessionOptions::synchronize_calls)
  double overhead_seconds = 0.0;  // policy work (plan + observe)
};

class Session {
 public:
  Session(const TokenLayout& tokens, const SessionOptions& options,
          std::shared_ptr<Backend> backend, std::shared_ptr<Policy> policy);

  void begin_step(int step);
  // out must not alias q/k/v. slot_begin < 0: automatic (see above).
  void attention(int layer, const TensorView& q, const TensorView& k, const TensorView& v,
                 const TensorView& out, int slot_begin = -1);

  const TokenLayout& tokens() const { return tokens_; }
  const BlockGrid& grid() const { return grid_; }
  const SessionOptions& options() const { return options_; }
  Policy& policy() { return *policy_; }
  Backend& backend() { return *backend_; }
  // Every call so far. Waits for the backend first when a device policy's
  // densities are pending (they are known once the GPU has built the layouts).
  const std::vector<CallRecord>& history() const;
  // The same without waiting: a pending density is NaN here.
  const std::vector<CallRecord>& history_now() const { return history_; }
  size_t history_size() const { return history_.size(); }
  // Whether the policy would run `layer`'s next call (batch items from
  // slot_begin; < 0: automatic) as plain dense attention with no map and no state
  // change (Policy::plain_dense); the caller may then skip the call and run its
  // own dense attention.
  bool plain_dense(int layer, int batch, int slot_begin = -1) const;
  // The policy's plan for `layer`'s next call, which the caller runs itself
  // (ring attention runs it chunk by chunk): the slots advance as in
  // attention(); nothing is run, observed or added to the history. Device
  // layouts come back as host layouts (downloaded: waits for the backend).
  // Refuses a plan that records the map (the caller cannot give the map back).
  Plan plan_call(int layer, int batch, int slot_begin = -1);

 private:
  CallInfo call_info(int layer, int batch, int slot) const;

  TokenLayout tokens_;
  SessionOptions options_;
  BlockGrid grid_;
  std::shared_ptr<Backend> backend_;
  std::shared_ptr<Policy> policy_;
  int step_ = 0;
  std::vector<int> slots_used_;  // per layer, within the current step
  mutable std::vector<CallRecord> history_;
  // Calls whose density a device layout reports after the next synchronisation.
  struct PendingDensity {
    struct Part {
      std::shared_ptr<const float> density;  // not the layout: its buffers go at once
      int heads = 0;
    };
    size_t record = 0;
    double known_sum = 0.0;  // the groups with host layouts or none
    int heads = 0;
    std::vector<Part> parts;
  };
  mutable std::vector<PendingDensity> pending_;
  std::vector<int32_t> map_host_;
};

}  // namespace moddit
