// Instantiations and launchers of the attention kernels: 2 head dims x 2 dtypes x
// {forward, map}. Nothing else is templated, to keep the build short. The FP8
// kernels are instantiated in attention_kernels_fp8.cu.
#include <algorithm>

#include "cuda/attention_kernel.cuh"
#include "cuda/attention_kernel_sm90.cuh"
#include "cuda/attention_launch.hpp"
#include "cuda/persistent_launch.hpp"
#include "cuda/tensor_map.hpp"
#include "moddit/error.hpp"

namespace moddit::cuda {

namespace {

void check(cudaError_t e, const char* what) {
  MODDIT_CHECK(e == cudaSuccess, "cuda: ", what, ": ", cudaGetErrorString(e));
}

}  // namespace

void launch_persistent(void (*kernel)(KernelArgs), int threads, size_t smem, const KernelArgs& args,
                       int num_sms, cudaStream_t stream) {
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
        "cudaFuncSetAttribute");
  int per_sm = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem),
        "occupancy");
  per_sm = std::max(per_sm, 1);
  const int grid = std::max(1, std::min(args.num_items, num_sms * per_sm));
  check(cudaMemsetAsync(args.counter, 0, sizeof(int), stream), "reset work counter");
  kernel<<<grid, threads, smem, stream>>>(args);
  check(cudaGetLastError(), "attention kernel launch");
}

namespace {

// Picks the kernel: on Hopper with 128-token blocks the warp-specialised wgmma
// kernel, the portable kernel otherwise. Persistent grid: as many CTAs as fit on
// the SMs.
template <int D, typename T, bool MAP>
void launch_typed(const KernelArgs& args, bool wgmma, int num_sms, cudaStream_t stream) {
  const bool hopper = wgmma && args.p.max_block_len == 128;
  void (*kernel)(KernelArgs) = attention_kernel<D, T, MAP>;
  int threads = args.p.max_block_len <= 64 ? 128 : 256;
  size_t smem = size_t(kMaxQueryRows + (MAP ? 2 : 4) * kTileKeys) * D * sizeof(T);
  KernelArgs a = args;
  if (hopper) {
    kernel = attention_kernel_sm90<D, T, MAP, false>;
    threads = kWsThreads;
    smem = ws_smem_bytes<D, T, MAP>();
    const AttentionParams& p = args.p;
    // The buffers' own lengths (a chunk call's q and k are chunks): rows past
    // them load as zeros.
    make_tile_map(&a.tq, p.q, p.dtype, p.q_stride, p.batch, p.q_tokens, p.num_heads, D, "q");
    make_tile_map(&a.tk, p.k, p.dtype, p.k_stride, p.batch, p.k_tokens, p.num_heads, D, "k");
    if (!MAP) make_tile_map(&a.tv, p.v, p.dtype, p.v_stride, p.batch, p.k_tokens, p.num_heads, D, "v");
  }
  launch_persistent(kernel, threads, smem, a, num_sms, stream);
}

template <bool MAP>
void dispatch(const KernelArgs& args, const Schedule& s, int num_sms, cudaStream_t stream) {
  const AttentionParams& p = args.p;
  const bool wgmma = s.wgmma;
  if (p.precision == Precision::FP8) {
    MODDIT_CHECK(wgmma && p.max_block_len == 128 && s.fp8,
                 "cuda attention: precision fp8 needs a Hopper GPU (sm_90a) and 128-token blocks");
    KernelArgs a = args;
    a.fp8 = *s.fp8;
    launch_fp8(a, MAP, num_sms, stream);
    return;
  }
  const bool bf16 = p.dtype == DType::BF16;
  MODDIT_CHECK(bf16 || p.dtype == DType::F16, "cuda attention: dtype ", to_string(p.dtype),
               " not supported (bf16, f16)");
  if (p.head_dim == 128) {
    if (bf16) launch_typed<128, __nv_bfloat16, MAP>(args, wgmma, num_sms, stream);
    else launch_typed<128, __half, MAP>(args, wgmma, num_sms, stream);
  } else if (p.head_dim == 64) {
    if (bf16) launch_typed<64, __nv_bfloat16, MAP>(args, wgmma, num_sms, stream);
    else launch_typed<64, __half, MAP>(args, wgmma, num_sms, stream);
  } else {
    MODDIT_CHECK(false, "cuda attention: head dim ", p.head_dim, " not supported (64, 128)");
  }
}

}  // namespace

void launch_forward(const AttentionParams& p, float* lse_out, const Schedule& s, int num_sms,
                    cudaStream_t stream) {
  KernelArgs args{p, s.order, s.num_items, s.counter, lse_out, {}, {}, {}, s.map_compare, {}};
  dispatch<false>(args, s, num_sms, stream);
}

void launch_map(const AttentionParams& p, const float* lse, const Schedule& s, int num_sms,
                cudaStream_t stream) {
  KernelArgs args{p, s.order, s.num_items, s.counter, const_cast<float*>(lse), {}, {}, {}, s.map_compare, {}};
  // The Hopper map pass counts below eta only (its count-by-stage machinery has
  // no float sum): a mass map runs the portable map kernel, on Hopper too.
  // cuda_backend.cpp refuses mass with FP8 (whose map pass is Hopper-only).
  Schedule ms = s;
  if (p.map_statistic == MapStatistic::Mass) ms.wgmma = false;
  dispatch<true>(args, ms, num_sms, stream);
}

}  // namespace moddit::cuda
