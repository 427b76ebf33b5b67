#pragma once
// The one strict reader of numbers in moddit's JSON files (the MOD-DiT and the
// Sparse-vDiT config): an integer must be written as an integer (no fraction, no
// exponent, no string) and lie in the range its field allows, so that no value
// wraps (2^40 read as 0) or truncates (1.9 read as 1); a real must be a finite
// number. Errors name the key; the caller adds the file.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moddit {

int64_t json_int(const nlohmann::json& v, const std::string& key,
                 int64_t min = std::numeric_limits<int32_t>::min(),
                 int64_t max = std::numeric_limits<int32_t>::max());
// json_int narrowed to int (the range must lie within int's).
int json_int32(const nlohmann::json& v, const std::string& key,
               int min = std::numeric_limits<int32_t>::min(),
               int max = std::numeric_limits<int32_t>::max());
// An array of integers, each in [min, max].
std::vector<int> json_int_list(const nlohmann::json& v, const std::string& key,
                               int min = std::numeric_limits<int32_t>::min(),
                               int max = std::numeric_limits<int32_t>::max());
double json_real(const nlohmann::json& v, const std::string& key);
std::string json_string(const nlohmann::json& v, const std::string& key);

}  // namespace moddit
