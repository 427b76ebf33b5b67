#pragma once
// The warp-specialised Hopper forward kernel (launched for D = 128, 128-token
// blocks, no map; for D = 64 it measured slower than the 2-CTA/SM lockstep kernel):
// the sm90 kernel's tiles, wgmma products and softmax, but with the loads taken
// out of the compute warps. A CTA is three warpgroups: a producer that copies Q,
// K and V tiles with cp.async and signals each tile through an mbarrier, and two
// consumers of 64 query rows each that wait for a tile, run Q K^T, the softmax
// and P V, and release the tile through another mbarrier. No CTA-wide barrier is
// left in the loop, so the two consumers drift apart and one's softmax runs under
// the other's tensor-core work, which the lockstep sm90 kernel could not do
// (docs/BENCHMARKS.md, "Why the kernel is short of the targets"). The producer
// gives its registers to the consumers (setmaxnreg); on dense calls named
// barriers alternate the consumers' Q K^T (ping-pong). Work items are taken in the
// schedule's order, round robin over the persistent CTAs (every warp of a CTA
// walks the same list, so no item needs broadcasting).
#include "cuda/attention_kernel_sm90.cuh"
#include "cuda/tile_math90.cuh"

namespace moddit::cuda {

constexpr int kWsThreads = 384;

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Arrives once this thread's earlier cp.async copies have landed (counted in init).
__device__ __forceinline__ void mbar_arrive_cp_async(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
// Named barriers 1 and 2 order the two consumers' Q K^T issues (ping-pong).
__device__ __forceinline__ void named_bar_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
template <int N>
__device__ __forceinline__ void set_max_regs_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void set_max_regs_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

template <int D, typename T>
__global__ void __launch_bounds__(kWsThreads, 1) attention_kernel_sm90_ws(const KernelArgs a) {
#ifdef MODDIT_WGMMA
  extern __shared__ __align__(1024) unsigned char smem_raw_ws[];
  T* sQ = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(smem_raw_ws) + 1023) & ~uintptr_t(1023));
  T* sK = sQ + 128 * D;          // 2 stages of 128 x D
  T* sV = sK + 2 * kKeys90 * D;  // 2 stages
  // Barriers: K full/empty and V full/empty per stage, Q full/empty.
  __shared__ __align__(8) uint64_t bars[10];
  const uint32_t kfull = smem_addr(&bars[0]), kempty = smem_addr(&bars[2]);
  const uint32_t vfull = smem_addr(&bars[4]), vempty = smem_addr(&bars[6]);
  const uint32_t qfull = smem_addr(&bars[8]), qempty = smem_addr(&bars[9]);

  const AttentionParams& p = a.p;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, wg = warp >> 2;
  if (tid == 0) {
    for (int s = 0; s < 2; ++s) {
      mbar_init(kfull + 8 * s, 128);  // the producer's 128 threads
      mbar_init(vfull + 8 * s, 128);
      mbar_init(kempty + 8 * s, 2);   // one thread of each consumer
      mbar_init(vempty + 8 * s, 2);
    }
    mbar_init(qfull, 128);
    mbar_init(qempty, 2);
  }
  __syncthreads();

  if (wg == 0) {
    // ---- producer ------------------------------------------------------------
    set_max_regs_dec<40>();
    int it = 0;
    int j = 0;
    for (int item = blockIdx.x; item < a.num_items; item += gridDim.x, ++j) {
      const int row = a.order ? a.order[item] : item;
      WorkItem w;
      decode_work_item<false>(p, row, w);
      const T* Qg = static_cast<const T*>(p.q) + w.b * p.q_stride[0] + w.h * p.q_stride[2];
      const T* Kg = static_cast<const T*>(p.k) + w.b * p.k_stride[0] + w.h * p.k_stride[2];
      const T* Vg = static_cast<const T*>(p.v) + w.b * p.v_stride[0] + w.h * p.v_stride[2];
      mbar_wait(qempty, (j & 1) ^ 1);
      load_rows90<D, T, 128>(sQ, Qg, p.q_stride[1], w.q0, w.qlen, tid);
      mbar_arrive_cp_async(qfull);
      for (int li = w.lo; li < w.hi; ++li, ++it) {
        const int st = it & 1;
        const uint32_t ph = (it >> 1) & 1;
        const int kb = w.live ? w.live[li] : li;
        const int start = p.block_starts[kb], len = p.block_starts[kb + 1] - start;
        mbar_wait(kempty + 8 * st, ph ^ 1);
        load_rows90<D, T, 128>(sK + st * kKeys90 * D, Kg, p.k_stride[1], start, len, tid);
        mbar_arrive_cp_async(kfull + 8 * st);
        mbar_wait(vempty + 8 * st, ph ^ 1);
        load_rows90<D, T, 128>(sV + st * kKeys90 * D, Vg, p.v_stride[1], start, len, tid);
        mbar_arrive_cp_async(vfull + 8 * st);
      }
    }
    cp_async_wait<0>();
    return;
  }

