# MODDIT_FUZZ=ON: every C/C++ object gets libFuzzer's coverage instrumentation
# and ASan/UBSan, so the harnesses of tests/fuzz see moddit's own branches and
# any memory or undefined-behaviour error stops the run. clang only.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "MODDIT_FUZZ=ON needs clang (libFuzzer), not ${CMAKE_CXX_COMPILER_ID}: "
          "configure with -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "
          "(Debian packages clang and libclang-rt-dev: scripts/bootstrap.sh --fuzz)")
endif()
include(CheckCXXSourceCompiles)
set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer,address,undefined")
set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=fuzzer,address,undefined")
check_cxx_source_compiles([[
#include <cstddef>
#include <cstdint>
extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }
]] MODDIT_HAVE_LIBFUZZER)
unset(CMAKE_REQUIRED_FLAGS)
unset(CMAKE_REQUIRED_LINK_OPTIONS)
if(NOT MODDIT_HAVE_LIBFUZZER)
  message(FATAL_ERROR "MODDIT_FUZZ=ON: ${CMAKE_CXX_COMPILER} cannot link -fsanitize=fuzzer,address,undefined "
          "(Debian package libclang-rt-dev: scripts/bootstrap.sh --fuzz)")
endif()
set(_fuzz_flags -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
    -fno-sanitize-recover=undefined)
add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:${_fuzz_flags}>")
add_link_options(-fsanitize=address,undefined)
