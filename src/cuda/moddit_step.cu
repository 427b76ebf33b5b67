// The MOD-DiT step kernels (moddit_step.hpp). Each mirrors a CPU function of
// src/core and must give its result: the same fused counts, the same fit up to
// the order of double sums, and, for the same fit, bit-identical masks.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <cmath>

#include "cuda/moddit_step.hpp"
#include "moddit/error.hpp"

namespace moddit::cuda {

namespace {

// One CTA per head and a single wave of heads (80 at Wan with CFG): as many
// threads per CTA as the SM takes shortens the per-head critical path.
constexpr int kThreads = 512;

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  MODDIT_CHECK(e == cudaSuccess, "cuda: ", what, ": ", cudaGetErrorString(e));
}

template <typename T>
__device__ T block_sum(T v, T* scratch /* kThreads / 32 */) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < kThreads / 32; ++w) total += scratch[w];
  return total;
}

// S[i][j] of the fused counts, as the host computes it (core/sparsity_map.cpp):
// float(count * (1/len_i) * (1/len_j)) in double, no fused multiply-add.
__device__ float map_value(uint16_t count, double inv_i, double inv_j) {
  return float(__dmul_rn(__dmul_rn(double(count), inv_i), inv_j));
}

// The small per-grid arrays the inner loops read, copied to shared memory
// (`tail`, grid_smem_bytes): returns a StepGrid pointing at the copies, and the
// reciprocal block lengths. Ends with a barrier.
size_t grid_smem_bytes(const StepGrid& g) {
  return sizeof(double) * g.n + sizeof(int32_t) * (3 * size_t(g.n) + 2 * g.F);
}
// Where the mask kernel's grid copy starts (8-byte aligned, after keep[F]).
__host__ __device__ size_t grid_offset(int P2, int L, int F) {
  return (size_t(P2) * (sizeof(double) + sizeof(int32_t)) +
          size_t(L) * (sizeof(int64_t) + sizeof(int32_t)) + size_t(F) + 7) / 8 * 8;
}
__device__ StepGrid stage_grid(const StepGrid& src, char* tail, const double** inv_len) {
  StepGrid g = src;
  double* inv = reinterpret_cast<double*>(tail);
  int32_t* len = reinterpret_cast<int32_t*>(inv + g.n);
  int32_t* rlo = len + g.n;
  int32_t* rhi = rlo + g.n;
  int32_t* flo = rhi + g.n;
  int32_t* fhi = flo + g.F;
  for (int i = threadIdx.x; i < g.n; i += kThreads) {
    len[i] = src.len[i];
    inv[i] = 1.0 / double(src.len[i]);
    rlo[i] = src.row_f_lo[i];
    rhi[i] = src.row_f_hi[i];
  }
  for (int f = threadIdx.x; f < g.F; f += kThreads) {
    flo[f] = src.frame_lo[f];
    fhi[f] = src.frame_hi[f];
  }
  g.len = len;
  g.row_f_lo = rlo;
  g.row_f_hi = rhi;
  g.frame_lo = flo;
  g.frame_hi = fhi;
  *inv_len = inv;
  __syncthreads();
  return g;
}

// Blocks (i, j) live before any line: the diagonal and the kept frame squares.
__device__ bool base_live(const StepGrid& g, const uint8_t* keep, int i, int j) {
  if (i == j) return true;
  for (int f = g.row_f_lo[i]; f <= g.row_f_hi[i]; ++f)
    if (keep[f] && j >= g.frame_lo[f] && j <= g.frame_hi[f]) return true;
  return false;
}

