// The MOD-DiT step on the GPU (core/moddit_engine.hpp): per (layer, slot) state
// in device memory, every per-call operation a kernel (moddit_step.hpp), queued
// on the backend's stream with the attention kernels. The host keeps only what
// the schedule determines (reference steps, which buffer holds which fit), so a
// call never waits for the device; results people look at (maps, masks, NAEs)
// are copied back when asked for.
#include "cuda/moddit_device_engine.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <map>
#include <tuple>
#include <utility>

#include "core/moddit_engine.hpp"
#include "core/pattern_basis.hpp"
#include "core/ridge_fit.hpp"
#include "core/sparsity_map.hpp"
#include "core/video_mask.hpp"
#include "cuda/moddit_step.hpp"
#include "moddit/error.hpp"

namespace moddit::cuda {

namespace {

void check(cudaError_t e, const char* what) {
  MODDIT_CHECK(e == cudaSuccess, "cuda: ", what, ": ", cudaGetErrorString(e));
}

size_t align_up(size_t x) { return (x + 255) / 256 * 256; }

// Carves one allocation into 256-byte aligned parts.
class Arena {
 public:
  template <typename T>
  size_t add(size_t count) {
    const size_t at = size_;
    size_ = align_up(size_ + count * sizeof(T));
    return at;
  }
  size_t size() const { return size_; }

 private:
  size_t size_ = 0;
};

template <typename T>
T* at(const std::shared_ptr<void>& base, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base.get()) + offset);
}

// A video block grid on the device: its basis, block lengths and ridge factor.
struct GridOnDevice {
  core::PatternBasis basis;
  std::vector<int64_t> len;
  double total_area = 0.0;  // (video tokens)^2
  std::shared_ptr<void> mem;
  StepGrid g;  // pointers into mem
};

// One (layer, slot): fused counts, two fit buffers, the latest masks.
struct Slot {
  std::shared_ptr<const GridOnDevice> grid;
  std::shared_ptr<void> mem;
  size_t bytes = 0;
  uint16_t* fused = nullptr;  // [H, n, n]
  double* x[2] = {nullptr, nullptr};  // [H, p] each
  int newer = 0;              // x[newer] is the newest fit (x_b), x[1 - newer] the older (x_a)
  uint32_t* mask = nullptr;   // [H, n, words]
  bool has_map = false, has_mask = false;
  int num_refs = 0, t_a = 0, t_b = 0;
};

// NAEs of one observe(), on the device until fits() is asked for.
struct PendingFits {
  int step = 0, layer = 0, slot_begin = 0, batch = 0;
  std::shared_ptr<void> nae;  // [batch, H] doubles
};

class DeviceEngine final : public core::ModditEngine {
 public:
  DeviceEngine(const ModditConfig& cfg, int num_heads, Backend& backend, bool group_rows_by_head)
      : cfg_(cfg), heads_(num_heads), group_rows_by_head_(group_rows_by_head),
        owner_(backend.shared_from_this()), backend_(*owner_) {
    bad_count_ = backend_.allocate(sizeof(int));
    check(cudaMemsetAsync(bad_count_.get(), 0, sizeof(int), stream()), "memset");
  }

  bool map_on_device() const override { return true; }
  Device device() const override { return Device::CUDA; }

