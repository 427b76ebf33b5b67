// The MOD-DiT step on the host: per (layer, slot) state in host memory, the fit
// and the masks spread over threads (core/parallel.hpp).
#include <algorithm>
#include <climits>
#include <map>
#include <utility>

#include "core/moddit_engine.hpp"
#include "core/parallel.hpp"
#include "core/pattern_basis.hpp"
#include "core/ridge_fit.hpp"
#include "core/sparsity_map.hpp"
#include "core/video_mask.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace core {
namespace {

// State of one (layer, slot): every head's fused map, reference fits and latest mask.
struct SlotState {
  int n = 0, p = 0;
  std::shared_ptr<const RidgeFactor> factor;  // owns the basis of the fits
  std::vector<int64_t> len;     // video block lengths
  std::vector<uint16_t> fused;  // heads x n x n, exact counts (core/sparsity_map.hpp)
  bool has_map = false;
  int num_refs = 0;  // 0, 1 or 2 reference fits
  int t_a = 0, t_b = 0;
  std::vector<double> x_a, x_b;  // heads x p
  std::vector<uint64_t> mask_bits;  // heads x words, latest video mask
  bool has_mask = false;

  size_t words() const { return (static_cast<size_t>(n) * n + 63) / 64; }
};

// Per-call view of the grid: basis, factor, block lengths.
struct GridContext {
  PatternBasis basis;
  std::shared_ptr<const RidgeFactor> factor;
  std::vector<int64_t> len;
  int n = 0, p = 0;
};

class HostEngine final : public ModditEngine {
 public:
  HostEngine(const ModditConfig& cfg, int num_heads) : cfg_(cfg), num_heads_(num_heads) {}

  bool map_on_device() const override { return false; }
  Device device() const override { return Device::CPU; }
  Plan plan_masks(const CallInfo& call, CallKind kind) override;
  void observe(const CallInfo& call, const Plan& plan, const int32_t* map_counts) override;
  std::vector<float> fused_map(int layer, int slot, int head) const override;
  std::vector<float> fitted_map(int layer, int slot, int head) const override;
  std::vector<uint8_t> video_mask(int layer, int slot, int head) const override;
  const std::vector<FitRecord>& fits() override { return fits_; }
  int64_t state_bytes() const override;

 private:
  GridContext context(const CallInfo& c, bool need_factor) const {
    GridContext g;
    g.basis = make_pattern_basis(*c.grid, *c.tokens);
    g.n = g.basis.n;
    g.p = g.basis.num_params();
    g.len = video_block_lengths(*c.grid);
    if (need_factor) g.factor = ridge_factor(g.basis, cfg_.ridge_lambda);
    return g;
  }

  SlotState& state(int layer, int slot, const GridContext& g) {
    SlotState& s = states_[{layer, slot}];
    if (s.n == 0) {
      s.n = g.n;
      s.p = g.p;
      s.len = g.len;
    }
    MODDIT_CHECK(s.n == g.n && s.p == g.p, "moddit policy: layer ", layer, " slot ", slot,
                 " was fitted on a ", s.n, "x", s.n, " grid, this call has ", g.n, "x", g.n,
                 " (the token layout changed mid-run)");
    return s;
  }

  const SlotState* find(int layer, int slot) const {
    auto it = states_.find({layer, slot});
    return it == states_.end() ? nullptr : &it->second;
  }

  // The video mask of head h of a slot at `step` (all live before any fit).
  // pred, keep: the caller's scratch (one per thread). Returns false when the mask
  // did not come from `builder` (no fit yet: all live).
  bool head_mask(const SlotState& s, int h, int step, const GridContext& g,
                 VideoMaskBuilder& builder, std::vector<double>& pred,
                 std::vector<uint8_t>& keep, uint8_t* out) const {
    const int n = g.n, p = g.p, F = g.basis.num_frames();
    if (s.num_refs == 0) {
      std::fill(out, out + static_cast<size_t>(n) * n, uint8_t(1));
      return false;
    }
    const double* xb = &s.x_b[static_cast<size_t>(h) * p];
    const double* xa = s.num_refs == 2 ? &s.x_a[static_cast<size_t>(h) * p] : xb;
    pred.resize(static_cast<size_t>(g.basis.num_lines()));
    if (s.num_refs == 2)
      predict_linear(xa, s.t_a, xb, s.t_b, step, g.basis.num_lines(), pred.data());
    else
      std::copy(xb, xb + g.basis.num_lines(), pred.begin());
    keep.resize(static_cast<size_t>(F));
    for (int f = 0; f < F; ++f) {
      const int i = g.basis.frame_index(f);
      keep[f] = xa[i] <= cfg_.tau_e && xb[i] <= cfg_.tau_e;
    }
    builder.build(pred.data(), keep.data(), cfg_.top_k, cfg_.target_density, out);
    return true;
  }