// ---------------------------------------------------------------------------
// The fit (core::fuse_counts, basis_project, RidgeFactor::solve, the NAE of
// core::fit_maps), one head per CTA.
// Shared: b[p] (M^T vec S, then the solution), y[max(2n-1, n+F)].
__global__ void __launch_bounds__(kThreads) fit_kernel(FitArgs a) {
  const int h = blockIdx.x, n = a.g.n, F = a.g.F, p = a.g.params(), nd = a.g.diagonals(), nr = n + F;
  const size_t nn = size_t(n) * n;
  extern __shared__ double smem[];
  double* b = smem;       // [p]
  double* y = smem + p;   // [max(nd, nr)]
  __shared__ double red[kThreads / 32];
  const double* inv = nullptr;
  const StepGrid g = stage_grid(a.g, reinterpret_cast<char*>(y + max(nd, nr)), &inv);

  // 1. Fuse the new counts into the stored ones.
  const int32_t* counts = a.counts + h * nn;
  uint16_t* fused = a.fused + h * nn;
  const uint32_t* live = a.live_mask ? a.live_mask + size_t(h) * n * g.words : nullptr;
  for (size_t k = threadIdx.x; k < nn; k += kThreads) {
    const int i = int(k / n), j = int(k % n);
    const int32_t c = counts[k];
    const bool take = c >= 0 && (!live || ((live[size_t(i) * g.words + j / 32] >> (j % 32)) & 1u));
    if (take) {
      if (c > g.len[i] * g.len[j]) atomicCAS(a.bad_count, 0, int(k) + 1);
      fused[k] = uint16_t(min(c, 65535));
    } else if (!a.has_previous) {
      fused[k] = 0;
    }
  }
  for (int k = threadIdx.x; k < p; k += kThreads) b[k] = 0.0;
  __syncthreads();

  // 2. b = M^T vec(S): diagonals, columns (a thread each), frames (a warp each).
  auto S = [&](int i, int j) { return double(map_value(fused[size_t(i) * n + j], inv[i], inv[j])); };
  for (int k = threadIdx.x; k < nd; k += kThreads) {
    const int d = k - (n - 1);
    double acc = 0.0;
    for (int i = max(0, -d); i < min(n, n - d); ++i) acc += S(i, i + d);
    b[k] = acc;
  }
  for (int j = threadIdx.x; j < n; j += kThreads) {
    double acc = 0.0;
    for (int i = 0; i < n; ++i) acc += S(i, j);
    b[nd + j] = acc;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int f = warp; f < F; f += kThreads / 32) {
    const int lo = g.frame_lo[f], L = g.frame_hi[f] - lo + 1;
    double acc = 0.0;
    for (int e = lane; e < L * L; e += 32) acc += S(lo + e / L, lo + e % L);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) b[nd + n + f] = acc;
  }
  __syncthreads();

  // 3. b_r -= B D^-1 b_d (RidgeFactor::apply_b).
  for (int k = threadIdx.x; k < nd; k += kThreads) y[k] = g.dinv[k] * b[k];
  __syncthreads();
  double* br = b + nd;
  for (int r = threadIdx.x; r < nr; r += kThreads) {
    double acc = 0.0;
    if (r < n) {
      for (int k = r; k < r + n; ++k) acc += y[k];  // column r meets diagonals [r, r+n-1]
    } else {
      const int L = g.frame_hi[r - n] - g.frame_lo[r - n] + 1;
      for (int d = -(L - 1); d <= L - 1; ++d) acc += (L - abs(d)) * y[d + n - 1];
    }
    br[r] -= acc;
  }
  __syncthreads();

  // 4. x_r = S^-1 b_r (y is free again and holds max(nd, nr) entries).
  double* xr = y;
  for (int r = threadIdx.x; r < nr; r += kThreads) {
    double acc = 0.0;
    for (int c = 0; c < nr; ++c) acc += g.sinv[size_t(c) * nr + r] * br[c];
    xr[r] = acc;
  }
  __syncthreads();
  for (int r = threadIdx.x; r < nr; r += kThreads) br[r] = xr[r];
  __syncthreads();

  // 5. x_d = D^-1 (b_d - B^T x_r) (RidgeFactor::apply_bt).
  for (int k = threadIdx.x; k < nd; k += kThreads) {
    const int d = k - (n - 1);
    double acc = 0.0;
    for (int j = max(0, d); j <= min(n - 1, n - 1 + d); ++j) acc += br[j];
    for (int f = 0; f < F; ++f) {
      const int L = g.frame_hi[f] - g.frame_lo[f] + 1;
      if (abs(d) < L) acc += (L - abs(d)) * br[n + f];
    }
    b[k] = g.dinv[k] * (b[k] - acc);
  }
  __syncthreads();
  double* x = a.x + size_t(h) * p;
  for (int k = threadIdx.x; k < p; k += kThreads) x[k] = b[k];

  // 6. NAE = ||S - M x|| / ||S||.
  double num = 0.0, den = 0.0;
  for (size_t k = threadIdx.x; k < nn; k += kThreads) {
    const int i = int(k / n), j = int(k % n);
    double fit = b[j - i + n - 1] + b[nd + j];
    for (int f = g.row_f_lo[i]; f <= g.row_f_hi[i]; ++f)
      if (j >= g.frame_lo[f] && j <= g.frame_hi[f]) fit += b[nd + n + f];
    const double s = S(i, j), r = s - fit;
    num += r * r;
    den += s * s;
  }
  num = block_sum(num, red);
  den = block_sum(den, red);
  if (threadIdx.x == 0) a.nae[h] = den > 0.0 ? sqrt(num / den) : 0.0;
}