  Plan plan_masks(const CallInfo& call, CallKind kind) override {
    const auto grid = grid_for(call);
    const StepGrid& g = grid->g;
    MODDIT_CHECK(cfg_.top_k <= g.lines(), "top_k = ", cfg_.top_k, " exceeds the ", g.lines(),
                 " lines (diagonals + columns) of the ", g.n, "x", g.n, " video block grid");
    const int B = call.batch, H = heads_, tasks = B * H;
    const int64_t rows = int64_t(tasks) * g.nb;
    MODDIT_CHECK(rows * g.nb < INT32_MAX, "moddit step: a layout of ", rows, " rows x ", g.nb,
                 " blocks does not fit int32 offsets");
    const bool dense_refresh = kind == CallKind::Refresh && cfg_.refresh == "dense";

    // The backend's row schedule (CudaOptions::group_rows_by_head; lpt: one group).
    const int sched_group = group_rows_by_head_ ? g.nb : int(rows);
    // Everything the layout needs, in one buffer the engine reuses call after call:
    // the next call's kernels are queued after this call's attention on the same
    // stream, so they overwrite it only once the attention has read it. (A fresh
    // allocation per call made the pool grow and shrink around every
    // synchronisation while the host ran layers ahead.)
    const size_t sched = dense_refresh ? 0 : schedule_scratch_bytes(rows, sched_group);
    Arena ar;
    const size_t o_entries = ar.add<int32_t>(size_t(rows));
    const size_t o_live = ar.add<int64_t>(size_t(tasks));
    const size_t o_row_ptr = ar.add<int32_t>(size_t(rows) + 1);
    const size_t o_col = ar.add<int32_t>(dense_refresh ? 0 : size_t(rows) * g.nb);
    const size_t o_cost = ar.add<int32_t>(dense_refresh ? 0 : size_t(rows));
    const size_t o_order = ar.add<int32_t>(dense_refresh ? 0 : size_t(rows));
    const size_t o_scratch = ar.add<char>(sched);
    std::shared_ptr<void> mem = scratch(ar.size());
    cudaStream_t s = stream();

    for (int b = 0; b < B; ++b) {
      Slot& slot = state(call.layer, call.slot_begin + b, grid);
      MaskArgs a;
      a.g = g;
      if (slot.num_refs > 0) {
        a.xb = slot.x[slot.newer];
        a.xa = slot.num_refs == 2 ? slot.x[1 - slot.newer] : a.xb;
        a.r = slot.num_refs == 2 ? double(call.step - slot.t_b) / double(slot.t_b - slot.t_a) : 0.0;
      }
      a.tau_e = cfg_.tau_e;
      a.top_k = cfg_.top_k;
      a.goal = cfg_.target_density * grid->total_area;
      a.mask = slot.mask;
      a.row_entries = at<int32_t>(mem, o_entries) + size_t(b) * H * g.nb;
      a.live_area = at<int64_t>(mem, o_live) + size_t(b) * H;
      launch_masks(a, H, s);
      slot.has_mask = true;
    }

    Plan plan;
    plan.kind = kind;
    plan.record_map = kind == CallKind::Refresh;
    HeadGroup group;
    for (int h = 0; h < H; ++h) group.heads.push_back(h);
    if (dense_refresh) {
      group.label = "dense";  // exact map over the whole row; fused on the predicted mask
      plan.groups.push_back(std::move(group));
      return plan;
    }

    int32_t* row_ptr = at<int32_t>(mem, o_row_ptr);
    scan_rows(at<int32_t>(mem, o_entries), row_ptr, rows, at<char>(mem, o_scratch), sched, s);
    for (int b = 0; b < B; ++b) {
      LayoutArgs l;
      l.g = g;
      l.mask = states_.at({call.layer, call.slot_begin + b}).mask;
      l.row_ptr = row_ptr;
      l.col_idx = at<int32_t>(mem, o_col);
      l.cost = at<int32_t>(mem, o_cost);
      l.row_begin = int64_t(b) * H * g.nb;
      launch_layout_rows(l, H, s);
    }
    int32_t* order = at<int32_t>(mem, o_order);
    schedule_rows(at<int32_t>(mem, o_cost), rows, sched_group, order, at<char>(mem, o_scratch), sched, s);
    std::shared_ptr<const float> density = next_density_slot();
    launch_density(at<int64_t>(mem, o_live), tasks, grid->total_area,
                   const_cast<float*>(density.get()), s);

    auto dl = std::make_shared<DeviceLayout>();
    dl->batch = B;
    dl->heads = H;
    dl->num_q_blocks = dl->num_k_blocks = g.nb;
    dl->row_ptr = row_ptr;
    dl->col_idx = at<int32_t>(mem, o_col);
    dl->order = order;
    dl->density_when_synced = std::move(density);
    dl->storage = std::move(mem);
    group.label = kind == CallKind::Refresh ? "refresh" : "sparse";
    group.device_layout = std::move(dl);
    plan.groups.push_back(std::move(group));
    return plan;
  }

