#include "moddit/session.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/video_mask.hpp"
#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"

namespace moddit {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Byte range [lo, hi) a view can touch (strides are non-negative: validate_view).
std::pair<const char*, const char*> byte_span(const TensorView& t) {
  int64_t last = 0;
  for (int a = 0; a < 4; ++a) last += (t.shape[a] - 1) * t.stride[a];
  const char* lo = static_cast<const char*>(t.data);
  return {lo, lo + (last + 1) * dtype_size(t.dtype)};
}

void check_no_alias(const TensorView& out, const TensorView& in, const char* name) {
  const auto a = byte_span(out), b = byte_span(in);
  MODDIT_CHECK(a.second <= b.first || b.second <= a.first, "attention: out overlaps ", name,
               " (out must not alias q, k or v)");
}

}  // namespace

Session::Session(const TokenLayout& tokens, const SessionOptions& options,
                 std::shared_ptr<Backend> backend, std::shared_ptr<Policy> policy)
    : tokens_(tokens), options_(options), backend_(std::move(backend)),
      policy_(std::move(policy)) {
  tokens_.validate();
  // Bounded before the per-layer state is allocated (size_limits.hpp says why).
  check_range(options.num_steps, 1, kMaxSteps, "session: num_steps");
  check_range(options.num_layers, 1, kMaxLayers, "session: num_layers");
  check_range(options.num_heads, 1, kMaxHeads, "session: num_heads");
  check_range(options.head_dim, 1, 1 << 16, "session: head_dim");
  MODDIT_CHECK(backend_ != nullptr, "session: no backend given");
  MODDIT_CHECK(policy_ != nullptr, "session: no policy given");
  grid_ = make_block_grid(tokens_, options.block_size);
  slots_used_.assign(static_cast<size_t>(options.num_layers), 0);
}

CallInfo Session::call_info(int layer, int batch, int slot) const {
  CallInfo info;
  info.step = step_;
  info.num_steps = options_.num_steps;
  info.layer = layer;
  info.slot_begin = slot;
  info.batch = batch;
  info.num_heads = options_.num_heads;
  info.head_dim = options_.head_dim;
  info.tokens = &tokens_;
  info.grid = &grid_;
  info.backend = backend_.get();
  return info;
}

bool Session::plain_dense(int layer, int batch, int slot_begin) const {
  MODDIT_CHECK(layer >= 0 && layer < options_.num_layers, "plain_dense: layer ", layer,
               " out of range [0, num_layers=", options_.num_layers, ")");
  MODDIT_CHECK(batch > 0, "plain_dense: batch must be > 0, got ", batch);
  if (slot_begin >= 0) check_range(slot_begin, 0, kMaxBatch, "plain_dense: slot_begin");
  const int slot = slot_begin < 0 ? slots_used_[static_cast<size_t>(layer)] : slot_begin;
  return policy_->plain_dense(call_info(layer, batch, slot));
}

Plan Session::plan_call(int layer, int batch, int slot_begin) {
  MODDIT_CHECK(layer >= 0 && layer < options_.num_layers, "plan_call: layer ", layer,
               " out of range [0, num_layers=", options_.num_layers, ")");
  MODDIT_CHECK(batch > 0, "plan_call: batch must be > 0, got ", batch);
  int& used = slots_used_[static_cast<size_t>(layer)];
  const int slot = slot_begin < 0 ? used : slot_begin;
  Plan plan = policy_->plan(call_info(layer, batch, slot));
  MODDIT_CHECK(!plan.record_map, "plan_call: policy ", policy_->name(), " records the sparsity map at step ",
               step_, " (", to_string(plan.kind), "); run that call with attention()");
  used = std::max(used, slot + batch);
  for (HeadGroup& g : plan.groups)
    if (g.device_layout) {
      g.layout = download_layout(*backend_, *g.device_layout);
      g.device_layout.reset();
    }
  return plan;
}

void Session::begin_step(int step) {
  MODDIT_CHECK(step >= 0 && step < options_.num_steps, "begin_step: step ", step,
               " out of range [0, num_steps=", options_.num_steps, ")");
  step_ = step;
  std::fill(slots_used_.begin(), slots_used_.end(), 0);
}

