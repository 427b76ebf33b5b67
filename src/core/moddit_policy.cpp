#include "moddit/moddit_policy.hpp"

#include <algorithm>
#include <climits>
#include <map>
#include <utility>

#include "core/parallel.hpp"
#include "core/pattern_basis.hpp"
#include "core/ridge_fit.hpp"
#include "core/schedule.hpp"
#include "core/sparsity_map.hpp"
#include "core/video_mask.hpp"
#include "moddit/error.hpp"

namespace moddit {

namespace {

// State of one (layer, slot): every head's fused map, reference fits and latest mask.
struct SlotState {
  int n = 0, p = 0;
  std::shared_ptr<const core::RidgeFactor> factor;  // owns the basis of the fits
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
  core::PatternBasis basis;
  std::shared_ptr<const core::RidgeFactor> factor;
  std::vector<int64_t> len;
  int n = 0, p = 0;
};

}  // namespace

struct ModditPolicy::Impl {
  ModditConfig cfg;
  int num_layers = 0, num_heads = 0;
  std::vector<uint8_t> dense_layer;
  std::map<std::pair<int, int>, SlotState> states;
  std::vector<FitRecord> fits;
  // Scratch reused between calls.
  std::vector<uint8_t> masks;  // batch x heads x n x n
  std::vector<float> maps;
  std::vector<double> x, nae;

  void check_call(const CallInfo& c) const {
    MODDIT_CHECK(c.layer >= 0 && c.layer < num_layers, "moddit policy: layer ", c.layer,
                 " out of range [0, ", num_layers, ")");
    MODDIT_CHECK(c.num_heads == num_heads, "moddit policy: call has ", c.num_heads,
                 " heads, the policy was made for ", num_heads);
    MODDIT_CHECK(c.batch > 0 && c.slot_begin >= 0, "moddit policy: bad batch ", c.batch,
                 " or slot_begin ", c.slot_begin);
    MODDIT_CHECK(c.step >= 0 && (c.num_steps <= 0 || c.step < c.num_steps), "moddit policy: step ",
                 c.step, " out of range [0, num_steps=", c.num_steps, ")");
    MODDIT_CHECK(c.tokens && c.grid, "moddit policy: call has no token layout or grid");
    MODDIT_CHECK(c.grid->block_size == cfg.block_size, "moddit policy: grid block size ",
                 c.grid->block_size, " differs from config block_size ", cfg.block_size);
  }

  GridContext context(const CallInfo& c, bool need_factor) const {
    GridContext g;
    g.basis = core::make_pattern_basis(*c.grid, *c.tokens);
    g.n = g.basis.n;
    g.p = g.basis.num_params();
    g.len = core::video_block_lengths(*c.grid);
    if (need_factor) g.factor = core::ridge_factor(g.basis, cfg.ridge_lambda);
    return g;
  }

  SlotState& state(int layer, int slot, const GridContext& g) {
    SlotState& s = states[{layer, slot}];
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
    auto it = states.find({layer, slot});
    return it == states.end() ? nullptr : &it->second;
  }