// ---------------------------------------------------------------------------
// The masks (core::predict_linear, VideoMaskBuilder::build, the layout row
// sizes of core::layout_entries), one head per CTA.
//
// On the target path the host adds lines in rank order after the kept frames. A
// block (i, j) lies on exactly two lines, diagonal j-i and column j, so the area
// line l adds is the sum over its blocks that are not live before any line and
// whose other line ranks after l: every line's increment is independent. One
// thread then walks the increments (and the crossing line block by block).
// Shared: keys[P2] doubles, idx[P2], rank[L], fresh[L] int64, keep[F].
__global__ void __launch_bounds__(kThreads) mask_kernel(MaskArgs a, int P2) {
  const int h = blockIdx.x, n = a.g.n, F = a.g.F, p = a.g.params(), L = a.g.lines(),
            nd = a.g.diagonals();
  extern __shared__ double smem[];
  double* keys = smem;                                             // [P2]
  int64_t* fresh = reinterpret_cast<int64_t*>(keys + P2);          // [L]
  int32_t* idx = reinterpret_cast<int32_t*>(fresh + L);            // [P2]
  int32_t* rank = idx + P2;                                        // [L]
  uint8_t* keep = reinterpret_cast<uint8_t*>(rank + L);            // [F], then the grid
  __shared__ int64_t red[kThreads / 32];
  __shared__ int K, D, fcut, cut;  // the cut points of the walk (step 4)
  const double* inv = nullptr;
  const StepGrid g = stage_grid(a.g, reinterpret_cast<char*>(smem) + grid_offset(P2, L, F), &inv);
  (void)inv;

  const bool fitted = a.xb != nullptr;
  if (fitted) {
    const double* xb = a.xb + size_t(h) * p;
    const double* xa = a.xa + size_t(h) * p;
    // 1. Predicted line intensities; NaN ranks last (as +inf), ties by index.
    for (int l = threadIdx.x; l < P2; l += kThreads) {
      double v = HUGE_VAL;
      if (l < L) {
        v = a.r == 0.0 ? xb[l] : __fma_rn(__dsub_rn(xb[l], xa[l]), a.r, xb[l]);
        if (isnan(v)) v = HUGE_VAL;
      }
      keys[l] = v;
      idx[l] = l;
    }
    for (int f = threadIdx.x; f < F; f += kThreads)
      keep[f] = xa[3 * n - 1 + f] <= a.tau_e && xb[3 * n - 1 + f] <= a.tau_e;
    __syncthreads();
    // 2. Bitonic sort of (key, index), ascending.
    for (int size = 2; size <= P2; size <<= 1)
      for (int stride = size >> 1; stride > 0; stride >>= 1) {
        for (int t = threadIdx.x; t < P2 / 2; t += kThreads) {
          const int lo = 2 * t - (t & (stride - 1)), hi = lo + stride;
          const bool up = (lo & size) == 0;
          const double klo = keys[lo], khi = keys[hi];
          const bool greater = klo > khi || (klo == khi && idx[lo] > idx[hi]);
          if (greater == up) {
            keys[lo] = khi;
            keys[hi] = klo;
            const int32_t t2 = idx[lo];
            idx[lo] = idx[hi];
            idx[hi] = t2;
          }
        }
        __syncthreads();
      }
    for (int r = threadIdx.x; r < L; r += kThreads) rank[idx[r]] = r;
    __syncthreads();
    // 3. The area each line adds at its rank (only the ranks that can be used).
    const int ranks = a.top_k > 0 ? 0 : L;
    for (int r = threadIdx.x; r < ranks; r += kThreads) {
      const int line = idx[r];
      int64_t acc = 0;
      if (line < nd) {
        const int d = line - (n - 1);
        for (int i = max(0, -d); i < min(n, n - d); ++i) {
          const int j = i + d;
          if (rank[nd + j] > r && !base_live(g, keep, i, j)) acc += int64_t(g.len[i]) * g.len[j];
        }
      } else {
        const int j = line - nd;
        for (int i = 0; i < n; ++i)
          if (rank[j - i + n - 1] > r && !base_live(g, keep, i, j)) acc += int64_t(g.len[i]) * g.len[j];
      }
      fresh[r] = acc;
    }
    // 4. The target walk of VideoMaskBuilder::build_to_target: kept-frame blocks
    // nearest the diagonal first, then the lines, each block taken while it
    // brings the live area closer to the goal; the first that would not stops.
    // It ends as cut points: frame blocks at distance < D, or at D before row-major
    // index fcut; lines of rank < K, and line K's blocks whose other line ranks
    // below cut. keys[] is free after the sort: it holds the frame-block area by
    // distance (darea[0]: the diagonal).
    double* darea = keys;
    if (a.top_k == 0)
      for (int d = threadIdx.x; d < n; d += kThreads) {
        int64_t acc = 0;
        if (d == 0) {
          for (int i = 0; i < n; ++i) acc += int64_t(g.len[i]) * g.len[i];
        } else {
          for (int i = 0; i < n; ++i) {
            if (i - d >= 0 && base_live(g, keep, i, i - d)) acc += int64_t(g.len[i]) * g.len[i - d];
            if (i + d < n && base_live(g, keep, i, i + d)) acc += int64_t(g.len[i]) * g.len[i + d];
          }
        }
        darea[d] = double(acc);
      }
    __syncthreads();
    if (threadIdx.x == 0) {
      D = n;
      fcut = 0;
      K = a.top_k;
      cut = 0;
      if (a.top_k == 0) {
        const double goal = a.goal;
        int64_t live = int64_t(darea[0]);
        bool stopped = false;
        for (int d = 1; d < n && !stopped; ++d) {
          if (double(live) + darea[d] <= goal) {
            live += int64_t(darea[d]);
            continue;
          }
          for (int i = 0; i < n && !stopped; ++i)
            for (int side = 0; side < 2; ++side) {
              const int j = side == 0 ? i - d : i + d;
              if (j < 0 || j >= n || !base_live(g, keep, i, j)) continue;
              const int64_t ar = int64_t(g.len[i]) * g.len[j];
              if (!(2.0 * double(live) + double(ar) < 2.0 * goal)) {
                D = d;
                fcut = i * n + j;
                K = 0;
                stopped = true;
                break;
              }
              live += ar;
            }
        }
        if (!stopped) {
          K = L;
          cut = L;
          for (int k = 0; k < L && !stopped; ++k) {
            if (double(live) + double(fresh[k]) <= goal) {
              live += fresh[k];
              continue;
            }
            const int line = idx[k];
            for (int r2 = k + 1; r2 < L; ++r2) {
              const int other = idx[r2];
              int i, j;
              if (line < nd && other >= nd) {
                j = other - nd;
                i = j - (line - (n - 1));
              } else if (line >= nd && other < nd) {
                j = line - nd;
                i = j - (other - (n - 1));
              } else {
                continue;
              }
              if (i < 0 || i >= n || base_live(g, keep, i, j)) continue;
              const int64_t ar = int64_t(g.len[i]) * g.len[j];
              if (!(2.0 * double(live) + double(ar) < 2.0 * goal)) {
                K = k;
                cut = r2;
                stopped = true;
                break;
              }
              live += ar;
            }
          }
        }
      }
    }
    __syncthreads();
  }

  // 5. Mask bits row by row, the row's layout size and the live area.
  uint32_t* mask = a.mask + size_t(h) * n * g.words;
  int64_t area = 0;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    int live_blocks = 0;
    int64_t row_len = 0;
    for (int w = 0; w < g.words; ++w) {
      uint32_t bits = 0;
      for (int e = 0; e < 32; ++e) {
        const int j = w * 32 + e;
        if (j >= n) break;
        bool on = !fitted;
        if (!on) {
          const int rd = rank[j - i + n - 1], rc = rank[nd + j], dist = i < j ? j - i : i - j;
          on = i == j ||
               (base_live(g, keep, i, j) && (dist < D || (dist == D && i * n + j < fcut))) ||
               rd < K || rc < K || (rd == K && rc < cut) || (rc == K && rd < cut);
        }
        if (on) {
          bits |= 1u << e;
          row_len += g.len[j];
        }
      }
      mask[size_t(i) * g.words + w] = bits;
      live_blocks += __popc(bits);
    }
    area += row_len * g.len[i];
    if (a.row_entries) a.row_entries[size_t(h) * g.nb + g.fv + i] = g.nb - n + live_blocks;
  }
  if (a.row_entries)
    for (int qb = threadIdx.x; qb < g.nb; qb += kThreads)
      if (qb < g.fv || qb >= g.fv + n) a.row_entries[size_t(h) * g.nb + qb] = g.nb;  // text rows
  area = block_sum(area, red);
  if (threadIdx.x == 0) a.live_area[h] = area;
}

