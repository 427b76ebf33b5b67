// The backend's small helper kernels: zeros into skipped heads, and an i32 fill.
#include <algorithm>

#include "cuda/attention_launch.hpp"
#include "moddit/error.hpp"

namespace moddit::cuda {

namespace {

// One thread per 16-bit element pair (D is even); rows (b, n, selected head).
__global__ void zero_heads_kernel(uint16_t* out, int64_t sb, int64_t sn, int64_t sh, int B, int N,
                                  int D, const int32_t* heads, int num_heads, int elem_words) {
  const int64_t words_per_row = int64_t(D) * elem_words;
  const int64_t total = int64_t(B) * N * num_heads * words_per_row;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = i % words_per_row;
    int64_t r = i / words_per_row;
    const int s = int(r % num_heads);
    r /= num_heads;
    const int64_t n = r % N, b = r / N;
    out[(b * sb + n * sn + int64_t(heads[s]) * sh) * elem_words + w] = 0;
  }
}

__global__ void fill_kernel(int32_t* dst, int32_t value, size_t count) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count;
       i += size_t(gridDim.x) * blockDim.x)
    dst[i] = value;
}

int blocks_for(int64_t n) { return int(std::min<int64_t>((n + 255) / 256, 4096)); }

}  // namespace

void launch_zero_heads(void* out, const int64_t stride[3], int B, int N, int D, const int32_t* heads,
                       int num_heads, int elem_bytes, cudaStream_t stream) {
  const int words = elem_bytes / 2;
  const int64_t total = int64_t(B) * N * num_heads * D * words;
  if (total == 0) return;
  zero_heads_kernel<<<blocks_for(total), 256, 0, stream>>>(static_cast<uint16_t*>(out), stride[0],
                                                           stride[1], stride[2], B, N, D, heads,
                                                           num_heads, words);
  const cudaError_t e = cudaGetLastError();
  MODDIT_CHECK(e == cudaSuccess, "cuda: zero_heads launch: ", cudaGetErrorString(e));
}

void launch_fill_i32(int32_t* dst, int32_t value, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  fill_kernel<<<blocks_for(int64_t(count)), 256, 0, stream>>>(dst, value, count);
  const cudaError_t e = cudaGetLastError();
  MODDIT_CHECK(e == cudaSuccess, "cuda: fill launch: ", cudaGetErrorString(e));
}

}  // namespace moddit::cuda
