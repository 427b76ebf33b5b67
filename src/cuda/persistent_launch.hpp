#pragma once
// The launch every attention kernel shares (attention_kernels.cu,
// attention_kernels_fp8.cu): a persistent grid of as many CTAs as fit on the SMs
// (at most one per work item), the work counter reset first.
#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/attention_kernel.cuh"

namespace moddit::cuda {

void launch_persistent(void (*kernel)(KernelArgs), int threads, size_t smem, const KernelArgs& args,
                       int num_sms, cudaStream_t stream);

// The FP8 kernels (attention_kernels_fp8.cu): the Hopper kernel on the operands
// in args.fp8 (forward, or the map pass when `map`).
void launch_fp8(const KernelArgs& args, bool map, int num_sms, cudaStream_t stream);

}  // namespace moddit::cuda
