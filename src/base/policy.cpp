#include "moddit/policy.hpp"

namespace moddit {

const char* to_string(CallKind k) {
  switch (k) {
    case CallKind::Dense: return "dense";
    case CallKind::Record: return "record";
    case CallKind::Sparse: return "sparse";
    case CallKind::Refresh: return "refresh";
  }
  return "?";
}

Plan dense_plan(int num_heads, bool record_map) {
  Plan p;
  p.kind = record_map ? CallKind::Record : CallKind::Dense;
  p.record_map = record_map;
  HeadGroup g;
  g.label = "dense";
  for (int h = 0; h < num_heads; ++h) g.heads.push_back(h);
  p.groups.push_back(std::move(g));
  return p;
}

}  // namespace moddit