  ModditConfig cfg_;
  int num_heads_ = 0;
  std::map<std::pair<int, int>, SlotState> states_;
  std::vector<FitRecord> fits_;
  // Scratch reused between calls.
  std::vector<uint8_t> masks_;  // batch x heads x n x n
  std::vector<float> maps_;
  std::vector<double> x_, nae_;
};

Plan HostEngine::plan_masks(const CallInfo& call, CallKind kind) {
  const int H = num_heads_;
  const GridContext g = context(call, false);
  const BlockGrid& grid = *call.grid;
  MODDIT_CHECK(cfg_.top_k <= g.basis.num_lines(), "top_k = ", cfg_.top_k, " exceeds the ",
               g.basis.num_lines(), " lines (diagonals + columns) of the ", g.n, "x", g.n,
               " video block grid");
  const size_t nn = static_cast<size_t>(g.n) * g.n;
  const int tasks = call.batch * H;  // task = b * H + h, the layout's row-set order
  std::vector<SlotState*> slots(static_cast<size_t>(call.batch));
  for (int b = 0; b < call.batch; ++b) {
    slots[b] = &state(call.layer, call.slot_begin + b, g);
    slots[b]->mask_bits.resize(static_cast<size_t>(H) * slots[b]->words());
    slots[b]->has_mask = true;
  }
  masks_.resize(nn * tasks);
  std::vector<int64_t> entries(static_cast<size_t>(tasks) + 1, 0);

  // Pass 1: every head's video mask and its number of layout entries.
  parallel_for(tasks, 2, [&](int begin, int end) {
    VideoMaskBuilder builder(g.basis, g.len);
    std::vector<double> pred;
    std::vector<uint8_t> keep;
    for (int t = begin; t < end; ++t) {
      uint8_t* m = &masks_[t * nn];
      if (head_mask(*slots[t / H], t % H, call.step, g, builder, pred, keep, m))
        entries[t + 1] = layout_entries_from_rows(builder.row_live(), grid);
      else
        entries[t + 1] = layout_entries(m, grid);
    }
  });
  for (int t = 0; t < tasks; ++t) entries[t + 1] += entries[t];
  MODDIT_CHECK(entries[tasks] < INT32_MAX, "moddit policy: the block layout has ",
               entries[tasks], " entries, more than int32 offsets hold");

  // Pass 2: the layout rows (text dense, diagonal kept) and the stored mask bits.
  BlockLayout layout;
  layout.batch = call.batch;
  layout.heads = H;
  layout.num_q_blocks = layout.num_k_blocks = grid.num_blocks();
  layout.row_ptr.resize(static_cast<size_t>(layout.rows()) + 1);
  layout.row_ptr[0] = 0;
  layout.col_idx.resize(static_cast<size_t>(entries[tasks]));
  const int nb = grid.num_blocks();
  parallel_for(tasks, 2, [&](int begin, int end) {
    for (int t = begin; t < end; ++t) {
      const uint8_t* m = &masks_[t * nn];
      write_layout_rows(m, grid, static_cast<int32_t>(entries[t]),
                              &layout.row_ptr[static_cast<size_t>(t) * nb + 1],
                              &layout.col_idx[static_cast<size_t>(entries[t])]);
      SlotState& s = *slots[t / H];
      pack_mask_bits(m, nn, &s.mask_bits[static_cast<size_t>(t % H) * s.words()]);
    }
  });

  Plan plan;
  plan.kind = kind;
  plan.record_map = kind == CallKind::Refresh;
  HeadGroup group;
  for (int h = 0; h < H; ++h) group.heads.push_back(h);
  if (kind == CallKind::Refresh && cfg_.refresh == "dense") {
    group.label = "dense";  // exact map over the whole row; fused on the predicted mask
  } else {
    group.label = kind == CallKind::Refresh ? "refresh" : "sparse";
    group.layout = std::move(layout);
  }
  plan.groups.push_back(std::move(group));
  return plan;
}

void HostEngine::observe(const CallInfo& call, const Plan& plan, const int32_t* map_counts) {
  const int H = num_heads_;
  const GridContext g = context(call, true);
  const size_t nn = static_cast<size_t>(g.n) * g.n;
  const int count = call.batch * H;
  maps_.resize(nn * count);
  x_.resize(static_cast<size_t>(count) * g.p);
  nae_.resize(static_cast<size_t>(count));
  // A dense refresh computes every block but, as the official code does, fuses only
  // the blocks the predicted mask of this step keeps (the rest keeps the old map).
  const bool fuse_on_mask = plan.kind == CallKind::Refresh && cfg_.refresh == "dense";
  std::vector<SlotState*> slots(static_cast<size_t>(call.batch));
  for (int b = 0; b < call.batch; ++b) {
    slots[b] = &state(call.layer, call.slot_begin + b, g);
    slots[b]->fused.resize(static_cast<size_t>(H) * nn);
  }
  parallel_for(count, 2, [&](int begin, int end) {
    std::vector<uint8_t> live;
    for (int c = begin; c < end; ++c) {
      SlotState& s = *slots[c / H];
      const int h = c % H;
      const uint8_t* live_ptr = nullptr;
      if (fuse_on_mask && s.has_mask) {
        live.resize(nn);
        const uint64_t* bits = &s.mask_bits[static_cast<size_t>(h) * s.words()];
        for (size_t k = 0; k < nn; ++k) live[k] = (bits[k >> 6] >> (k & 63)) & 1;
        live_ptr = live.data();
      }
      fuse_counts(map_counts + c * nn, live_ptr, g.len, s.has_map, &s.fused[h * nn],
                        &maps_[c * nn]);
    }
  });
  for (SlotState* s : slots) s->has_map = true;

  fit_maps(*g.factor, maps_.data(), count, x_.data(), nae_.data());

  const size_t hp = static_cast<size_t>(H) * g.p;
  for (int b = 0; b < call.batch; ++b) {
    const int slot = call.slot_begin + b;
    SlotState& s = state(call.layer, slot, g);
    s.factor = g.factor;
    const double* xb = &x_[b * hp];
    if (s.num_refs > 0 && s.t_b == call.step) {
      // The same step observed twice for this slot: the newer fit replaces it.
      s.x_b.assign(xb, xb + hp);
    } else {
      s.x_a.swap(s.x_b);
      s.t_a = s.t_b;
      s.x_b.assign(xb, xb + hp);
      s.t_b = call.step;
      s.num_refs = std::min(2, s.num_refs + 1);
    }
    for (int h = 0; h < H; ++h)
      fits_.push_back({call.step, call.layer, slot, h, nae_[static_cast<size_t>(b) * H + h]});
  }
}

std::vector<float> HostEngine::fused_map(int layer, int slot, int head) const {
  const SlotState* s = find(layer, slot);
  if (!s || !s->has_map || head < 0 || head >= num_heads_) return {};
  const size_t nn = static_cast<size_t>(s->n) * s->n;
  std::vector<float> out(nn);
  counts_to_map(&s->fused[head * nn], s->len, out.data());
  return out;
}

std::vector<float> HostEngine::fitted_map(int layer, int slot, int head) const {
  const SlotState* s = find(layer, slot);
  if (!s || s->num_refs == 0 || head < 0 || head >= num_heads_) return {};
  const size_t nn = static_cast<size_t>(s->n) * s->n;
  std::vector<double> fit(nn);
  basis_reconstruct(s->factor->basis(), &s->x_b[static_cast<size_t>(head) * s->p],
                          fit.data());
  return std::vector<float>(fit.begin(), fit.end());
}

std::vector<uint8_t> HostEngine::video_mask(int layer, int slot, int head) const {
  const SlotState* s = find(layer, slot);
  if (!s || !s->has_mask || head < 0 || head >= num_heads_) return {};
  const size_t nn = static_cast<size_t>(s->n) * s->n;
  std::vector<uint8_t> out(nn);
  const uint64_t* bits = &s->mask_bits[static_cast<size_t>(head) * s->words()];
  for (size_t k = 0; k < nn; ++k) out[k] = (bits[k >> 6] >> (k & 63)) & 1;
  return out;
}

int64_t HostEngine::state_bytes() const {
  int64_t total = 0;
  for (const auto& kv : states_) {
    const SlotState& s = kv.second;
    total += static_cast<int64_t>(sizeof(SlotState) + s.fused.size() * sizeof(uint16_t) +
                                  s.len.size() * sizeof(int64_t) +
                                  (s.x_a.size() + s.x_b.size()) * sizeof(double) +
                                  s.mask_bits.size() * sizeof(uint64_t));
  }
  return total;
}

}  // namespace

std::unique_ptr<ModditEngine> make_host_engine(const ModditConfig& config, int num_heads) {
  return std::make_unique<HostEngine>(config, num_heads);
}

}  // namespace core
}  // namespace moddit