// ---------------------------------------------------------------------------
// Layout rows (core::write_layout_rows), a warp per row, and the row cost.
__global__ void __launch_bounds__(kThreads) layout_rows_kernel(LayoutArgs a, int rows) {
  const StepGrid& g = a.g;
  const int lane = threadIdx.x % 32;
  const int local = blockIdx.x * (kThreads / 32) + threadIdx.x / 32;
  if (local >= rows) return;
  const int h = local / g.nb, qb = local % g.nb;
  const int64_t r = a.row_begin + local;
  int32_t* out = a.col_idx + a.row_ptr[r];
  if (qb < g.fv || qb >= g.fv + g.n) {  // text row: dense
    for (int kb = lane; kb < g.nb; kb += 32) out[kb] = kb;
    if (lane == 0) a.cost[r] = g.full_row_tiles;
    return;
  }
  int cost = 0;
  for (int kb = lane; kb < g.fv; kb += 32) {
    out[kb] = kb;
    cost += g.tiles[kb];
  }
  int pos = g.fv;
  const uint32_t* row = a.mask + (size_t(h) * g.n + (qb - g.fv)) * g.words;
  for (int w0 = 0; w0 < g.words; w0 += 32) {
    const int w = w0 + lane;
    uint32_t bits = w < g.words ? row[w] : 0u;
    const int cnt = __popc(bits);
    int before = cnt;  // inclusive scan of the counts over the lanes
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, before, o);
      if (lane >= o) before += v;
    }
    int at = pos + before - cnt;
    while (bits) {
      const int kb = g.fv + w * 32 + __ffs(bits) - 1;
      out[at++] = kb;
      cost += g.tiles[kb];
      bits &= bits - 1;
    }
    pos += __shfl_sync(0xffffffffu, before, 31);
  }
  for (int kb = g.fv + g.n + lane; kb < g.nb; kb += 32) {
    out[pos + kb - (g.fv + g.n)] = kb;
    cost += g.tiles[kb];
  }
  for (int o = 16; o > 0; o >>= 1) cost += __shfl_xor_sync(0xffffffffu, cost, o);
  if (lane == 0) a.cost[r] = cost;
}