  void observe(const CallInfo& call, const Plan& plan, const int32_t* map_counts) override {
    const auto grid = grid_for(call);
    const StepGrid& g = grid->g;
    const int B = call.batch, H = heads_;
    const size_t nn = size_t(g.n) * g.n;
    // A dense refresh computes every block but, as the official code does, fuses
    // only the blocks the predicted mask of this step keeps.
    const bool fuse_on_mask = plan.kind == CallKind::Refresh && cfg_.refresh == "dense";
    PendingFits pf;
    pf.step = call.step;
    pf.layer = call.layer;
    pf.slot_begin = call.slot_begin;
    pf.batch = B;
    pf.nae = backend_.allocate(sizeof(double) * size_t(B) * H);
    for (int b = 0; b < B; ++b) {
      Slot& slot = state(call.layer, call.slot_begin + b, grid);
      // The same step observed twice for a slot: the newer fit replaces it.
      const bool replace = slot.num_refs > 0 && slot.t_b == call.step;
      const int target = replace ? slot.newer : 1 - slot.newer;
      FitArgs a;
      a.g = g;
      a.counts = map_counts + size_t(b) * H * nn;
      a.fused = slot.fused;
      a.has_previous = slot.has_map;
      a.live_mask = fuse_on_mask && slot.has_mask ? slot.mask : nullptr;
      a.x = slot.x[target];
      a.nae = static_cast<double*>(pf.nae.get()) + size_t(b) * H;
      a.bad_count = static_cast<int*>(bad_count_.get());
      launch_fit(a, H, stream());
      slot.has_map = true;
      if (!replace) {
        slot.newer = target;
        slot.t_a = slot.t_b;
        slot.t_b = call.step;
        slot.num_refs = std::min(2, slot.num_refs + 1);
      }
    }
    pending_.push_back(std::move(pf));
  }

  std::vector<float> fused_map(int layer, int slot, int head) const override {
    const Slot* s = find(layer, slot);
    if (!s || !s->has_map || head < 0 || head >= heads_) return {};
    const size_t nn = size_t(s->grid->g.n) * s->grid->g.n;
    std::vector<uint16_t> counts(nn);
    backend_.copy_to_host(counts.data(), s->fused + head * nn, nn * sizeof(uint16_t));
    check_counts();
    std::vector<float> out(nn);
    core::counts_to_map(counts.data(), s->grid->len, out.data());
    return out;
  }

  std::vector<float> fitted_map(int layer, int slot, int head) const override {
    const Slot* s = find(layer, slot);
    if (!s || s->num_refs == 0 || head < 0 || head >= heads_) return {};
    const int p = s->grid->g.params(), n = s->grid->g.n;
    std::vector<double> x(static_cast<size_t>(p)), fit(static_cast<size_t>(n) * n);
    backend_.copy_to_host(x.data(), s->x[s->newer] + size_t(head) * p, x.size() * sizeof(double));
    core::basis_reconstruct(s->grid->basis, x.data(), fit.data());
    return std::vector<float>(fit.begin(), fit.end());
  }

  std::vector<uint8_t> video_mask(int layer, int slot, int head) const override {
    const Slot* s = find(layer, slot);
    if (!s || !s->has_mask || head < 0 || head >= heads_) return {};
    const int n = s->grid->g.n, words = s->grid->g.words;
    std::vector<uint32_t> bits(size_t(n) * words);
    backend_.copy_to_host(bits.data(), s->mask + size_t(head) * n * words,
                          bits.size() * sizeof(uint32_t));
    std::vector<uint8_t> out(size_t(n) * n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) out[size_t(i) * n + j] = (bits[size_t(i) * words + j / 32] >> (j % 32)) & 1u;
    return out;
  }

  const std::vector<FitRecord>& fits() override {
    if (!pending_.empty()) {
      check_counts();
      for (const PendingFits& pf : pending_) {
        std::vector<double> nae(size_t(pf.batch) * heads_);
        backend_.copy_to_host(nae.data(), pf.nae.get(), nae.size() * sizeof(double));
        for (int b = 0; b < pf.batch; ++b)
          for (int h = 0; h < heads_; ++h)
            fits_.push_back({pf.step, pf.layer, pf.slot_begin + b, h, nae[size_t(b) * heads_ + h]});
      }
      pending_.clear();
    }
    return fits_;
  }