void Session::attention(int layer, const TensorView& q, const TensorView& k, const TensorView& v,
                        const TensorView& out, int slot_begin) {
  MODDIT_CHECK(layer >= 0 && layer < options_.num_layers, "attention: layer ", layer,
               " out of range [0, num_layers=", options_.num_layers, ")");
  validate_view(q, "q");
  validate_view(k, "k");
  validate_view(v, "v");
  validate_view(out, "out");
  MODDIT_CHECK(q.heads() == options_.num_heads, "q: ", q.heads(),
               " heads, the session was made for num_heads = ", options_.num_heads);
  MODDIT_CHECK(q.head_dim() == options_.head_dim, "q: head dim ", q.head_dim(),
               ", the session was made for head_dim = ", options_.head_dim);
  MODDIT_CHECK(q.seq_len() == tokens_.total_tokens(), "q: sequence length ", q.seq_len(),
               " does not match the token layout (", tokens_.describe(), ")");
  check_same_as_q(q, k, "k");
  check_same_as_q(q, v, "v");
  check_same_as_q(q, out, "out");
  check_no_alias(out, q, "q");
  check_no_alias(out, k, "k");
  check_no_alias(out, v, "v");

  check_range(q.batch(), 1, kMaxBatch, "q: batch");
  const int B = static_cast<int>(q.batch()), H = options_.num_heads;
  int& used = slots_used_[static_cast<size_t>(layer)];
  // State slots are batch items of CFG branches: bounded like a batch, so that
  // slot + B cannot overflow.
  if (slot_begin >= 0) check_range(slot_begin, 0, kMaxBatch, "attention: slot_begin");
  const int slot = slot_begin < 0 ? used : slot_begin;
  used = std::max(used, slot + B);

  const CallInfo info = call_info(layer, B, slot);

  // Overhead = the policy's plan and observe plus this bookkeeping (plan checks,
  // density); the backend's work (map buffer, launches, copy back) is `seconds`.
  const double t_plan0 = now_seconds();
  const Plan plan = policy_->plan(info);

  // Heads in no group are skipped; a head may appear in one group only.
  std::vector<uint8_t> covered(static_cast<size_t>(H), 0);
  double density_sum = 0.0;
  std::vector<PendingDensity::Part> pending_density;  // device layouts: known after a sync
  for (const HeadGroup& g : plan.groups) {
    for (size_t i = 0; i < g.heads.size(); ++i) {
      const int32_t h = g.heads[i];
      MODDIT_CHECK(h >= 0 && h < H, "policy ", policy_->name(), ": head ", h,
                   " out of range [0, ", H, ")");
      MODDIT_CHECK(i == 0 || g.heads[i - 1] < h, "policy ", policy_->name(),
                   ": group heads must be ascending without duplicates");
      MODDIT_CHECK(!covered[h], "policy ", policy_->name(), ": head ", h,
                   " is in more than one group");
      covered[h] = 1;
    }
    MODDIT_CHECK(!(g.layout && g.device_layout), "policy ", policy_->name(),
                 ": a head group has both a host and a device layout");
    if (g.heads.empty()) continue;
    if (g.device_layout) {
      MODDIT_CHECK(g.device_layout->density_when_synced, "policy ", policy_->name(),
                   ": a device layout without its density");
      pending_density.push_back({g.device_layout->density_when_synced, static_cast<int>(g.heads.size())});
    } else {
      density_sum += (g.layout ? video_density(*g.layout, grid_) : 1.0) * g.heads.size();
    }
  }
  MODDIT_CHECK(!plan.record_map || (plan.map_eta > 0.f && std::isfinite(plan.map_eta)), "policy ",
               policy_->name(), ": map_eta must be > 0 to record the map, got ", plan.map_eta);
  std::vector<int32_t> skipped;
  for (int h = 0; h < H; ++h)
    if (!covered[h]) skipped.push_back(h);

  const double t_plan1 = now_seconds();

  const int n = grid_.num_video_blocks;
  const size_t map_count = plan.record_map ? size_t(B) * H * n * n : 0;
  std::shared_ptr<void> map_dev;
  if (plan.record_map) {
    map_dev = backend_->allocate(map_count * sizeof(int32_t));
    backend_->fill_i32(static_cast<int32_t*>(map_dev.get()), -1, map_count);
  }

  const int64_t launches0 = backend_->launches();
  for (const HeadGroup& g : plan.groups) {
    if (g.heads.empty()) continue;
    const bool all_heads = static_cast<int>(g.heads.size()) == H;  // ascending: 0..H-1
    AttentionCall call;
    call.q = q;
    call.k = k;
    call.v = v;
    call.out = out;
    call.tokens = &tokens_;
    call.block_size = options_.block_size;
    call.heads = all_heads ? nullptr : &g.heads;
    call.layout = g.layout ? &*g.layout : nullptr;
    call.device_layout = g.device_layout.get();
    call.map_counts = static_cast<int32_t*>(map_dev.get());
    call.eta = plan.map_eta;
    call.map_statistic = plan.map_statistic;
    call.precision = plan.precision.value_or(options_.precision);
    backend_->attention(call);
  }
  if (!skipped.empty()) backend_->zero_heads(out, skipped);
  const bool map_to_host = plan.record_map && !plan.map_on_device;
  if (map_to_host) {
    map_host_.resize(map_count);
    backend_->copy_to_host(map_host_.data(), map_dev.get(), map_count * sizeof(int32_t));
  }
  // A GPU backend runs asynchronously: wait only when the host needs the map (or
  // when asked to, for per-call timings), never per layer by default.
  if (map_to_host || options_.synchronize_calls) backend_->synchronize();
  const double t_run = now_seconds();

  // A device policy reads the map where the backend wrote it, in stream order;
  // map_dev is freed after this call in stream order too, so after its readers.
  const int32_t* map_for_policy =
      !plan.record_map ? nullptr : plan.map_on_device ? static_cast<const int32_t*>(map_dev.get())
                                                      : map_host_.data();
  policy_->observe(info, plan, map_for_policy);
  const double t_end = now_seconds();

  CallRecord rec;
  rec.step = step_;
  rec.layer = layer;
  rec.slot_begin = slot;
  rec.batch = B;
  rec.kind = plan.kind;
  rec.density = density_sum / H;
  if (!pending_density.empty()) {
    rec.density = std::numeric_limits<double>::quiet_NaN();  // until history() waits for it
    PendingDensity pd;
    pd.record = history_.size();
    pd.known_sum = density_sum;
    pd.heads = H;
    pd.parts = std::move(pending_density);
    pending_.push_back(std::move(pd));
  }
  rec.launches = static_cast<int>(backend_->launches() - launches0);
  rec.seconds = t_run - t_plan1;
  rec.overhead_seconds = (t_plan1 - t_plan0) + (t_end - t_run);
  history_.push_back(rec);
}

const std::vector<CallRecord>& Session::history() const {
  if (!pending_.empty()) {
    backend_->synchronize();  // the device layouts' densities land in stream order
    for (const PendingDensity& pd : pending_) {
      double sum = pd.known_sum;
      for (const auto& part : pd.parts) sum += double(*part.density) * part.heads;
      history_[pd.record].density = sum / pd.heads;
    }
    pending_.clear();
  }
  return history_;
}

}  // namespace moddit
