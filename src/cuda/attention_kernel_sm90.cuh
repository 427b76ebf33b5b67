#pragma once
// The Hopper (sm_90a) kernel, forward and map pass, D = 64 and 128, 128-token
// blocks; the portable kernel (attention_kernel.cuh) covers the rest with the
// same work items, masking and map rule. Both matrix products run on warpgroup
// MMAs (wgmma): S = Q K^T with both operands in shared memory, O += P V with P
// from registers and V read transposed. A CTA is three warpgroups: a producer
// (two working warps: a scheduler that takes work items from the shared counter
// and decodes them ahead, and a loader that loads their Q, K (and V) tiles by TMA,
// each completing an mbarrier), and two consumers of 64 query
// rows each that wait for a tile, run their products and release the tile
// through another mbarrier. No CTA-wide barrier is left in the loop, so one
// consumer's softmax runs under the other's tensor-core work; within a consumer,
// Q K^T of the next tile runs during the softmax (forward) or the count (map) of
// this one; Q has two buffers, so the next item's Q loads during this item. The
// producer gives its registers to the consumers (setmaxnreg); on dense forward
// calls named barriers alternate the consumers' products (ping-pong). Why each
// piece is there, with measurements: docs/BENCHMARKS.md, "How the kernel
// reached the targets".
//
// FP8 = true is precision FP8 (moddit/fp8.hpp): the same pipeline on e4m3
// operands quantized beforehand (fp8_quantize.cu) into 128-token tiles that
// one bulk copy each loads (Q and K row-major, V transposed with its keys
// permuted so that P leaves the Q K^T accumulator in the order the FP8 A
// operand wants), 32-deep wgmma k-steps, per-row Q and per-tile K scales
// folded into the softmax's scale, P rounded to e4m3 after a 2^8 lift, V's
// channel scales and the smoothing's LSE shift applied in the epilogue.
#include "cuda/tile_io90.cuh"
#include "cuda/sync90.cuh"
#include "cuda/store_rows.cuh"
#include "cuda/tile_math90.cuh"
#include "cuda/wgmma_fp8.cuh"
#include "moddit/fp8.hpp"