__global__ void iota_kernel(int32_t* v, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    v[i] = int32_t(i);
}

__global__ void density_kernel(const int64_t* live, int count, double total, float* out) {
  __shared__ double red[kThreads / 32];
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += kThreads) s += double(live[i]);
  s = block_sum(s, red);
  if (threadIdx.x == 0) *out = total > 0 ? float(s / (double(count) * total)) : 1.f;
}

int next_pow2(int x) {
  int p = 1;
  while (p < x) p <<= 1;
  return p;
}

void set_smem(const void* kernel, size_t bytes) {
  // Above 48 KiB a kernel must opt in; a grid too large for shared memory is refused.
  MODDIT_CHECK(bytes <= 227 * 1024, "moddit step: a ", bytes,
               "-byte working set per head exceeds shared memory (video block grid too large; "
               "use block_size 128 or set device_step = false)");
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  MODDIT_CHECK(e == cudaSuccess, "cuda: cudaFuncSetAttribute: ", cudaGetErrorString(e));
}

}  // namespace

void launch_fit(const FitArgs& a, int heads, cudaStream_t stream) {
  const size_t smem =
      sizeof(double) * (size_t(a.g.params()) + std::max(a.g.diagonals(), a.g.n + a.g.F)) +
      grid_smem_bytes(a.g);
  set_smem(reinterpret_cast<const void*>(&fit_kernel), smem);
  fit_kernel<<<heads, kThreads, smem, stream>>>(a);
  check_launch("fit kernel");
}

