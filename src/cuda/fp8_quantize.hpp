#pragma once
// The quantization of a precision-FP8 call (moddit/fp8.hpp): one persistent
// launch on the stream (after a memset of its counters). K's mean and V's
// channel maxima need every key of a head before any of its keys can be
// quantized: per head, the kernel first reduces K and V block by block, the last
// block's CTA turns the sums into the mean and the scales, and the head's
// quantize items wait for that (their K and V reads then hit L2: heads run
// in order, one or two at a time).
#include <cuda_runtime.h>

#include "cuda/fp8_operands.hpp"
#include "moddit/attention_params.hpp"

namespace moddit::cuda {

// `p` holds device pointers (block starts, heads); its selected heads are
// quantized into `f` (buffers sized for p.batch x p.num_heads x p.num_blocks tiles).
void launch_quantize_fp8(const AttentionParams& p, const Fp8Operands& f, int num_sms, cudaStream_t stream);

}  // namespace moddit::cuda
