// The libFuzzer entry point of one harness: MODDIT_FUZZ_TARGET names the
// function of fuzz_targets.hpp it feeds (tests/fuzz/CMakeLists.txt builds one
// executable per target).
#include "fuzz/fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moddit::fuzz::MODDIT_FUZZ_TARGET(data, size);
  return 0;
}