namespace moddit::cuda {

constexpr int kWsThreads = 384;

// K (and V) tiles in flight: the map pass's tiles are short, so it needs more
// (more than 4 gained nothing: docs/BENCHMARKS.md). FP8 tiles
// are half the bytes and half the tensor-core time: twice the stages keep the
// same bytes and time in flight.
template <int D, bool MAP, bool FP8 = false>
__host__ __device__ constexpr int ws_stages() {
  return (MAP ? 4 : 2) * (FP8 ? 2 : 1);
}

// Bytes of one 128-row tile (Q, K, or V^T of FP8).
template <int D, typename T, bool FP8>
__host__ __device__ constexpr uint32_t ws_tile_bytes() {
  return FP8 ? uint32_t(128 * D) : kTileBytes90<D, T>;
}

// Dynamic shared memory: two Q buffers (the next item's Q loads while this one
// runs) and the K (and V) stages.
template <int D, typename T, bool MAP, bool FP8 = false>
__host__ __device__ constexpr size_t ws_smem_bytes() {
  return size_t(2 + (MAP ? 1 : 2) * ws_stages<D, MAP, FP8>()) * ws_tile_bytes<D, T, FP8>() + 1024;
}

// Decoded items the scheduler warp keeps ready ahead of the producer.
constexpr int kItemsAhead = 2;

// A work item as the scheduler hands it to the producer (slot j % kItemsAhead)
// and the producer publishes it to the consumers (slot j % 2 for Q fill j), so
// that the consumers never walk the layout themselves.
struct WsItem {
  int item;  // >= num_items: the end
  int b, h, qb, q0, qlen, lo, hi;
  const int32_t* live;
};

// Shared memory of one CTA: tile bases, barriers (+ 8 per stage or Q slot), the
// published items, each stage's key block (start, length), for the map pass
// each Q slot's row LSE, each stage's count and the map entry it goes to, and
// for FP8 each stage's K scale and each Q slot's row scales and LSE shifts.
struct WsShared {
  uint32_t q, k, v;
  uint32_t kfull, kempty, vfull, vempty, qfull, qempty, nfull, nempty;
  WsItem* item;
  WsItem* next;
  int2* tile;
  float (*lse)[128];
  unsigned* count;
  int64_t* pending;
  float* kscale;
  float (*qscale)[128];
  float (*qshift)[128];
};

// FP8 operand tile of block `blk` of head (b, h) (fp8_operands.hpp).
__device__ __forceinline__ int fp8_tile(const AttentionParams& p, int b, int h, int blk) {
  return (b * p.num_heads + h) * p.num_blocks + blk;
}

// Compiler-level fence on registers an in-flight wgmma reads or writes: keeps
// the compiler from moving their reads and writes across the issue or the wait.
template <int N>
__device__ __forceinline__ void reg_fence(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int K>
__device__ __forceinline__ void reg_fence(uint32_t (&r)[K][4]) {
#pragma unroll
  for (int i = 0; i < K; ++i)
#pragma unroll
    for (int k = 0; k < 4; ++k) asm volatile("" : "+r"(r[i][k])::"memory");
}

#ifdef MODDIT_WGMMA
// Descriptors of consumer c's 64 rows of Q slot qs and of stage st's K and V
// tiles. A k-step's descriptor is the tile's plus its offset in 16-byte units
// (the start-address field cannot carry: shared memory is < 256 KiB), so the
// loops below add a constant instead of rebuilding descriptors (the rebuilds were
// a large share of the map pass's instructions).
// FP8 Q and K tiles are [128][D] bytes: one swizzle region of D-byte rows
// (128-byte swizzle at D = 128, 64-byte at D = 64; 8-row groups D * 8 bytes
// apart); the V^T tile is [D][128] bytes, 128-byte swizzle.
template <int D, typename T, bool FP8>
__device__ __forceinline__ uint64_t q_desc(const WsShared& sh, int qs, int c) {
  if constexpr (FP8)
    return gmma_desc(sh.q + qs * ws_tile_bytes<D, T, FP8>() + c * 64 * D, 16, 8 * D, D == 128 ? 1 : 2);
  else
    return gmma_desc(sh.q + qs * kTileBytes90<D, T> + c * 64 * 128, 16, 1024);
}
template <int D, typename T, bool FP8>
__device__ __forceinline__ uint64_t k_desc(const WsShared& sh, int st) {
  if constexpr (FP8) return gmma_desc(sh.k + st * ws_tile_bytes<D, T, FP8>(), 16, 8 * D, D == 128 ? 1 : 2);
  else return gmma_desc(sh.k + st * kTileBytes90<D, T>, 16, 1024);
}
template <int D, typename T, bool FP8>
__device__ __forceinline__ uint64_t v_desc(const WsShared& sh, int st) {
  if constexpr (FP8) return gmma_desc(sh.v + st * ws_tile_bytes<D, T, FP8>(), 16, 1024);
  else return gmma_desc(sh.v + st * kTileBytes90<D, T>, 128 * 128, 1024);
}
// S = Q K^T for Q rows dq against the K tile dk: bf16 k-step kk reads 16
// columns, in the 64-column half kk / 4 (a 128-row region of 128-byte rows);
// FP8 k-step kk reads 32 columns (bytes 32 kk of each row).
template <int D, typename T, bool FP8>
__device__ __forceinline__ void issue_qk(float (&s)[64], uint64_t dq, uint64_t dk) {
  if constexpr (FP8) {
#pragma unroll
    for (int kk = 0; kk < D / 32; ++kk) wgmma_ss_fp8(s, dq + 2 * kk, dk + 2 * kk, kk > 0 ? 1 : 0);
  } else {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t off = ((kk >> 2) * 128 * 128 + (kk & 3) * 32) >> 4;
      wgmma_ss<128, T>(s, dq + off, dk + off, kk > 0 ? 1 : 0);
    }
  }
}
// O += P V with the V tile dv: bf16 k-step kk reads keys 16 kk .. 16 kk + 15
// (rows of V), FP8 k-step kk the 32 columns 32 kk .. of V^T.
template <int D, typename T, bool FP8>
__device__ __forceinline__ void issue_pv(float (&o)[D / 2], const PRegs<FP8>& pa, uint64_t dv) {
  if constexpr (FP8) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) wgmma_rs_fp8<D>(o, pa[kk], dv + 2 * kk);
  } else {
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) wgmma_rs<D, T>(o, pa[kk], dv + ((kk * 16 * 128) >> 4));
  }
}
#endif