  // The video mask of head h of a slot at `step` (all live before any fit).
  // pred, keep: the caller's scratch (one per thread). Returns false when the mask
  // did not come from `builder` (no fit yet: all live).
  bool head_mask(const SlotState& s, int h, int step, const GridContext& g,
                 core::VideoMaskBuilder& builder, std::vector<double>& pred,
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
      core::predict_linear(xa, s.t_a, xb, s.t_b, step, g.basis.num_lines(), pred.data());
    else
      std::copy(xb, xb + g.basis.num_lines(), pred.begin());
    keep.resize(static_cast<size_t>(F));
    for (int f = 0; f < F; ++f) {
      const int i = g.basis.frame_index(f);
      keep[f] = xa[i] <= cfg.tau_e && xb[i] <= cfg.tau_e;
    }
    builder.build(pred.data(), keep.data(), cfg.top_k, cfg.target_density, out);
    return true;
  }
};

ModditPolicy::ModditPolicy(const ModditConfig& config, int num_layers, int num_heads)
    : impl_(std::make_unique<Impl>()) {
  config.validate();
  MODDIT_CHECK(num_layers > 0, "moddit policy: num_layers must be > 0, got ", num_layers);
  MODDIT_CHECK(num_heads > 0, "moddit policy: num_heads must be > 0, got ", num_heads);
  impl_->cfg = config;
  impl_->num_layers = num_layers;
  impl_->num_heads = num_heads;
  impl_->dense_layer.assign(static_cast<size_t>(num_layers), 0);
  for (int l : config.dense_layers) {
    MODDIT_CHECK(l >= 0 && l < num_layers, "dense_layers: layer ", l, " out of range [0, ",
                 num_layers, ")");
    impl_->dense_layer[l] = 1;
  }
}

ModditPolicy::~ModditPolicy() = default;

const ModditConfig& ModditPolicy::config() const { return impl_->cfg; }

Plan ModditPolicy::plan(const CallInfo& call) {
  Impl& I = *impl_;
  I.check_call(call);
  const int H = I.num_heads;
  if (I.dense_layer[call.layer]) return dense_plan(H, false);
  const CallKind kind = core::schedule_kind(call.step, I.cfg.warmup_steps, I.cfg.interval);
  if (kind == CallKind::Dense) return dense_plan(H, false);
  if (kind == CallKind::Record) return dense_plan(H, true);

  const GridContext g = I.context(call, false);
  const BlockGrid& grid = *call.grid;
  MODDIT_CHECK(I.cfg.top_k <= g.basis.num_lines(), "top_k = ", I.cfg.top_k, " exceeds the ",
               g.basis.num_lines(), " lines (diagonals + columns) of the ", g.n, "x", g.n,
               " video block grid");
  const size_t nn = static_cast<size_t>(g.n) * g.n;
  const int tasks = call.batch * H;  // task = b * H + h, the layout's row-set order
  std::vector<SlotState*> slots(static_cast<size_t>(call.batch));
  for (int b = 0; b < call.batch; ++b) {
    slots[b] = &I.state(call.layer, call.slot_begin + b, g);
    slots[b]->mask_bits.resize(static_cast<size_t>(H) * slots[b]->words());
    slots[b]->has_mask = true;
  }
  I.masks.resize(nn * tasks);
  std::vector<int64_t> entries(static_cast<size_t>(tasks) + 1, 0);

  // Pass 1: every head's video mask and its number of layout entries.
  core::parallel_for(tasks, 2, [&](int begin, int end) {
    core::VideoMaskBuilder builder(g.basis, g.len);
    std::vector<double> pred;
    std::vector<uint8_t> keep;
    for (int t = begin; t < end; ++t) {
      uint8_t* m = &I.masks[t * nn];
      if (I.head_mask(*slots[t / H], t % H, call.step, g, builder, pred, keep, m))
        entries[t + 1] = core::layout_entries_from_rows(builder.row_live(), grid);
      else
        entries[t + 1] = core::layout_entries(m, grid);
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
  core::parallel_for(tasks, 2, [&](int begin, int end) {
    for (int t = begin; t < end; ++t) {
      const uint8_t* m = &I.masks[t * nn];
      core::write_layout_rows(m, grid, static_cast<int32_t>(entries[t]),
                              &layout.row_ptr[static_cast<size_t>(t) * nb + 1],
                              &layout.col_idx[static_cast<size_t>(entries[t])]);
      SlotState& s = *slots[t / H];
      core::pack_mask_bits(m, nn, &s.mask_bits[static_cast<size_t>(t % H) * s.words()]);
    }
  });

  Plan plan;
  plan.kind = kind;
  plan.record_map = kind == CallKind::Refresh;
  HeadGroup group;
  for (int h = 0; h < H; ++h) group.heads.push_back(h);
  if (kind == CallKind::Refresh && I.cfg.refresh == "dense") {
    group.label = "dense";  // exact map over the whole row; fused on the predicted mask
  } else {
    group.label = kind == CallKind::Refresh ? "refresh" : "sparse";
    group.layout = std::move(layout);
  }
  plan.groups.push_back(std::move(group));
  return plan;
}

void ModditPolicy::observe(const CallInfo& call, const Plan& plan, const int32_t* map_counts) {
  Impl& I = *impl_;
  I.check_call(call);
  if (I.dense_layer[call.layer] || !plan.record_map || !map_counts) return;
  const int H = I.num_heads;
  const GridContext g = I.context(call, true);
  const size_t nn = static_cast<size_t>(g.n) * g.n;
  const int count = call.batch * H;
  I.maps.resize(nn * count);
  I.x.resize(static_cast<size_t>(count) * g.p);
  I.nae.resize(static_cast<size_t>(count));
  // A dense refresh computes every block but, as the official code does, fuses only
  // the blocks the predicted mask of this step keeps (the rest keeps the old map).
  const bool fuse_on_mask = plan.kind == CallKind::Refresh && I.cfg.refresh == "dense";
  std::vector<SlotState*> slots(static_cast<size_t>(call.batch));
  for (int b = 0; b < call.batch; ++b) {
    slots[b] = &I.state(call.layer, call.slot_begin + b, g);
    slots[b]->fused.resize(static_cast<size_t>(H) * nn);
  }
  core::parallel_for(count, 2, [&](int begin, int end) {
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
      core::fuse_counts(map_counts + c * nn, live_ptr, g.len, s.has_map, &s.fused[h * nn],
                        &I.maps[c * nn]);
    }
  });
  for (SlotState* s : slots) s->has_map = true;

  core::fit_maps(*g.factor, I.maps.data(), count, I.x.data(), I.nae.data());

  const size_t hp = static_cast<size_t>(H) * g.p;
  for (int b = 0; b < call.batch; ++b) {
    const int slot = call.slot_begin + b;
    SlotState& s = I.state(call.layer, slot, g);
    s.factor = g.factor;
    const double* xb = &I.x[b * hp];
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
      I.fits.push_back({call.step, call.layer, slot, h, I.nae[static_cast<size_t>(b) * H + h]});
  }
}

std::vector<float> ModditPolicy::fused_map(int layer, int slot, int head) const {
  const SlotState* s = impl_->find(layer, slot);
  if (!s || !s->has_map || head < 0 || head >= impl_->num_heads) return {};
  const size_t nn = static_cast<size_t>(s->n) * s->n;
  std::vector<float> out(nn);
  core::counts_to_map(&s->fused[head * nn], s->len, out.data());
  return out;
}

std::vector<float> ModditPolicy::fitted_map(int layer, int slot, int head) const {
  const SlotState* s = impl_->find(layer, slot);
  if (!s || s->num_refs == 0 || head < 0 || head >= impl_->num_heads) return {};
  const size_t nn = static_cast<size_t>(s->n) * s->n;
  std::vector<double> fit(nn);
  core::basis_reconstruct(s->factor->basis(), &s->x_b[static_cast<size_t>(head) * s->p],
                          fit.data());
  return std::vector<float>(fit.begin(), fit.end());
}

std::vector<uint8_t> ModditPolicy::video_mask(int layer, int slot, int head) const {
  const SlotState* s = impl_->find(layer, slot);
  if (!s || !s->has_mask || head < 0 || head >= impl_->num_heads) return {};
  const size_t nn = static_cast<size_t>(s->n) * s->n;
  std::vector<uint8_t> out(nn);
  const uint64_t* bits = &s->mask_bits[static_cast<size_t>(head) * s->words()];
  for (size_t k = 0; k < nn; ++k) out[k] = (bits[k >> 6] >> (k & 63)) & 1;
  return out;
}

const std::vector<FitRecord>& ModditPolicy::fits() const { return impl_->fits; }

int64_t ModditPolicy::state_bytes() const {
  int64_t total = 0;
  for (const auto& kv : impl_->states) {
    const SlotState& s = kv.second;
    total += static_cast<int64_t>(sizeof(SlotState) + s.fused.size() * sizeof(uint16_t) +
                                  s.len.size() * sizeof(int64_t) +
                                  (s.x_a.size() + s.x_b.size()) * sizeof(double) +
                                  s.mask_bits.size() * sizeof(uint64_t));
  }
  return total;
}

}  // namespace moddit
