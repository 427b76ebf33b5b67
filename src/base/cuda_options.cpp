// The MODDIT_CUDA_* environment variables as CudaOptions, for programs that let
// the environment pick the CUDA backend's switches (the backend itself reads none).
// Built without CUDA too: a bad value is refused the same way everywhere.
#include <cstdlib>
#include <string>

#include "moddit/backend.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace {

// The variable's value as the option: `fallback` when unset or empty, true for
// `on`, false for `off`, an error naming the variable otherwise.
bool switch_from(const char* name, const char* off, const char* on, bool fallback) {
  const char* e = std::getenv(name);
  if (!e || !*e) return fallback;
  const std::string v(e);
  MODDIT_CHECK(v == on || v == off, name, "='", v, "' is not one of ", off, ", ", on,
               " (or unset)");
  return v == on;
}

}  // namespace

CudaOptions cuda_options_from_environment() {
  CudaOptions o;
  o.portable_kernel = switch_from("MODDIT_CUDA_KERNEL", "auto", "sm80", o.portable_kernel);
  o.group_rows_by_head = switch_from("MODDIT_CUDA_ORDER", "lpt", "grouped", o.group_rows_by_head);
  o.map_count_by_compare = switch_from("MODDIT_CUDA_MAP_COUNT", "auto", "compare", o.map_count_by_compare);
  return o;
}

}  // namespace moddit