// ---- scheduler ---------------------------------------------------------------
// One warp; its lane 0 takes the next item from the counter (the map pass skips
// items with no video query block) and decodes it, kItemsAhead items ahead of the
// producer, so that the chain of dependent loads (counter, order, layout row,
// block starts) is off the producer's path between two items; the warp's lanes
// then prefetch the item's live list into L1 for the producer's per-tile reads.
template <bool MAP>
__device__ __forceinline__ void ws_scheduler(const KernelArgs& a, const WsShared& sh, int lane) {
  const AttentionParams& p = a.p;
  for (int j = 0;; ++j) {
    WsItem wi;
    if (lane == 0) {
      WorkItem w;
      do wi.item = atomicAdd(a.counter, 1);
      while (wi.item < a.num_items &&
             !decode_work_item<MAP>(p, a.order ? a.order[wi.item] : wi.item, w));
      wi.b = w.b, wi.h = w.h, wi.qb = w.qb, wi.q0 = w.q0, wi.qlen = w.qlen;
      wi.lo = w.lo, wi.hi = w.hi, wi.live = w.live;
    }
    const int ns = j % kItemsAhead;
    mbar_wait(sh.nempty + 8 * ns, ((j / kItemsAhead) & 1) ^ 1);
    if (lane == 0) {
      sh.next[ns] = wi;
      mbar_arrive(sh.nfull + 8 * ns);
    }
    if (__shfl_sync(0xffffffffu, wi.item, 0) >= a.num_items) break;
    const unsigned long long live =
        __shfl_sync(0xffffffffu, reinterpret_cast<unsigned long long>(wi.live), 0);
    if (live) {  // one 128-byte line per lane and round
      const unsigned long long end = live + 4ull * __shfl_sync(0xffffffffu, wi.hi, 0);
      unsigned long long at = (live + 4ull * __shfl_sync(0xffffffffu, wi.lo, 0)) & ~127ull;
      for (at += 128ull * lane; at < end; at += 128ull * 32)
        asm volatile("prefetch.global.L1 [%0];\n" ::"l"(at));
    }
  }
}

