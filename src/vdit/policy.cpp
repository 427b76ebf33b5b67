// SparseVditPolicy: runs a searched config, one launch per mode group (head
// fusion); skipped heads are in no group, so they are never launched and the
// Session writes zeros for them.
#include <algorithm>

#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"

namespace moddit {

bool SparseVditPolicy::CacheKey::operator<(const CacheKey& o) const {
  if (step_index != o.step_index) return step_index < o.step_index;
  if (layer != o.layer) return layer < o.layer;
  return batch < o.batch;
}

SparseVditPolicy::SparseVditPolicy(VditConfig config) : config_(std::move(config)) {
  config_.validate();
}

Plan SparseVditPolicy::plan(const CallInfo& call) {
  MODDIT_CHECK(call.tokens != nullptr && call.grid != nullptr,
               "sparse_vdit: the call has no token layout / block grid");
  config_.check_matches(*call.tokens, call.grid->block_size, call.num_heads, call.head_dim,
                        call.num_steps);
  // Cache per searched step: steps between two searched ones share its plan
  // (index -1: before the first searched step, all full).
  const auto it = std::upper_bound(config_.steps.begin(), config_.steps.end(), call.step);
  const int step_index = int(it - config_.steps.begin()) - 1;
  const CacheKey key{step_index, call.layer, call.batch};
  auto hit = cache_.find(key);
  if (hit != cache_.end()) return hit->second;

  const std::vector<VditHeadChoice> heads = config_.layer_choices(call.step, call.layer);
  Plan plan;
  bool all_full = true;
  // Group order: full first, then the sparse modes; skip has no group.
  const VditMode order[] = {VditMode::Full, VditMode::Diagonal, VditMode::MultiDiagonal,
                            VditMode::VerticalStripe};
  for (VditMode mode : order) {
    HeadGroup g;
    g.label = to_string(mode);
    std::vector<const VditHeadChoice*> choices;
    for (int h = 0; h < call.num_heads; ++h)
      if (heads[size_t(h)].mode == mode) {
        g.heads.push_back(h);
        choices.push_back(&heads[size_t(h)]);
      }
    if (g.heads.empty()) continue;
    if (mode != VditMode::Full)
      g.layout = vdit_group_layout(choices, call.batch, *call.tokens, *call.grid);
    plan.groups.push_back(std::move(g));
  }
  for (const VditHeadChoice& c : heads) all_full = all_full && c.mode == VditMode::Full;
  plan.kind = all_full ? CallKind::Dense : CallKind::Sparse;
  plan.record_map = false;
  cache_.emplace(key, plan);
  return plan;
}

std::shared_ptr<Policy> make_sparse_vdit_policy(VditConfig config) {
  return std::make_shared<SparseVditPolicy>(std::move(config));
}

}  // namespace moddit
