#pragma once
// The evaluation's reference policies (DESIGN.md 6), each a moddit::Policy so that
// they run through a Session exactly like MOD-DiT: dense before `warmup_steps`
// (MOD-DiT's warm-up, so that every policy is sparse on the same steps), then a
// block layout at the target video density. Text rows and columns stay dense and
// the diagonal block of every row is always kept.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "eval/dense_stats.hpp"
#include "core/static_mask_layout.hpp"
#include "moddit/policy.hpp"

namespace moddit {
namespace eval {

// A static mask (sliding 3D window or radial decay), the same for every head,
// layer and step; built once per grid.
class StaticMaskPolicy : public Policy {
 public:
  StaticMaskPolicy(core::StaticMaskKind kind, double target_density, int warmup_steps);
  std::string name() const override;
  Plan plan(const CallInfo& call) override;
  // The n x n mask of the last grid planned for (empty before the first sparse call).
  const std::vector<uint8_t>& video_mask() const { return layout_.video_mask(); }

 private:
  core::StaticMaskKind kind_;
  int warmup_;
  core::StaticMaskLayout layout_;  // built once per call shape
};

// The oracle: per (batch item, head) the key blocks with the most dense mass
// (oracle_video_mask). Needs the dense block mass of the call it plans, given by
// set_dense_stats() before each call; plan() refuses a stale one.
class OraclePolicy : public Policy {
 public:
  OraclePolicy(double target_density, int warmup_steps);
  std::string name() const override { return "oracle"; }
  Plan plan(const CallInfo& call) override;
  void set_dense_stats(const DenseBlockStats* stats) { stats_ = stats; }

 private:
  double target_;
  int warmup_;
  const DenseBlockStats* stats_ = nullptr;
};

// Forwards to another policy and keeps a copy of the last plan, so that the
// evaluation can measure the masks a policy actually ran.
class RecordingPolicy : public Policy {
 public:
  explicit RecordingPolicy(std::shared_ptr<Policy> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return inner_->name(); }
  Plan plan(const CallInfo& call) override {
    last_ = inner_->plan(call);
    return last_;
  }
  void observe(const CallInfo& call, const Plan& plan, const int32_t* map_counts) override {
    inner_->observe(call, plan, map_counts);
  }
  const Plan& last_plan() const { return last_; }
  Policy& inner() { return *inner_; }

 private:
  std::shared_ptr<Policy> inner_;
  Plan last_;
};


}  // namespace eval
}  // namespace moddit