// ---- producer ----------------------------------------------------------------
// One warp; its lane 0 takes the next decoded item from the scheduler, publishes
// it and loads its Q into the item's Q slot, then its key tiles, by TMA,
// publishing each tile's key block; the warp's lanes copy the map pass's row LSE. In the map pass lane 0
// also writes each tile's count to map_counts once the stage comes back empty
// (every consumer thread has arrived, so every warp's count is in). Lane 0's
// arrivals (arrive.expect_tx) release what it wrote; the TMA bytes and the
// cp.async arrivals complete the phases. FP8: the lanes also copy the rows' Q
// scales and LSE shifts, lane 0 publishes each tile's K scale.
template <int D, typename T, bool MAP, bool FP8>
__device__ __forceinline__ void ws_producer(const KernelArgs& a, const WsShared& sh, int lane) {
  constexpr int S = ws_stages<D, MAP, FP8>();
  constexpr uint32_t kBytes = ws_tile_bytes<D, T, FP8>();
  const AttentionParams& p = a.p;
  const bool lead = lane == 0;
  // MAP, lane 0: sh.pending[st] is the map entry of the tile in stage st (or
  // -1), taken[st] the stage counter's value at its last flush.
  unsigned taken[S];
#pragma unroll
  for (int s = 0; s < S; ++s) taken[s] = 0;
  auto flush = [&](int st) {
    if constexpr (MAP) {
      if (!lead || sh.pending[st] < 0) return;
      const unsigned now = *static_cast<volatile unsigned*>(sh.count + st);
#pragma unroll
      for (int s = 0; s < S; ++s)
        if (s == st) {
          p.map_counts[sh.pending[st]] = int(now - taken[s]);
          taken[s] = now;
        }
      sh.pending[st] = -1;
    }
  };
  int it = 0;
  for (int j = 0;; ++j) {
    const int qs = j & 1, ns = j % kItemsAhead;
    mbar_wait(sh.nfull + 8 * ns, (j / kItemsAhead) & 1);
    WsItem wi = sh.next[ns];
    mbar_arrive(sh.nempty + 8 * ns);  // every lane, after its own read
    mbar_wait(sh.qempty + 8 * qs, ((j >> 1) & 1) ^ 1);  // slot qs is free (fill j - 2 done)
    if (lead) sh.item[qs] = wi;
    const uint32_t qbar = sh.qfull + 8 * qs;
    if (wi.item >= a.num_items) {  // wake the consumers to the end marker
      if (MAP || FP8) mbar_arrive(qbar);
      if (lead) mbar_arrive(qbar);
      break;
    }
    if constexpr (MAP || FP8) {
      // FP8 calls are whole-sequence calls (q_tokens = seq_len, q_token_begin = 0).
      const int64_t row0 =
          (int64_t(wi.b) * p.num_heads + wi.h) * p.q_tokens + (wi.q0 - p.q_token_begin);
#pragma unroll
      for (int r = lane; r < 128; r += 32) {
        const bool ok = r < wi.qlen;
        const int64_t at = row0 + (ok ? r : 0);
        if (MAP) cp_async4(smem_addr(&sh.lse[qs][r]), a.lse + at, ok);
        if (FP8) {
          cp_async4(smem_addr(&sh.qscale[qs][r]), a.fp8.q_scale + at, ok);
          cp_async4(smem_addr(&sh.qshift[qs][r]), a.fp8.lse_shift + at, ok);
        }
      }
      mbar_arrive_cp_async(qbar);
    }
    if (lead) {
      mbar_arrive_expect_tx(qbar, kBytes);
      if constexpr (FP8) tma_load_rows(sh.q + qs * kBytes, &a.tq, fp8_tile(p, wi.b, wi.h, wi.qb) * 128, qbar);
      else tma_load_tile<D>(sh.q + qs * kBytes, &a.tq, wi.q0 - p.q_token_begin, wi.h, wi.b, qbar);
    }
    const int64_t n = p.num_video_blocks;
    const int64_t map_row = ((int64_t(wi.b) * p.num_heads + wi.h) * n + (wi.qb - p.first_video_block)) * n;
    for (int li = wi.lo; li < wi.hi; ++li, ++it) {
      const int st = it % S;
      const uint32_t ph = (it / S) & 1;
      mbar_wait(sh.kempty + 8 * st, ph ^ 1);
      if (lead) {
        const int kb = wi.live ? wi.live[li] : li;
        const int2 span = key_span(p, kb);
        const int start = span.x, len = span.y - span.x;
        sh.tile[st] = make_int2(start, len);
        if constexpr (MAP) {
          flush(st);
          sh.pending[st] = map_row + kb - p.first_video_block;
        }
        const int tile = FP8 ? fp8_tile(p, wi.b, wi.h, kb) : 0;
        if constexpr (FP8) sh.kscale[st] = a.fp8.k_scale[tile];
        mbar_arrive_expect_tx(sh.kfull + 8 * st, kBytes);
        if constexpr (FP8) tma_load_rows(sh.k + st * kBytes, &a.tk, tile * 128, sh.kfull + 8 * st);
        else tma_load_tile<D>(sh.k + st * kBytes, &a.tk, start - p.k_token_begin, wi.h, wi.b,
                              sh.kfull + 8 * st);
        if constexpr (!MAP) {
          mbar_wait(sh.vempty + 8 * st, ph ^ 1);
          mbar_arrive_expect_tx(sh.vfull + 8 * st, kBytes);
          if constexpr (FP8) tma_load_rows(sh.v + st * kBytes, &a.tv, tile * D, sh.vfull + 8 * st);
          else tma_load_tile<D>(sh.v + st * kBytes, &a.tv, start - p.k_token_begin, wi.h, wi.b,
                                sh.vfull + 8 * st);
        }
      }
    }
  }
  if constexpr (MAP) {  // the last S tiles' counts
#pragma unroll
    for (int k = 0; k < S; ++k, ++it) {
      const int st = it % S;
      mbar_wait(sh.kempty + 8 * st, ((it / S) & 1) ^ 1);
      flush(st);
    }
  }
  cp_async_wait<0>();
}

// Consumers: waits for Q fill j (slot j % 2) and returns its item.
__device__ __forceinline__ WsItem wait_item(const WsShared& sh, int j) {
  mbar_wait(sh.qfull + 8 * (j & 1), (j >> 1) & 1);
  return sh.item[j & 1];
}

