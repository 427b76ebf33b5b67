#pragma once
// The quantization of a precision-FP8 call (moddit/fp8.hpp): three launches on
// the stream, reading Q, K and V once each for the scales (K's mean and V's
// channel maxima need every key first) and once more to write the operands.
#include <cuda_runtime.h>

#include "cuda/fp8_operands.hpp"
#include "moddit/attention_params.hpp"

namespace moddit::cuda {

// `p` holds device pointers (block starts, heads); its selected heads are
// quantized into `f` (buffers sized for p.batch x p.num_heads x p.num_blocks tiles).
void launch_quantize_fp8(const AttentionParams& p, const Fp8Operands& f, cudaStream_t stream);

}  // namespace moddit::cuda
