#pragma once
// Hopper synchronisation primitives of the warp-specialised kernels: mbarriers
// (shared-memory transaction barriers with a phase bit), named barriers and
// register reallocation between warpgroups (setmaxnreg).
#include <cstdint>
#ifdef MODDIT_MBAR_WATCHDOG
#include <cstdio>
#endif

namespace moddit::cuda {

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Arrives and adds `bytes` to the transaction count the phase waits for (TMA).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
// Arrives once this thread's earlier cp.async copies have landed (counted in init).
__device__ __forceinline__ void mbar_arrive_cp_async(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
// After the mbarrier.inits, before any TMA completes on them: the init is a
// generic-proxy write and the TMA's complete_tx an async-proxy one, unordered
// without this fence (CUDA Programming Guide, TMA: "make initialized barrier
// visible in async proxy"), and the smem still holds the previous CTA's
// barrier words.
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\nfence.proxy.async.shared::cta;\n" ::: "memory");
}
// Build with -DMODDIT_MBAR_WATCHDOG to turn a wait that never ends into a trap
// that names the barrier (its shared address), the parity and the thread, so a
// stalled run says which wait stalled instead of hanging. Debug only: the check
// costs registers and serialises the wgmma pipeline (a call in the kernel), so
// the timing is not the release build's.
#ifdef MODDIT_MBAR_WATCHDOG
static __device__ __noinline__ void mbar_stalled(uint32_t bar, uint32_t parity) {
  printf("moddit mbar_wait stalled: block %d thread %d bar 0x%x parity %u\n", blockIdx.x, threadIdx.x,
         bar, parity);
  __trap();
}
#endif
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
#ifdef MODDIT_MBAR_WATCHDOG
  const long long t0 = clock64();
#endif
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
#ifdef MODDIT_MBAR_WATCHDOG
    if (!done && clock64() - t0 > (10ll << 30)) mbar_stalled(bar, parity);  // seconds
#endif
  } while (!done);
}
// Named barriers 1 and 2: the forward consumers' turns (ping-pong), the map
// consumers' per-warpgroup choice (named_bar_and).
__device__ __forceinline__ void named_bar_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
// AND of `pred` over the `threads` threads that meet at named barrier `id`.
__device__ __forceinline__ bool named_bar_and(int id, int threads, bool pred) {
  uint32_t all;
  asm volatile(
      "{\n.reg .pred p, q;\nsetp.ne.u32 p, %1, 0;\nbar.red.and.pred q, %2, %3, p;\n"
      "selp.u32 %0, 1, 0, q;\n}\n"
      : "=r"(all)
      : "r"(uint32_t(pred)), "r"(id), "r"(threads)
      : "memory");
  return all != 0;
}
template <int N>
__device__ __forceinline__ void set_max_regs_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void set_max_regs_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

}  // namespace moddit::cuda