#ifdef MODDIT_WGMMA
// ---- forward consumer --------------------------------------------------------
// Q K^T of tile t runs on the tensor cores together with P V of tile t - 1: the
// softmax of tile t waits for the first only and O is rescaled after the second
// (FlashAttention-3's intra-warpgroup overlap). The first tile of an item has
// Q K^T alone, the last P V runs after the loop.
template <int D, typename T, bool FP8>
__device__ __forceinline__ void ws_consumer_forward(const KernelArgs& a, const WsShared& sh, int c,
                                                    int cw, int lane) {
  constexpr int S = ws_stages<D, false, FP8>();
  constexpr float kPLog2 = FP8 ? fp8::kPLog2 : 0.f;
  const AttentionParams& p = a.p;
  const int g = lane >> 2, tq = lane & 3;
  const bool leader = (threadIdx.x & 127) == 0;
  const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
  // Ping-pong (dense calls): consumer c issues its products only after the other
  // consumer issued its own for the previous tile, so the two run half a tile
  // apart and one's softmax overlaps the other's products. Consumer 0 goes
  // first. It pays on dense calls but costs on sparse rows (a few tiles per
  // item: docs/BENCHMARKS.md), which therefore let the consumers drift freely.
  const bool pingpong = p.layout_row_ptr == nullptr;
  if (pingpong && c == 1) named_bar_arrive(1, 256);
  int it = 0;
  for (int j = 0;; ++j) {
    const int qs = j & 1;
    const WsItem w = wait_item(sh, j);
    if (w.item >= a.num_items) break;
    float o[D / 2];
#pragma unroll
    for (int x = 0; x < D / 2; ++x) o[x] = 0.f;
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
    // The rows' score scales (FP8: times their Q scale; the tile's K scale comes
    // per tile) and LSE shifts, read before the Q slot is released.
    float row_scale[2] = {scale_log2, scale_log2}, shift[2] = {0.f, 0.f};
    if constexpr (FP8) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        row_scale[i] = sh.qscale[qs][cw * 16 + g + 8 * i] * scale_log2;
        shift[i] = sh.qshift[qs][cw * 16 + g + 8 * i];
      }
    }
    // The scales of the tile in flight.
    auto tile_scale = [&](int st, float (&rs)[2]) {
      if constexpr (FP8) {
        const float ks = sh.kscale[st];
        rs[0] = row_scale[0] * ks, rs[1] = row_scale[1] * ks;
      } else {
        rs[0] = row_scale[0], rs[1] = row_scale[1];
      }
    };
    if (w.lo < w.hi) {
      const uint64_t dq = q_desc<D, T, FP8>(sh, qs, c);
      float s[64];
      float alpha[2], rs[2];
      PRegs<FP8> pa;
      auto pack = [&] {
        if constexpr (FP8) pack_p_fp8(s, pa);
        else pack_p<T>(s, pa);
      };
      int pst = it % S;  // the stage of the tile whose P V is pending
      uint32_t pph = (it / S) & 1;
      {
        mbar_wait(sh.kfull + 8 * pst, pph);
        const int2 key = sh.tile[pst];  // read before the stage is released
        tile_scale(pst, rs);
        if (pingpong) named_bar_sync(1 + c, 256);
        wgmma_fence();
        issue_qk<D, T, FP8>(s, dq, k_desc<D, T, FP8>(sh, pst));
        wgmma_commit();
        if (pingpong) named_bar_arrive(2 - c, 256);
        wgmma_wait<0>();
        reg_fence(s);
        mbar_arrive(sh.kempty + 8 * pst);
        if (w.lo + 1 == w.hi) mbar_arrive(sh.qempty + 8 * qs);  // the item's last read of Q
        if (tile_is_partial(key.x, key.y, kKeys90, p)) mask_tile_keys(s, tq, key.x, key.y, p, -INFINITY);
        softmax_tile(s, m_run, l_run, rs, kPLog2, alpha);  // O is still zero: no rescale
        pack();
        ++it;
      }
      for (int li = w.lo + 1; li < w.hi; ++li, ++it) {
        const int st = it % S;
        const uint32_t ph = (it / S) & 1;
        mbar_wait(sh.kfull + 8 * st, ph);
        const int2 key = sh.tile[st];
        tile_scale(st, rs);
        mbar_wait(sh.vfull + 8 * pst, pph);
        if (pingpong) named_bar_sync(1 + c, 256);
        wgmma_fence();
        issue_qk<D, T, FP8>(s, dq, k_desc<D, T, FP8>(sh, st));
        wgmma_commit();
        issue_pv<D, T, FP8>(o, pa, v_desc<D, T, FP8>(sh, pst));
        wgmma_commit();
        if (pingpong) named_bar_arrive(2 - c, 256);
        reg_fence(o);
        wgmma_wait<1>();  // Q K^T of tile li; P V of the previous tile may still run
        reg_fence(s);
        mbar_arrive(sh.kempty + 8 * st);
        if (li + 1 == w.hi) mbar_arrive(sh.qempty + 8 * qs);
        if (tile_is_partial(key.x, key.y, kKeys90, p)) mask_tile_keys(s, tq, key.x, key.y, p, -INFINITY);
        softmax_tile(s, m_run, l_run, rs, kPLog2, alpha);
        wgmma_wait<0>();
        reg_fence(o);
        reg_fence(pa);
        if (leader) mbar_arrive(sh.vempty + 8 * pst);
        rescale_o<D>(o, alpha);
        pack();
        pst = st;
        pph = ph;
      }
      mbar_wait(sh.vfull + 8 * pst, pph);
      wgmma_fence();
      issue_pv<D, T, FP8>(o, pa, v_desc<D, T, FP8>(sh, pst));
      wgmma_commit();
      wgmma_wait<0>();
      reg_fence(o);
      if (leader) mbar_arrive(sh.vempty + 8 * pst);
    } else {
      mbar_arrive(sh.qempty + 8 * qs);  // an empty row never read Q
    }
    if constexpr (FP8) {
      // V's channel scales; the LSE in the caller's terms: m + log2(l) lost the
      // 2^8 lift of P and gains the smoothing's shift (store_rows adds log2 l).
      const float* vs = a.fp8.v_scale + (int64_t(w.b) * p.num_heads + w.h) * D;
#pragma unroll
      for (int jj = 0; jj < D / 8; ++jj) {
        const float2 v2 = *reinterpret_cast<const float2*>(vs + jj * 8 + 2 * tq);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          o[jj * 4 + 2 * i] *= v2.x;
          o[jj * 4 + 2 * i + 1] *= v2.y;
        }
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) m_run[i] += shift[i] * 1.4426950408889634f - kPLog2;
    }
    T* Og = static_cast<T*>(p.out) + w.b * p.o_stride[0] + w.h * p.o_stride[2];
    store_rows<D, T>([&](int j, int e) { return o[j * 4 + e]; }, m_run, l_run, cw * 16 + g, tq,
                     w.qlen, w.q0 - p.q_token_begin, Og, p.o_stride[1], a.lse,
                     (int64_t(w.b) * p.num_heads + w.h) * p.q_tokens);
  }
  if (pingpong && c == 0) named_bar_sync(1, 256);  // consume consumer 1's last turn signal
}