  int64_t state_bytes() const override {
    int64_t total = 0;
    for (const auto& kv : states_) total += int64_t(kv.second.bytes + sizeof(Slot));
    return total;
  }

 private:
  cudaStream_t stream() const { return static_cast<cudaStream_t>(backend_.stream()); }

  // The per-call layout buffer, grown when a call needs more (the old one is
  // freed in stream order once the plans holding it are gone).
  std::shared_ptr<void> scratch(size_t bytes) {
    if (scratch_bytes_ < bytes) {
      scratch_ = backend_.allocate(bytes);
      scratch_bytes_ = bytes;
    }
    return scratch_;
  }

  // A count above its block's pairs is a backend bug; the fit kernel flags it and
  // the first host read after it reports it.
  void check_counts() const {
    int bad = 0;
    backend_.copy_to_host(&bad, bad_count_.get(), sizeof(int));
    MODDIT_CHECK(bad == 0, "sparsity map: a count at video block ", bad - 1,
                 " (row-major n x n) exceeds its block's query-key pairs");
  }

  const Slot* find(int layer, int slot) const {
    auto it = states_.find({layer, slot});
    return it == states_.end() ? nullptr : &it->second;
  }

  Slot& state(int layer, int slot, const std::shared_ptr<const GridOnDevice>& grid) {
    Slot& s = states_[{layer, slot}];
    if (!s.grid) {
      const StepGrid& g = grid->g;
      const size_t nn = size_t(g.n) * g.n;
      Arena ar;
      const size_t o_fused = ar.add<uint16_t>(size_t(heads_) * nn);
      const size_t o_x0 = ar.add<double>(size_t(heads_) * g.params());
      const size_t o_x1 = ar.add<double>(size_t(heads_) * g.params());
      const size_t o_mask = ar.add<uint32_t>(size_t(heads_) * g.n * g.words);
      s.mem = backend_.allocate(ar.size());
      s.bytes = ar.size();
      s.fused = at<uint16_t>(s.mem, o_fused);
      s.x[0] = at<double>(s.mem, o_x0);
      s.x[1] = at<double>(s.mem, o_x1);
      s.mask = at<uint32_t>(s.mem, o_mask);
      s.grid = grid;
    }
    MODDIT_CHECK(s.grid->basis == grid->basis, "moddit policy: layer ", layer, " slot ", slot,
                 " was fitted on a ", s.grid->g.n, "x", s.grid->g.n, " grid, this call has ",
                 grid->g.n, "x", grid->g.n, " (the token layout changed mid-run)");
    return s;
  }

