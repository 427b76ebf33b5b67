#pragma once
// A backend's attention output against the CPU reference on a sample, for
// benchmarks that must check what they time (`moddit bench`): a full fp32
// reference at video-DiT sizes costs minutes, the first, middle and last query
// blocks of the first and last head cost a second and meet every kind of row
// (first and last blocks, partial blocks, text rows).
#include "moddit/backend.hpp"

namespace moddit {
namespace eval {

// The relative L2 error of `call`'s output (already computed on `backend`, read
// back through copy_to_host) against the fp32 CPU backend on the same inputs,
// over the sampled rows of batch item 0. Whole-sequence calls of any dtype and
// strides, with or without a layout or a head subset. Throws moddit::Error on a
// call it cannot check (a chunk call).
double sampled_output_error(Backend& backend, const AttentionCall& call);

// The bound a correct kernel of `dtype` meets: one unit roundoff of the dtype
// (bf16 2^-8, f16 2^-11, f32 2^-24 times a summation allowance). Rounding P and
// the output to the dtype gives errors well below it; a missing or extra block,
// or a wrong row, errors far above it.
double output_error_bound(DType dtype);

}  // namespace eval
}  // namespace moddit