// ---- map consumer ------------------------------------------------------------
// Counts, per tile, the scores below eta (the rule of mask_policy.hpp, on raw
// scores against each row's threshold) and adds the warp's count to the stage's
// counter before releasing the stage (kempty counts every consumer thread). Q K^T
// of the next tile is in flight meanwhile: the two S buffers alternate, so the
// loop body is written out for each. FMA: count by saturated FMA (every row of
// the warp has exact SatCount parameters), else by compare. FP8: the raw score
// is s q_scale k_scale; the rows' thresholds are divided by their Q scale once
// and by the tile's K scale per tile (powers of two: exact; fp8.hpp).
struct MapRows {
  float thr[2];      // the thread's two rows' raw-score thresholds
  SatCount fma[2];   // and their saturated-FMA form
};

template <bool FMA, bool FP8>
__device__ __forceinline__ void count_tile(float (&s)[64], int2 key, const MapRows& rows,
                                           const AttentionParams& p, const WsShared& sh, int st,
                                           int lane) {
  if (tile_is_partial(key.x, key.y, kKeys90, p)) mask_tile_keys(s, lane & 3, key.x, key.y, p, INFINITY);
  int n;
  if constexpr (FP8) {
    const float ks = sh.kscale[st];
    if constexpr (FMA) {
      const SatCount f[2] = {{rows.fma[0].neg_m * ks, rows.fma[0].t, true},
                             {rows.fma[1].neg_m * ks, rows.fma[1].t, true}};
      n = count_below_fma(s, f);
    } else {
      const float inv = 1.f / ks;
      const float thr[2] = {rows.thr[0] * inv, rows.thr[1] * inv};
      n = count_below_compare(s, thr);
    }
  } else {
    n = FMA ? count_below_fma(s, rows.fma) : count_below_compare(s, rows.thr);
  }
  // One REDUX for the warp's sum (five dependent shuffles and adds kept the warp
  // waiting on the shuffles).
  const unsigned count = __reduce_add_sync(0xffffffffu, unsigned(n));
  if (lane == 0) atomicAdd_block(sh.count + st, count);
  mbar_arrive(sh.kempty + 8 * st);  // lane 0's arrival releases its add with the stage
}

