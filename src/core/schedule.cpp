#include "core/schedule.hpp"

#include "moddit/error.hpp"

namespace moddit {
namespace core {

CallKind schedule_kind(int step, int m, int dt) {
  MODDIT_CHECK(step >= 0, "schedule: negative step ", step);
  MODDIT_CHECK(m >= 2 && dt >= 1, "schedule: warmup_steps must be >= 2 and interval >= 1");
  if (step < m - 2) return CallKind::Dense;
  if (step < m) return CallKind::Record;
  if (step > m && (step - m) % dt == 0) return CallKind::Refresh;
  return CallKind::Sparse;
}

}  // namespace core
}  // namespace moddit