  // The device copy of a grid (basis, lengths, factor), built once per grid. The
  // key is everything the copy depends on: block starts alone do not say where
  // the video begins (text of a whole number of blocks before or after it tiles
  // the same starts), so the first video block is part of it.
  std::shared_ptr<const GridOnDevice> grid_for(const CallInfo& call) {
    const BlockGrid& bg = *call.grid;
    GridKey key{bg.starts, call.tokens->tokens_per_frame(), bg.first_video_block};
    auto it = grids_.find(key);
    if (it != grids_.end()) return it->second;
    auto d = std::make_shared<GridOnDevice>();
    d->basis = core::make_pattern_basis(bg, *call.tokens);
    d->len = core::video_block_lengths(bg);
    const core::PatternBasis& pb = d->basis;
    const int n = pb.n, F = pb.num_frames(), nb = bg.num_blocks();
    const auto factor = core::ridge_factor(pb, cfg_.ridge_lambda);
    const std::vector<double> sinv = factor->schur_inverse();
    double V = 0.0;
    std::vector<int32_t> len(n), row_lo(n, INT32_MAX), row_hi(n, -1), tiles(nb);
    for (int i = 0; i < n; ++i) {
      len[i] = int32_t(d->len[i]);
      V += double(d->len[i]);
    }
    d->total_area = V * V;
    for (int f = 0; f < F; ++f)
      for (int i = pb.frame_lo[f]; i <= pb.frame_hi[f]; ++i) {
        row_lo[i] = std::min(row_lo[i], f);
        row_hi[i] = std::max(row_hi[i], f);
      }
    int full = 0;
    for (int b = 0; b < nb; ++b) full += tiles[b] = (bg.block_len(b) + 63) / 64;

    Arena ar;
    const size_t o_len = ar.add<int32_t>(n), o_flo = ar.add<int32_t>(F), o_fhi = ar.add<int32_t>(F),
                 o_rlo = ar.add<int32_t>(n), o_rhi = ar.add<int32_t>(n), o_tiles = ar.add<int32_t>(nb),
                 o_dinv = ar.add<double>(factor->dinv().size()), o_sinv = ar.add<double>(sinv.size());
    d->mem = backend_.allocate(ar.size());
    auto up = [&](size_t offset, const void* src, size_t bytes) {
      backend_.copy_from_host(at<char>(d->mem, offset), src, bytes);
    };
    up(o_len, len.data(), len.size() * 4);
    up(o_flo, pb.frame_lo.data(), size_t(F) * 4);
    up(o_fhi, pb.frame_hi.data(), size_t(F) * 4);
    up(o_rlo, row_lo.data(), size_t(n) * 4);
    up(o_rhi, row_hi.data(), size_t(n) * 4);
    up(o_tiles, tiles.data(), tiles.size() * 4);
    up(o_dinv, factor->dinv().data(), factor->dinv().size() * 8);
    up(o_sinv, sinv.data(), sinv.size() * 8);
    StepGrid& g = d->g;
    g.n = n;
    g.F = F;
    g.nb = nb;
    g.fv = bg.first_video_block;
    g.words = (n + 31) / 32;
    g.len = at<int32_t>(d->mem, o_len);
    g.frame_lo = at<int32_t>(d->mem, o_flo);
    g.frame_hi = at<int32_t>(d->mem, o_fhi);
    g.row_f_lo = at<int32_t>(d->mem, o_rlo);
    g.row_f_hi = at<int32_t>(d->mem, o_rhi);
    g.tiles = at<int32_t>(d->mem, o_tiles);
    g.dinv = at<double>(d->mem, o_dinv);
    g.sinv = at<double>(d->mem, o_sinv);
    g.full_row_tiles = full;
    if (grids_.size() >= 8) grids_.clear();  // slots keep theirs alive
    grids_.emplace(std::move(key), d);
    return d;
  }

  // One pinned float per sparse call, for the layout's density; chunks are
  // allocated rarely (cudaMallocHost may synchronise) and freed when the last
  // layout or pending history entry referring to them is gone.
  std::shared_ptr<const float> next_density_slot() {
    constexpr int kChunk = 4096;
    if (!pinned_ || pinned_used_ == kChunk) {
      void* p = nullptr;
      check(cudaMallocHost(&p, kChunk * sizeof(float)), "cudaMallocHost");
      pinned_ = std::shared_ptr<float>(static_cast<float*>(p), [](float* q) { cudaFreeHost(q); });
      pinned_used_ = 0;
    }
    return std::shared_ptr<const float>(pinned_, pinned_.get() + pinned_used_++);
  }

  ModditConfig cfg_;
  int heads_;
  bool group_rows_by_head_;
  std::shared_ptr<Backend> owner_;  // the state lives in its memory: keep it alive
  Backend& backend_;
  using GridKey = std::tuple<std::vector<int32_t>, int64_t, int>;  // starts, P, first video block
  std::map<GridKey, std::shared_ptr<const GridOnDevice>> grids_;
  std::map<std::pair<int, int>, Slot> states_;
  std::vector<PendingFits> pending_;
  std::vector<FitRecord> fits_;
  std::shared_ptr<void> bad_count_;
  std::shared_ptr<void> scratch_;
  size_t scratch_bytes_ = 0;
  std::shared_ptr<float> pinned_;
  int pinned_used_ = 0;
};

}  // namespace

std::unique_ptr<core::ModditEngine> make_moddit_device_engine(const ModditConfig& config,
                                                              int num_heads, Backend& backend,
                                                              bool group_rows_by_head) {
  MODDIT_CHECK(backend.device() == Device::CUDA, "moddit step: the device engine needs a CUDA backend");
  return std::make_unique<DeviceEngine>(config, num_heads, backend, group_rows_by_head);
}

}  // namespace moddit::cuda
