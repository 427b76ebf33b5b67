#include "moddit/moddit_policy.hpp"

#include "core/moddit_engine.hpp"
#include "core/schedule.hpp"
#include "core/static_mask_layout.hpp"
#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"

namespace moddit {

struct ModditPolicy::Impl {
  ModditConfig cfg;
  int num_layers = 0, num_heads = 0;
  std::vector<uint8_t> dense_layer;
  std::shared_ptr<core::ModditEngine> engine;  // chosen by the first call that needs state
  // The backend a device engine's state lives on (its memory, device and stream).
  const Backend* engine_backend = nullptr;
  std::string engine_backend_name;
  // The sparse warm-up's static layout (null when sparse_warmup_steps is 0).
  std::unique_ptr<core::StaticMaskLayout> static_warmup;

  // A warm-up step that runs the static mask instead of dense attention.
  bool static_step(const CallInfo& c) const {
    return !dense_layer[c.layer] && c.step < cfg.sparse_warmup_steps;
  }

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

  // The state lives where the first stateful call's backend computes: in that
  // backend's memory when it offers an engine (Backend::make_moddit_engine, and
  // device_step allows it), on the host otherwise. It cannot move afterwards. GPU
  // state is bound to that backend object (its device, memory pool and stream): a
  // call through another backend (another device, or another instance on the same
  // one) is refused. The device engine keeps its backend alive, so the address
  // identifies it. Host state serves any backend (the maps come to the host).
  core::ModditEngine& engine_for(const CallInfo& c) {
    if (!engine) {
      if (c.backend && cfg.device_step && cfg.ridge_lambda > 0.0)
        engine = c.backend->make_moddit_engine(cfg, num_heads);
      if (engine) {
        engine_backend = c.backend;
        engine_backend_name = c.backend->name();
      } else {
        engine = core::make_host_engine(cfg, num_heads);
      }
    }
    MODDIT_CHECK(!engine_backend || c.backend == engine_backend, "moddit policy: its ",
                 to_string(engine->device()), " state lives on the backend it was made on (",
                 engine_backend_name, ", device ", engine_backend ? engine_backend->device_index() : -1,
                 "); this call runs on another backend (", c.backend ? c.backend->name() : "none",
                 ", device ", c.backend ? c.backend->device_index() : -1,
                 "): use one ModditPolicy per backend");
    return *engine;
  }
};

ModditPolicy::ModditPolicy(const ModditConfig& config, int num_layers, int num_heads)
    : impl_(std::make_unique<Impl>()) {
  config.validate();
  check_range(num_layers, 1, kMaxLayers, "moddit policy: num_layers");
  check_range(num_heads, 1, kMaxHeads, "moddit policy: num_heads");
  impl_->cfg = config;
  impl_->num_layers = num_layers;
  impl_->num_heads = num_heads;
  impl_->dense_layer.assign(static_cast<size_t>(num_layers), 0);
  for (int l : config.dense_layers) {
    MODDIT_CHECK(l >= 0 && l < num_layers, "dense_layers: layer ", l, " out of range [0, ",
                 num_layers, ")");
    impl_->dense_layer[l] = 1;
  }
  if (config.sparse_warmup_steps > 0)
    impl_->static_warmup = std::make_unique<core::StaticMaskLayout>(
        core::static_mask_kind(config.sparse_warmup_mask, "config: sparse_warmup_mask"),
        config.sparse_warmup_density);
}

ModditPolicy::~ModditPolicy() = default;

const ModditConfig& ModditPolicy::config() const { return impl_->cfg; }

Plan ModditPolicy::plan(const CallInfo& call) {
  Impl& I = *impl_;
  I.check_call(call);
  const int H = I.num_heads;
  const CallKind kind = I.dense_layer[call.layer]
                            ? CallKind::Dense
                            : core::schedule_kind(call.step, I.cfg.warmup_steps, I.cfg.interval);
  if (I.static_step(call)) {
    // A warm-up step in the schedule (kind Dense: no map, no state), computed
    // sparse. Not plain_dense, so the diffusers adapter runs it through the plan.
    Plan plan;
    HeadGroup g;
    for (int h = 0; h < H; ++h) g.heads.push_back(h);
    g.layout = I.static_warmup->layout(call);
    g.label = "static";
    plan.groups.push_back(std::move(g));
    plan.precision = precision_from_string(I.cfg.warmup_precision);
    return plan;
  }
  if (kind == CallKind::Dense) {
    Plan plan = dense_plan(H, false);
    plan.precision = precision_from_string(I.cfg.warmup_precision);
    return plan;
  }
  core::ModditEngine& engine = I.engine_for(call);
  Plan plan = kind == CallKind::Record ? dense_plan(H, true) : engine.plan_masks(call, kind);
  plan.map_on_device = plan.record_map && engine.map_on_device();
  plan.precision = precision_from_string(I.cfg.precision);
  plan.map_eta = static_cast<float>(I.cfg.eta);  // the one source of eta
  plan.map_statistic = map_statistic_from_string(I.cfg.map_statistic);
  return plan;
}

bool ModditPolicy::plain_dense(const CallInfo& call) const {
  const Impl& I = *impl_;
  I.check_call(call);
  return I.cfg.warmup_precision == "exact" && !I.static_step(call) &&
         (I.dense_layer[call.layer] ||
          core::schedule_kind(call.step, I.cfg.warmup_steps, I.cfg.interval) == CallKind::Dense);
}

CallKind ModditPolicy::kind_of(int step, int layer) const {
  const Impl& I = *impl_;
  MODDIT_CHECK(layer >= 0 && layer < I.num_layers, "moddit policy: layer ", layer,
               " out of range [0, ", I.num_layers, ")");
  if (I.dense_layer[layer]) return CallKind::Dense;
  return core::schedule_kind(step, I.cfg.warmup_steps, I.cfg.interval);
}

void ModditPolicy::observe(const CallInfo& call, const Plan& plan, const int32_t* map_counts) {
  Impl& I = *impl_;
  I.check_call(call);
  if (I.dense_layer[call.layer] || !plan.record_map || !map_counts) return;
  core::ModditEngine& engine = I.engine_for(call);
  MODDIT_CHECK(plan.map_on_device == engine.map_on_device(), "moddit policy: the map counts are in ",
               plan.map_on_device ? "device" : "host", " memory, the policy's state is on ",
               to_string(engine.device()));
  engine.observe(call, plan, map_counts);
}

std::vector<float> ModditPolicy::fused_map(int layer, int slot, int head) const {
  return impl_->engine ? impl_->engine->fused_map(layer, slot, head) : std::vector<float>{};
}

std::vector<float> ModditPolicy::fitted_map(int layer, int slot, int head) const {
  return impl_->engine ? impl_->engine->fitted_map(layer, slot, head) : std::vector<float>{};
}

std::vector<uint8_t> ModditPolicy::video_mask(int layer, int slot, int head) const {
  return impl_->engine ? impl_->engine->video_mask(layer, slot, head) : std::vector<uint8_t>{};
}

const std::vector<FitRecord>& ModditPolicy::fits() const {
  static const std::vector<FitRecord> none;
  return impl_->engine ? impl_->engine->fits() : none;
}

int64_t ModditPolicy::state_bytes() const {
  return impl_->engine ? impl_->engine->state_bytes() : 0;
}

Device ModditPolicy::state_device() const {
  return impl_->engine ? impl_->engine->device() : Device::CPU;
}

}  // namespace moddit