// One item's tiles, from fill `it` on (advanced past them).
template <int D, typename T, bool FP8, bool FMA>
__device__ __forceinline__ void map_item(const WsItem& w, const MapRows& rows, const AttentionParams& p,
                                         const WsShared& sh, int qs, int c, int lane, int& it) {
  constexpr int S = ws_stages<D, true, FP8>();
  const uint64_t dq = q_desc<D, T, FP8>(sh, qs, c);
  float sa[64], sb[64];
  int2 ka, kb;  // the key blocks of the tiles in sa and sb
  // Issues Q K^T of fill t (its stage) into s; key gets the tile's key block.
  auto issue = [&](float (&s)[64], int2& key, int t) {
    mbar_wait(sh.kfull + 8 * (t % S), (t / S) & 1);
    key = sh.tile[t % S];
    wgmma_fence();
    issue_qk<D, T, FP8>(s, dq, k_desc<D, T, FP8>(sh, t % S));
    wgmma_commit();
  };
  auto count = [&](float (&s)[64], int2 key) {
    reg_fence(s);
    count_tile<FMA, FP8>(s, key, rows, p, sh, it % S, lane);
    ++it;
  };
  auto last_wait = [&] {
    wgmma_wait<0>();
    mbar_arrive(sh.qempty + 8 * qs);  // the item's last read of Q
  };
  // No branch between a wgmma's issue and its wait (ptxas would serialise
  // them): two tiles per round while three or more remain, then the tail.
  issue(sa, ka, it);
  int li = w.lo;
  for (; li + 2 < w.hi; li += 2) {
    issue(sb, kb, it + 1);
    wgmma_wait<1>();
    count(sa, ka);
    issue(sa, ka, it + 1);
    wgmma_wait<1>();
    count(sb, kb);
  }
  if (li + 1 < w.hi) {
    issue(sb, kb, it + 1);
    wgmma_wait<1>();
    count(sa, ka);
    last_wait();
    count(sb, kb);
  } else {
    last_wait();
    count(sa, ka);
  }
}

template <int D, typename T, bool FP8>
__device__ __forceinline__ void ws_consumer_map(const KernelArgs& a, const WsShared& sh, int c,
                                                int cw, int lane) {
  const AttentionParams& p = a.p;
  int it = 0;
  for (int j = 0;; ++j) {
    const int qs = j & 1;
    const WsItem w = wait_item(sh, j);
    if (w.item >= a.num_items) break;
    if (w.lo == w.hi) {
      mbar_arrive(sh.qempty + 8 * qs);
      continue;
    }
    MapRows rows;
    bool exact = true;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int r = cw * 16 + (lane >> 2) + i * 8;
      float lse = r < w.qlen ? sh.lse[qs][r] : -INFINITY;  // -inf: counts nothing
      if constexpr (FP8) lse -= r < w.qlen ? sh.qshift[qs][r] : 0.f;  // the smoothed scores' LSE
      rows.thr[i] = raw_score_threshold(lse, p.log_eta, p.softmax_scale);
      if constexpr (FP8) {
        if (r < w.qlen) rows.thr[i] /= sh.qscale[qs][r];
        exact = exact && fp8::sat_count_scalable(rows.thr[i]);
      }
      rows.fma[i] = sat_count_params(rows.thr[i]);
      exact = exact && rows.fma[i].exact;
    }
    // One choice per warpgroup, not per warp: the two instantiations are
    // different wgmma instructions, and wgmma (.aligned) needs all four warps of
    // the warpgroup at the same one (a warp's rows can be inexact alone).
    // Named barrier 1 + c: the map pass uses no other.
    if (named_bar_and(1 + c, 128, exact && !a.map_compare))
      map_item<D, T, FP8, true>(w, rows, p, sh, qs, c, lane, it);
    else
      map_item<D, T, FP8, false>(w, rows, p, sh, qs, c, lane, it);
  }
}
#endif

