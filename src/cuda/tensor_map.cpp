#include "cuda/tensor_map.hpp"

#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include "moddit/error.hpp"

namespace moddit::cuda {

namespace {

// cuTensorMapEncodeTiled through the runtime's driver entry point, so that the
// library needs no link to libcuda.
PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    const cudaError_t e =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q);
    MODDIT_CHECK(e == cudaSuccess && q == cudaDriverEntryPointSuccess && p,
                 "cuda: cuTensorMapEncodeTiled is not available from the driver");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

}  // namespace

void make_tile_map(CUtensorMap* map, const void* base, DType dtype, const int64_t stride[3],
                   int batch, int seq_len, int heads, int head_dim, const char* what) {
  const int64_t es = 2;  // bf16 / f16
  const cuuint64_t dims[4] = {cuuint64_t(head_dim), cuuint64_t(seq_len), cuuint64_t(heads),
                              cuuint64_t(batch)};
  // Bytes between consecutive n, h, b (`stride` is in AttentionParams order: b, n,
  // h); an axis of size 1 is never stepped, so any valid stride does for it.
  const int64_t sizes[3] = {seq_len, heads, batch};
  const int64_t elems[3] = {stride[1], stride[2], stride[0]};
  cuuint64_t strides[3];
  for (int a = 0; a < 3; ++a) strides[a] = cuuint64_t(sizes[a] == 1 ? 16 : elems[a] * es);
  const cuuint32_t box[4] = {64, 128, 1, 1};
  const cuuint32_t elem[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type =
      dtype == DType::BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUresult r = encode_fn()(map, type, 4, const_cast<void*>(base), dims, strides, box, elem,
                                 CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                 CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                 CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  MODDIT_CHECK(r == CUDA_SUCCESS, "cuda attention: ", what,
               ": the tensor cannot be described to the TMA unit (error ", int(r),
               "; base and strides must be 16-byte aligned)");
}

void make_fp8_tile_map(CUtensorMap* map, const void* base, int row_bytes, int64_t rows, int box_rows,
                       const char* what) {
  MODDIT_CHECK(row_bytes == 64 || row_bytes == 128, "cuda attention: ", what, ": FP8 rows of ",
               row_bytes, " bytes (64 or 128)");
  MODDIT_CHECK(rows > 0 && rows < (int64_t(1) << 31), "cuda attention: ", what,
               ": too many FP8 rows (", rows, ")");
  const cuuint64_t dims[2] = {cuuint64_t(row_bytes), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(row_bytes)};
  const cuuint32_t box[2] = {cuuint32_t(row_bytes), cuuint32_t(box_rows)};
  const cuuint32_t elem[2] = {1, 1};
  const CUresult r = encode_fn()(
      map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(base), dims, strides, box, elem,
      CU_TENSOR_MAP_INTERLEAVE_NONE, row_bytes == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  MODDIT_CHECK(r == CUDA_SUCCESS, "cuda attention: ", what,
               ": the FP8 operand cannot be described to the TMA unit (error ", int(r), ")");
}

}  // namespace moddit::cuda
