#pragma once
// The assertion of every bad-input test: `fn` throws moddit::Error and its
// one-line message names the problem (contains `needle`).
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "moddit/error.hpp"

namespace moddit::test {

inline void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error (expected one naming '" << needle << "')";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace moddit::test
