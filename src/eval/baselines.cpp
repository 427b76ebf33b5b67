#include "eval/baselines.hpp"

#include "core/video_mask.hpp"
#include "eval/metrics.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace eval {

namespace {
Plan sparse_plan(BlockLayout layout, int heads, const std::string& label) {
  Plan p;
  p.kind = CallKind::Sparse;
  HeadGroup g;
  for (int h = 0; h < heads; ++h) g.heads.push_back(h);
  g.layout = std::move(layout);
  g.label = label;
  p.groups.push_back(std::move(g));
  return p;
}

void check_target(double target, const char* who) {
  MODDIT_CHECK(target >= 0.0 && target <= 1.0, who, ": target density must be in [0, 1], got ",
               target);
}
}  // namespace

StaticMaskPolicy::StaticMaskPolicy(core::StaticMaskKind kind, double target_density, int warmup_steps)
    : kind_(kind), warmup_(warmup_steps), layout_(kind, target_density) {
  check_target(target_density, "static mask policy");
}

std::string StaticMaskPolicy::name() const {
  return kind_ == core::StaticMaskKind::Window ? "window" : "radial";
}

Plan StaticMaskPolicy::plan(const CallInfo& call) {
  if (call.step < warmup_) return dense_plan(call.num_heads);
  MODDIT_CHECK(call.grid && call.tokens, name(), ": call has no grid or token layout");
  return sparse_plan(layout_.layout(call), call.num_heads, name());
}

OraclePolicy::OraclePolicy(double target_density, int warmup_steps)
    : target_(target_density), warmup_(warmup_steps) {
  check_target(target_density, "oracle policy");
}

Plan OraclePolicy::plan(const CallInfo& call) {
  if (call.step < warmup_) return dense_plan(call.num_heads);
  MODDIT_CHECK(stats_ && stats_->step == call.step && stats_->layer == call.layer,
               "oracle: no dense block mass for step ", call.step, " layer ", call.layer,
               " (set_dense_stats must be called before each call)");
  MODDIT_CHECK(stats_->batch == call.batch && stats_->heads == call.num_heads &&
                   stats_->n == call.grid->num_video_blocks,
               "oracle: dense block mass has a different shape than the call");
  const int n = call.grid->num_video_blocks;
  const size_t nn = static_cast<size_t>(n) * n;
  std::vector<uint8_t> masks(nn * call.batch * call.num_heads);
  for (int b = 0; b < call.batch; ++b)
    for (int h = 0; h < call.num_heads; ++h) {
      const std::vector<uint8_t> m = oracle_video_mask(stats_->mass_of(b, h), *call.grid, target_);
      std::copy(m.begin(), m.end(), masks.begin() + (static_cast<size_t>(b) * call.num_heads + h) * nn);
    }
  return sparse_plan(core::layout_from_video_masks(masks, *call.grid, call.batch, call.num_heads),
                     call.num_heads, "oracle");
}

}  // namespace eval
}  // namespace moddit