template <int D, typename T, bool MAP, bool FP8>
__global__ void __launch_bounds__(kWsThreads, 1) attention_kernel_sm90(const __grid_constant__ KernelArgs a) {
#ifdef MODDIT_WGMMA
  constexpr int S = ws_stages<D, MAP, FP8>();
  constexpr uint32_t kTile = ws_tile_bytes<D, T, FP8>();
  extern __shared__ __align__(1024) unsigned char smem_raw90[];
  // 2 Q slots of 128 x D, then S K stages, then S V stages (forward only), from a
  // 1024-byte boundary (the 128-byte swizzle's period).
  const uint32_t base = (smem_addr(smem_raw90) + 1023) & ~1023u;
  __shared__ __align__(8) uint64_t bars[4 * S + 4 + 2 * kItemsAhead];
  __shared__ WsItem s_item[2], s_next[kItemsAhead];
  __shared__ int2 s_tile[S];
  __shared__ __align__(16) float s_lse[MAP ? 2 : 1][128];
  __shared__ unsigned s_count[S];
  __shared__ int64_t s_pending[S];
  __shared__ float s_kscale[S];
  __shared__ __align__(16) float s_qscale[FP8 ? 2 : 1][128], s_qshift[FP8 ? 2 : 1][128];
  WsShared sh;
  sh.q = base;
  sh.k = sh.q + 2 * kTile;
  sh.v = sh.k + S * kTile;
  sh.kfull = smem_addr(&bars[0]);
  sh.kempty = smem_addr(&bars[S]);
  sh.vfull = smem_addr(&bars[2 * S]);
  sh.vempty = smem_addr(&bars[3 * S]);
  sh.qfull = smem_addr(&bars[4 * S]);
  sh.qempty = smem_addr(&bars[4 * S + 2]);
  sh.nfull = smem_addr(&bars[4 * S + 4]);
  sh.nempty = smem_addr(&bars[4 * S + 4 + kItemsAhead]);
  sh.item = s_item;
  sh.next = s_next;
  sh.tile = s_tile;
  sh.lse = s_lse;
  sh.count = s_count;
  sh.pending = s_pending;
  sh.kscale = s_kscale;
  sh.qscale = s_qscale;
  sh.qshift = s_qshift;

  // warp and warpgroup broadcast from lane 0, so that the compiler knows them
  // warp-uniform and keeps the wgmma descriptor arithmetic in uniform registers
  // (faster in an A/B run: docs/BENCHMARKS.md).
  const int tid = threadIdx.x, lane = tid & 31;
  const int warp = __shfl_sync(0xffffffffu, tid >> 5, 0), wg = warp >> 2;
  if (tid == 0) {
    for (int s = 0; s < S; ++s) {
      mbar_init(sh.kfull + 8 * s, 1);             // the producer's lane 0 (+ the TMA bytes)
      mbar_init(sh.kempty + 8 * s, 256);          // every consumer thread, after its reads
      mbar_init(sh.vfull + 8 * s, 1);
      mbar_init(sh.vempty + 8 * s, 2);            // each consumer's leader (only wgmma reads V)
      s_count[s] = 0;
      s_pending[s] = -1;
    }
    for (int q = 0; q < 2; ++q) {
      // lane 0 (+ TMA bytes); map, FP8: + the row copies of the producer's lanes
      mbar_init(sh.qfull + 8 * q, MAP || FP8 ? 33 : 1);
      mbar_init(sh.qempty + 8 * q, 256);  // every consumer thread, after its reads
    }
    for (int n = 0; n < kItemsAhead; ++n) {
      mbar_init(sh.nfull + 8 * n, 1);   // the scheduler's lane 0, after its write
      mbar_init(sh.nempty + 8 * n, 32);  // every producer lane, after its read
    }
    fence_barrier_init();  // before the first TMA completes on them (sync90.cuh)
  }
  __syncthreads();

  if (wg == 0) {
    set_max_regs_dec<40>();
    if (warp == 0) ws_producer<D, T, MAP, FP8>(a, sh, lane);
    if (warp == 1) ws_scheduler<MAP>(a, sh, lane);
    return;
  }
  set_max_regs_inc<232>();
  if constexpr (MAP) ws_consumer_map<D, T, FP8>(a, sh, wg - 1, warp - 4, lane);
  else ws_consumer_forward<D, T, FP8>(a, sh, wg - 1, warp - 4, lane);
#else
  __trap();
#endif
}

}  // namespace moddit::cuda
