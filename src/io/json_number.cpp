#include "io/json_number.hpp"

#include <cmath>

#include "moddit/error.hpp"

namespace moddit {

int64_t json_int(const nlohmann::json& v, const std::string& key, int64_t min, int64_t max) {
  MODDIT_CHECK(v.is_number_integer(), key, " must be an integer, got ", v.dump());
  // Unsigned values above INT64_MAX are stored unsigned: never cast them.
  MODDIT_CHECK(!v.is_number_unsigned() ||
                   v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
               key, " = ", v.dump(), " is out of range [", min, ", ", max, "]");
  const int64_t x = v.get<int64_t>();
  MODDIT_CHECK(x >= min && x <= max, key, " = ", x, " is out of range [", min, ", ", max, "]");
  return x;
}

int json_int32(const nlohmann::json& v, const std::string& key, int min, int max) {
  return static_cast<int>(json_int(v, key, min, max));
}

std::vector<int> json_int_list(const nlohmann::json& v, const std::string& key, int min, int max) {
  MODDIT_CHECK(v.is_array(), key, " must be an array of integers, got ", v.dump());
  std::vector<int> out;
  out.reserve(v.size());
  for (const nlohmann::json& e : v) out.push_back(json_int32(e, key, min, max));
  return out;
}

double json_real(const nlohmann::json& v, const std::string& key) {
  MODDIT_CHECK(v.is_number(), key, " must be a number, got ", v.dump());
  const double x = v.get<double>();
  MODDIT_CHECK(std::isfinite(x), key, " must be finite, got ", v.dump());
  return x;
}

std::string json_string(const nlohmann::json& v, const std::string& key) {
  MODDIT_CHECK(v.is_string(), key, " must be a string, got ", v.dump());
  return v.get<std::string>();
}

}  // namespace moddit
