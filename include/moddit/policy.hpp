#pragma once
// A policy decides, per attention call, what the backend computes: which heads,
// with which block layout, and whether the exact sparsity map is recorded. The
// Session (session.hpp) runs the plan; MOD-DiT, Sparse-vDiT and the evaluation
// baselines are policies.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moddit/backend.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/config.hpp"
#include "moddit/token_layout.hpp"

namespace moddit {

struct CallInfo {
  int step = 0;        // denoising step, 0-based
  int num_steps = 0;   // schedule length T
  int layer = 0;
  int slot_begin = 0;  // state slot of batch item 0 (CFG branch / batch item)
  int batch = 0;
  int num_heads = 0;
  int head_dim = 0;
  const TokenLayout* tokens = nullptr;
  const BlockGrid* grid = nullptr;
  // The backend the plan will run on: a policy may keep its state and do its
  // work there (ModditPolicy does on a GPU). Null when driven without a Session.
  Backend* backend = nullptr;
};

// One launch: a set of heads and the layout they share (none = dense).
struct HeadGroup {
  std::vector<int32_t> heads;        // ascending head indices
  std::optional<BlockLayout> layout; // over (batch, heads.size()); nullopt = dense
  std::string label;                 // "dense", "sparse", "diagonal", ...
  // Or a layout already on the backend's device (then `layout` is empty).
  std::shared_ptr<const DeviceLayout> device_layout;
};

enum class CallKind : int32_t { Dense = 0, Record = 1, Sparse = 2, Refresh = 3 };
const char* to_string(CallKind);

struct Plan {
  CallKind kind = CallKind::Dense;
  std::vector<HeadGroup> groups;  // heads in no group are skipped: output zeros, no launch
  bool record_map = false;        // the backend writes map counts for observe()
  // The map's threshold (a pair counts when its probability P < map_eta, paper
  // Eq. 2), chosen by the policy that asks for the map: ModditPolicy sets its
  // ModditConfig::eta. The default is MOD-DiT's default eta (read from
  // ModditConfig, its one source).
  float map_eta = static_cast<float>(ModditConfig{}.eta);
  // What the map holds (attention_params.hpp: Eq. 2 counts, or the block's mass
  // in the same units); ModditPolicy sets its ModditConfig::map_statistic.
  MapStatistic map_statistic = MapStatistic::Eq2;
  // observe() gets the counts where the backend wrote them (device memory, in
  // stream order, no host copy and no wait) instead of a host copy.
  bool map_on_device = false;
  // The precision of every launch of the plan (attention_params.hpp); unset:
  // the Session's SessionOptions::precision.
  std::optional<Precision> precision;
};

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string name() const = 0;
  virtual Plan plan(const CallInfo& call) = 0;
  // After the plan ran. `map_counts` is [batch, heads, n, n] with -1 where a
  // block was not computed, in host memory (device memory when
  // plan.map_on_device); null unless plan.record_map.
  virtual void observe(const CallInfo& call, const Plan& plan, const int32_t* map_counts) {}
  // True when plan(call) would run every head densely and exactly, record no
  // map and change no state: a caller may then run its own dense attention instead (the
  // diffusers adapter runs the model's SDPA, i.e. cuDNN or FlashAttention, for
  // MOD-DiT's warm-up steps). False unless a policy knows better.
  virtual bool plain_dense(const CallInfo& call) const { return false; }
};

// A plan that runs every head densely in one launch.
Plan dense_plan(int num_heads, bool record_map = false);

// Every head dense on every call, in one launch: the reference (the evaluation's
// "dense" policy, the Python module's DensePolicy).
class DensePolicy : public Policy {
 public:
  std::string name() const override { return "dense"; }
  Plan plan(const CallInfo& call) override { return dense_plan(call.num_heads); }
};

}  // namespace moddit
