#pragma once
// The readers under fuzzing, one function per input format. Each feeds one input
// to the reader as a user's file would reach it, then, when the reader accepts
// it, uses the result the way moddit's own consumers do and checks what an
// accepted input promises (sizes that did not overflow, a data section covered
// exactly, numbers read as written). The libFuzzer harnesses (fuzz_entry.cpp)
// and the regression tests (tests/io/test_fuzz_inputs.cpp) both call these.
//
// Returns true when the reader accepted the input, false when it refused it
// with moddit::Error (the one error type for bad input). Anything else escapes:
// another exception type (an unexplained message), a `Finding` (an accepted
// input that breaks a promise), or a sanitizer report.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace moddit::fuzz {

// An accepted input that breaks what the reader promises.
struct Finding : std::logic_error {
  using std::logic_error::logic_error;
};

// A trajectory file (safetensors): open_trajectory, every (step, layer) loaded,
// the block grid, `moddit inspect`'s summary.
bool trajectory(const uint8_t* data, size_t size);
// A MOD-DiT config (JSON, docs/CONFIG.md).
bool moddit_config(const uint8_t* data, size_t size);
// A Sparse-vDiT config (JSON, docs/SPARSE_VDIT.md).
bool vdit_config(const uint8_t* data, size_t size);
// An eval report.json as `moddit inspect` reads it.
bool report(const uint8_t* data, size_t size);

}  // namespace moddit::fuzz
