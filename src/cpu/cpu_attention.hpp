#pragma once
// The fp32 CPU attention kernel: the reference every backend is checked against.
// Framework-free: it sees only AttentionParams (host pointers), already
// validated by prepare_params().
//
// Semantics (attention_params.hpp, mask_policy.hpp): for every batch item b,
// selected head s and query block qb, each query row attends to the real (not
// padding) keys of the live key blocks of its layout row (all blocks when the
// layout is null). out = softmax(scaled scores) . V in the tensor's dtype,
// lse = natural-log sum-exp of the scaled scores; a row with no real live key
// gets zeros and lse = -inf. map_counts, on live video x video blocks only,
// counts the (row, key) pairs with below_eta(score, lse, log_eta) (MapStatistic
// Mass: map_mass_value of the block's summed exp(score - lse)).
// Precision FP8 emulates the GPU's FP8 kernels (fp8.hpp): Q, K, V quantized and
// P rounded per key tile as they do, everything else in fp32; the map then
// counts on the smoothed FP8 scores against the smoothed LSE, as they do.
#include "moddit/attention_params.hpp"

namespace moddit {

class ThreadPool;

// Runs on a temporary pool of `threads` threads (0 = all hardware threads).
void cpu_attention(const AttentionParams& p, int threads);
// Runs on an existing pool (the backend keeps one).
void cpu_attention(const AttentionParams& p, ThreadPool& pool);

}  // namespace moddit
