// Instantiations and launchers of the FP8 Hopper kernels: 2 head dims x 2
// output dtypes x {forward, map}, on the operands fp8_quantize.cu wrote (block
// tiles, so one 2-D tensor map per operand).
#include "cuda/attention_kernel_sm90.cuh"
#include "cuda/persistent_launch.hpp"
#include "cuda/tensor_map.hpp"
#include "moddit/error.hpp"

namespace moddit::cuda {

namespace {

template <int D, typename T, bool MAP>
void launch_typed(const KernelArgs& args, int num_sms, cudaStream_t stream) {
  KernelArgs a = args;
  const AttentionParams& p = a.p;
  const int64_t tiles = int64_t(p.batch) * p.num_heads * p.num_blocks;
  make_fp8_tile_map(&a.tq, a.fp8.q, D, tiles * 128, 128, "q (fp8)");
  make_fp8_tile_map(&a.tk, a.fp8.k, D, tiles * 128, 128, "k (fp8)");
  if (!MAP) make_fp8_tile_map(&a.tv, a.fp8.vt, 128, tiles * D, D, "v (fp8)");
  launch_persistent(attention_kernel_sm90<D, T, MAP, true>, kWsThreads, ws_smem_bytes<D, T, MAP, true>(), a,
                    num_sms, stream);
}

template <bool MAP>
void dispatch(const KernelArgs& a, int num_sms, cudaStream_t stream) {
  const bool bf16 = a.p.dtype == DType::BF16;
  MODDIT_CHECK(bf16 || a.p.dtype == DType::F16, "cuda attention: dtype ", to_string(a.p.dtype),
               " not supported (bf16, f16)");
  if (a.p.head_dim == 128) {
    if (bf16) launch_typed<128, __nv_bfloat16, MAP>(a, num_sms, stream);
    else launch_typed<128, __half, MAP>(a, num_sms, stream);
  } else {
    MODDIT_CHECK(a.p.head_dim == 64, "cuda attention: head dim ", a.p.head_dim, " not supported (64, 128)");
    if (bf16) launch_typed<64, __nv_bfloat16, MAP>(a, num_sms, stream);
    else launch_typed<64, __half, MAP>(a, num_sms, stream);
  }
}

}  // namespace

void launch_fp8(const KernelArgs& args, bool map, int num_sms, cudaStream_t stream) {
  if (map) dispatch<true>(args, num_sms, stream);
  else dispatch<false>(args, num_sms, stream);
}

}  // namespace moddit::cuda
