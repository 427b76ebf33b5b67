#pragma once
// The Hopper (sm_90a) variant of the block-sparse flash attention kernel: the
// same work items, persistent scheduling, masking and map pass as the sm80
// kernel (attention_kernel.cuh), but the two matrix products run on warpgroup
// MMAs (wgmma): S = Q K^T with both operands in shared memory, O += P V with P
// from registers and V read transposed from shared memory. A CTA is two
// warpgroups of 64 query rows each (one 128-token query block) and walks the
// row's live key blocks one whole 128-key block per tile, double-buffering K and
// V through cp.async. Per tile: Q K^T is issued first and the copies of this V and
// the next K run under it; the P V of a tile is waited for together with the next
// tile's Q K^T; O is rescaled only when a row maximum moved. D = 64 runs two CTAs
// per SM (128 registers), D = 128 one. Tiles use the 128-byte swizzled layout
// wgmma reads: each 64-column half of a [rows][D] tile is a region of rows x 128
// bytes whose 16-byte chunks are XORed with (row % 8).
#include "cuda/attention_kernel.cuh"
#include "cuda/tile_math90.cuh"
#include "cuda/wgmma.cuh"
#include "cuda/work_item.cuh"

namespace moddit::cuda {

constexpr int kKeys90 = 128;  // keys per tile = one 128-token block

// Element offset of (row, 16-byte chunk) in a tile of R rows.
template <int R>
__device__ __forceinline__ int swz90(int row, int chunk) {
  return (chunk >> 3) * (R * 64) + row * 64 + (((chunk & 7) ^ (row & 7)) << 3);
}

// R rows by NT threads: thread t copies chunk t % (D/8) of rows t / (D/8) + k * step,
// so the chunk, the swizzle phase and the address increments are fixed per thread.
template <int D, typename T, int NT = 256, int R = 128>
__device__ __forceinline__ void load_rows90(T* smem, const T* g, int64_t stride_n, int start,
                                            int len, int tid) {
  constexpr int kChunks = D / 8, kStep = NT / kChunks;
  const int c = tid % kChunks, r0 = tid / kChunks;
  const uint32_t dst = smem_addr(smem) + swz90<R>(r0, c) * 2;
  const T* src = g + int64_t(start + r0) * stride_n + c * 8;
  const int64_t src_step = int64_t(kStep) * stride_n;
#pragma unroll
  for (int k = 0; k < R / kStep; ++k) {
    const bool ok = r0 + k * kStep < len;
    cp_async16(dst + k * kStep * 128, ok ? src + k * src_step : g, ok);
  }
}

// wgmma shared-memory descriptor, 128-byte swizzle.
__device__ __forceinline__ uint64_t gmma_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t((lbo >> 4) & 0x3FFF) << 16) |
         (uint64_t((sbo >> 4) & 0x3FFF) << 32) | (uint64_t(1) << 62);
}