void launch_masks(const MaskArgs& a, int heads, cudaStream_t stream) {
  const int L = a.g.lines(), P2 = next_pow2(L);
  const size_t smem = grid_offset(P2, L, a.g.F) + grid_smem_bytes(a.g);
  set_smem(reinterpret_cast<const void*>(&mask_kernel), smem);
  mask_kernel<<<heads, kThreads, smem, stream>>>(a, P2);
  check_launch("mask kernel");
}

void launch_layout_rows(const LayoutArgs& a, int heads, cudaStream_t stream) {
  const int rows = heads * a.g.nb, per_cta = kThreads / 32;
  layout_rows_kernel<<<(rows + per_cta - 1) / per_cta, kThreads, 0, stream>>>(a, rows);
  check_launch("layout rows kernel");
}

namespace {

// schedule_rows' scratch: its arrays at fixed offsets (arithmetic only, no CUB
// query per call), then CUB's temporary storage in the rest.
struct ScheduleParts {
  size_t gcost = 0, gidx = 0, gorder = 0, gsorted = 0, grank = 0, key = 0, key_sorted = 0,
         values = 0, cub = 0;
};

size_t round256(size_t x) { return (x + 255) / 256 * 256; }

ScheduleParts schedule_parts(int64_t rows, int nb) {
  const size_t groups = size_t(rows / nb);
  ScheduleParts p;
  size_t at = 0;
  auto take = [&](size_t& field, size_t bytes) {
    field = at;
    at += round256(bytes);
  };
  take(p.gcost, sizeof(int32_t) * groups);
  take(p.gidx, sizeof(int32_t) * groups);
  take(p.gorder, sizeof(int32_t) * groups);
  take(p.gsorted, sizeof(int32_t) * groups);
  take(p.grank, sizeof(int32_t) * groups);
  take(p.key, sizeof(uint64_t) * size_t(rows));
  take(p.key_sorted, sizeof(uint64_t) * size_t(rows));
  take(p.values, sizeof(int32_t) * size_t(rows));
  p.cub = at;
  return p;
}

// A warp per group: its rows' total cost.
__global__ void group_cost_kernel(const int32_t* cost, int nb, int groups, int32_t* gcost) {
  const int gi = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (gi >= groups) return;
  int acc = 0;
  for (int r = lane; r < nb; r += 32) acc += cost[int64_t(gi) * nb + r];
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) gcost[gi] = acc;
}

__global__ void group_rank_kernel(const int32_t* gorder, int groups, int32_t* grank) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < groups; i += gridDim.x * blockDim.x)
    grank[gorder[i]] = i;
}

// key = group rank (high word), then the cost descending (low word); values = rows.
__global__ void row_key_kernel(const int32_t* cost, const int32_t* grank, int64_t rows, int nb,
                               uint64_t* key, int32_t* values) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    key[r] = (uint64_t(uint32_t(grank[r / nb])) << 32) | uint32_t(0x7fffffff - cost[r]);
    values[r] = int32_t(r);
  }
}

int bits_for(int64_t x) {
  int b = 1;
  while ((int64_t(1) << b) <= x) ++b;
  return b;
}

}  // namespace