  // ---- consumers: warpgroup c owns query rows [64c, 64c + 64) ------------------
  set_max_regs_inc<232>();
  const int c = wg - 1, cw = warp - 4;  // consumer index, warp among the consumers
  const int g = lane >> 2, tq = lane & 3;
  const bool leader = (tid & 127) == 0;
  const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
  const uint32_t qa = smem_addr(sQ), ka = smem_addr(sK), va = smem_addr(sV);
  // Ping-pong (dense calls): consumer c issues its Q K^T only after the other
  // consumer issued its own for the previous tile, so the two run half a tile
  // apart and one's softmax overlaps the other's products. Consumer 0 goes
  // first. Measured on H100: +2-4% dense, but -5% or so on sparse rows (a few
  // tiles per item), which therefore let the consumers drift freely.
  const bool pingpong = p.layout_row_ptr == nullptr;
  if (pingpong && c == 1) named_bar_arrive(1, 256);
  int it = 0;
  int j = 0;
  for (int item = blockIdx.x; item < a.num_items; item += gridDim.x, ++j) {
    const int row = a.order ? a.order[item] : item;
    WorkItem w;
    decode_work_item<false>(p, row, w);
    const int q0 = w.q0, qlen = w.qlen, lo = w.lo, hi = w.hi;
    const int32_t* live = w.live;
    const int64_t row_lse = (int64_t(w.b) * p.num_heads + w.h) * p.seq_len;
    auto key_start = [&](int i) { return p.block_starts[live ? live[i] : i]; };
    auto key_end = [&](int i) { return p.block_starts[(live ? live[i] : i) + 1]; };

    float o[D / 2];
#pragma unroll
    for (int x = 0; x < D / 2; ++x) o[x] = 0.f;
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
    int kstart = lo < hi ? key_start(lo) : 0, kend = lo < hi ? key_end(lo) : 0;
    mbar_wait(qfull, j & 1);
    for (int li = lo; li < hi; ++li, ++it) {
      const int st = it & 1;
      const uint32_t ph = (it >> 1) & 1;
      const int klen = kend - kstart, kcur = kstart;
      if (li + 1 < hi) {  // the next key block's range, read ahead of the wait
        kstart = key_start(li + 1);
        kend = key_end(li + 1);
      }
      mbar_wait(kfull + 8 * st, ph);
      fence_proxy_async();  // cp.async writes -> wgmma (async proxy) reads
      float s[64];
      if (pingpong) named_bar_sync(1 + c, 256);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const uint32_t off = ((kk >> 2) * 128 * 64) * 2 + (kk & 3) * 32;
        const uint64_t da = gmma_desc(qa + off + c * 64 * 128, 16, 1024);
        const uint64_t db = gmma_desc(ka + st * kKeys90 * D * 2 + off, 16, 1024);
        wgmma_ss<128, T>(s, da, db, kk > 0 ? 1 : 0);
      }
      wgmma_commit();
      if (pingpong) named_bar_arrive(2 - c, 256);  // the other consumer's turn
      wgmma_wait<0>();  // Q K^T, and the previous tile's P V
      if (leader) {
        mbar_arrive(kempty + 8 * st);
        if (li > lo) mbar_arrive(vempty + 8 * (st ^ 1));
        if (li + 1 == hi) mbar_arrive(qempty);  // the item's last read of Q
      }

      if (tile_is_partial(kcur, klen, kKeys90, p)) mask_tile_keys(s, tq, kcur, klen, p, -INFINITY);
      online_softmax_tile<D>(s, o, m_run, l_run, scale_log2);
      uint32_t pa[8][4];
      pack_p<T>(s, pa);
      mbar_wait(vfull + 8 * st, ph);
      fence_proxy_async();
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 8; ++kk) {
        const uint64_t dv = gmma_desc(va + st * kKeys90 * D * 2 + kk * 16 * 128, 128 * 128, 1024);
        wgmma_rs<D, T>(o, pa[kk], dv);
      }
      wgmma_commit();  // waited for with the next tile's Q K^T (or below)
    }
    wgmma_wait<0>();
    if (leader) {
      if (hi > lo) mbar_arrive(vempty + 8 * ((it - 1) & 1));
      else mbar_arrive(qempty);  // an empty row never read Q
    }

    T* Og = static_cast<T*>(p.out) + w.b * p.o_stride[0] + w.h * p.o_stride[2];
    store_rows<D, T>(o, m_run, l_run, cw * 16 + g, tq, qlen, q0, Og, p.o_stride[1], a.lse, row_lse);
  }
  if (pingpong && c == 0) named_bar_sync(1, 256);  // consume consumer 1's last turn signal
#else
  __trap();
#endif
}

}  // namespace moddit::cuda
