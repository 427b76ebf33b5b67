#pragma once
// One error type for every bad input: the message names the problem (shape,
// dtype, layout, stride, config key, file) in one line.
#include <sstream>
#include <stdexcept>
#include <string>

namespace moddit {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace moddit

// MODDIT_CHECK(cond, "message parts", value, ...) throws moddit::Error.
#define MODDIT_CHECK(cond, ...)                                          \
  do {                                                                   \
    if (!(cond)) throw ::moddit::Error(::moddit::detail::concat(__VA_ARGS__)); \
  } while (0)