template <int D, typename T, bool MAP>
__global__ void __launch_bounds__(256, D == 64 ? 2 : 1) attention_kernel_sm90(const KernelArgs a) {
#ifdef MODDIT_WGMMA
  extern __shared__ __align__(1024) unsigned char smem_raw90[];
  T* sQ = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(smem_raw90) + 1023) & ~uintptr_t(1023));
  T* sK = sQ + 128 * D;          // 2 buffers of 128 x D
  T* sV = sK + 2 * kKeys90 * D;  // 2 buffers (forward only)
  __shared__ int s_item;
  __shared__ int s_count[8];

  const AttentionParams& p = a.p;
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const int warp = tid >> 5, lane = tid & 31, wg = warp >> 2;
  const int g = lane >> 2, tq = lane & 3;
  const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
  const int fvb = p.first_video_block, nvb = p.num_video_blocks;
  const uint32_t qa = smem_addr(sQ), ka = smem_addr(sK), va = smem_addr(sV);

  for (;;) {
    __syncthreads();
    if (tid == 0) s_item = atomicAdd(a.counter, 1);
    __syncthreads();
    const int item = s_item;
    if (item >= a.num_items) break;
    const int row = a.order ? a.order[item] : item;
    WorkItem w;
    if (!decode_work_item<MAP>(p, row, w)) continue;
    const int qb = w.qb, b = w.b, h = w.h, q0 = w.q0, qlen = w.qlen;
    const int32_t* live = w.live;
    const int lo = w.lo, hi = w.hi;
    auto block_of = [&](int i) { return live ? live[i] : i; };

    const T* Qg = static_cast<const T*>(p.q) + b * p.q_stride[0] + h * p.q_stride[2];
    const T* Kg = static_cast<const T*>(p.k) + b * p.k_stride[0] + h * p.k_stride[2];
    const T* Vg = static_cast<const T*>(p.v) + b * p.v_stride[0] + h * p.v_stride[2];
    const int64_t row_lse = (int64_t(b) * p.num_heads + h) * p.seq_len;

    // The key block of tile li + 1 is read one tile ahead (index, start, end), so
    // the dependent loads of the live list never sit before a K copy.
    struct KeyBlock { int kb, start, end; };
    auto key_block = [&](int i) {
      KeyBlock k{0, 0, 0};
      if (i < hi) {
        k.kb = block_of(i);
        k.start = p.block_starts[k.kb];
        k.end = p.block_starts[k.kb + 1];
      }
      return k;
    };
    KeyBlock cur = key_block(lo);
    load_rows90<D, T>(sQ, Qg, p.q_stride[1], q0, qlen, tid);
    if (lo < hi) load_rows90<D, T>(sK, Kg, p.k_stride[1], cur.start, cur.end - cur.start, tid);
    KeyBlock nxt = key_block(lo + 1);
    cp_async_commit();

    float o[MAP ? 1 : D / 2];
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
    float lse_row[2] = {0.f, 0.f};
    if constexpr (!MAP) {
#pragma unroll
      for (int j = 0; j < D / 2; ++j) o[j] = 0.f;
    } else {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r = warp * 16 + g + i * 8;
        lse_row[i] = r < qlen ? a.lse[row_lse + q0 + r] : -INFINITY;
      }
    }
    int buf = 0;
    for (int li = lo; li < hi; ++li) {
      const int kb = cur.kb;
      const int kstart = cur.start;
      const int klen = cur.end - cur.start;

      cp_async_wait<0>();
      fence_proxy_async();  // cp.async writes -> wgmma (async proxy) reads
      __syncthreads();
      // Q K^T first, then the copies of the next tiles while it runs on the tensor cores
      // (they write the other buffers: V[buf], K[buf ^ 1]).
      float s[64];
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const uint32_t off = ((kk >> 2) * 128 * 64) * 2 + (kk & 3) * 32;
        const uint64_t da = gmma_desc(qa + off + wg * 64 * 128, 16, 1024);
        const uint64_t db = gmma_desc(ka + buf * kKeys90 * D * 2 + off, 16, 1024);
        wgmma_ss<128, T>(s, da, db, kk > 0 ? 1 : 0);
      }
      wgmma_commit();
      if constexpr (!MAP) {
        load_rows90<D, T>(sV + buf * kKeys90 * D, Vg, p.v_stride[1], kstart, klen, tid);
        cp_async_commit();
      }
      if (li + 1 < hi)
        load_rows90<D, T>(sK + (buf ^ 1) * kKeys90 * D, Kg, p.k_stride[1], nxt.start,
                          nxt.end - nxt.start, tid);
      cp_async_commit();
      cur = nxt;
      nxt = key_block(li + 2);
      wgmma_wait<0>();  // Q K^T (and the previous tile's P V)

      const bool partial = tile_is_partial(kstart, klen, kKeys90, p);
      if constexpr (MAP) {
        // Keys past the block or padding: +inf is never below eta.
        if (partial) mask_tile_keys(s, tq, kstart, klen, p, INFINITY);
        int count = 0;  // branch-free: one FMUL, FSETP and add per score
#pragma unroll
        for (int j = 0; j < 16; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            count += int(below_eta(s[j * 4 + e] * p.softmax_scale, lse_row[e >> 1], p.log_eta));
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) count += __shfl_xor_sync(0xffffffffu, count, off);
        if (lane == 0) s_count[warp] = count;
        __syncthreads();
        if (tid == 0) {
          int total = 0;
          for (int w = 0; w < (nthreads >> 5); ++w) total += s_count[w];
          const int64_t n = nvb;
          p.map_counts[((int64_t(b) * p.num_heads + h) * n + (qb - fvb)) * n + (kb - fvb)] = total;
        }
      } else {
        if (partial) mask_tile_keys(s, tq, kstart, klen, p, -INFINITY);  // no weight
        online_softmax_tile<D>(s, o, m_run, l_run, scale_log2);
        uint32_t pa[8][4];
        pack_p<T>(s, pa);
        cp_async_wait<1>();  // V landed (the K prefetch may still fly)
        fence_proxy_async();
        __syncthreads();
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
          const uint64_t dv = gmma_desc(va + buf * kKeys90 * D * 2 + kk * 16 * 128, 128 * 128, 1024);
          wgmma_rs<D, T>(o, pa[kk], dv);
        }
        wgmma_commit();  // waited for with the next tile's Q K^T (or after the loop)
      }
      buf ^= 1;
    }
    wgmma_wait<0>();
    cp_async_wait<0>();

    if constexpr (!MAP) {
      T* Og = static_cast<T*>(p.out) + b * p.o_stride[0] + h * p.o_stride[2];
      store_rows<D, T>(o, m_run, l_run, warp * 16 + g, tq, qlen, q0, Og, p.o_stride[1], a.lse,
                       row_lse);
    }
  }
#else
  __trap();  // built for another architecture: the launcher only picks this on sm_90a
#endif
}



}  // namespace moddit::cuda