// The arrays, then room for the largest CUB temporary (the scan of scan_rows uses
// the whole scratch before the arrays are written).
size_t schedule_scratch_bytes(int64_t rows, int nb) {
  const int groups = int(rows / nb);
  size_t scan = 0, sort_rows = 0, sort_groups = 0;
  cub::DeviceScan::InclusiveSum(nullptr, scan, static_cast<const int32_t*>(nullptr),
                                static_cast<int32_t*>(nullptr), int(rows));
  cub::DeviceRadixSort::SortPairs(nullptr, sort_rows, static_cast<const uint64_t*>(nullptr),
                                  static_cast<uint64_t*>(nullptr),
                                  static_cast<const int32_t*>(nullptr),
                                  static_cast<int32_t*>(nullptr), int(rows));
  cub::DeviceRadixSort::SortPairsDescending(nullptr, sort_groups,
                                            static_cast<const int32_t*>(nullptr),
                                            static_cast<int32_t*>(nullptr),
                                            static_cast<const int32_t*>(nullptr),
                                            static_cast<int32_t*>(nullptr), groups);
  return schedule_parts(rows, nb).cub + round256(std::max({scan, sort_rows, sort_groups}));
}

void scan_rows(const int32_t* row_entries, int32_t* row_ptr, int64_t rows, void* scratch,
               size_t scratch_bytes, cudaStream_t stream) {
  MODDIT_CHECK(rows < (int64_t(1) << 31), "moddit step: too many layout rows (", rows, ")");
  cudaError_t e = cudaMemsetAsync(row_ptr, 0, sizeof(int32_t), stream);
  if (e == cudaSuccess)
    e = cub::DeviceScan::InclusiveSum(scratch, scratch_bytes, row_entries, row_ptr + 1, int(rows),
                                      stream);
  MODDIT_CHECK(e == cudaSuccess, "cuda: layout row scan: ", cudaGetErrorString(e));
}

void schedule_rows(const int32_t* cost, int64_t rows, int nb, int32_t* order, void* scratch,
                   size_t scratch_bytes, cudaStream_t stream) {
  const ScheduleParts p = schedule_parts(rows, nb);
  MODDIT_CHECK(scratch_bytes > p.cub, "moddit step: schedule scratch too small");
  char* base = static_cast<char*>(scratch);
  void* cub_temp = base + p.cub;
  auto at = [&](size_t off) { return reinterpret_cast<int32_t*>(base + off); };
  const int groups = int(rows / nb);
  size_t cub_bytes = scratch_bytes - p.cub;
  group_cost_kernel<<<(groups + 7) / 8, 256, 0, stream>>>(cost, nb, groups, at(p.gcost));
  check_launch("group cost kernel");
  iota_kernel<<<int(std::min<int64_t>((groups + 255) / 256, 1024)), 256, 0, stream>>>(at(p.gidx), groups);
  check_launch("iota kernel");
  cudaError_t e = cub::DeviceRadixSort::SortPairsDescending(
      cub_temp, cub_bytes, at(p.gcost), at(p.gsorted), at(p.gidx), at(p.gorder), groups, 0, 31,
      stream);
  MODDIT_CHECK(e == cudaSuccess, "cuda: schedule sort (groups): ", cudaGetErrorString(e));
  group_rank_kernel<<<int(std::min((groups + 255) / 256, 1024)), 256, 0, stream>>>(at(p.gorder), groups,
                                                                                  at(p.grank));
  check_launch("group rank kernel");
  uint64_t* key = reinterpret_cast<uint64_t*>(base + p.key);
  uint64_t* key_sorted = reinterpret_cast<uint64_t*>(base + p.key_sorted);
  row_key_kernel<<<int(std::min<int64_t>((rows + 255) / 256, 4096)), 256, 0, stream>>>(
      cost, at(p.grank), rows, nb, key, at(p.values));
  check_launch("row key kernel");
  cub_bytes = scratch_bytes - p.cub;
  e = cub::DeviceRadixSort::SortPairs(cub_temp, cub_bytes, key, key_sorted, at(p.values), order,
                                      int(rows), 0, 32 + bits_for(groups), stream);
  MODDIT_CHECK(e == cudaSuccess, "cuda: schedule sort (rows): ", cudaGetErrorString(e));
}

void launch_density(const int64_t* live_area, int count, double total_area, float* out,
                    cudaStream_t stream) {
  density_kernel<<<1, kThreads, 0, stream>>>(live_area, count, total_area, out);
  check_launch("density kernel");
}

}  // namespace moddit::cuda
