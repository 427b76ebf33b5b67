// Policies: plans and head groups, a Python-subclassable Policy, the dense
// policy, MOD-DiT (ModditPolicy) and its config.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>
#include <nanobind/trampoline.h>

#include "moddit/config.hpp"
#include "moddit/error.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/policy.hpp"
#include "py_common.hpp"

namespace moddit::py {

namespace {

// Lets Python classes derive from moddit.PythonPolicy. The Session calls the
// policy with the GIL released, so every call back into Python takes it first.
class PolicyWithMap : public Policy {
 public:
  // observe() with the map counts as a NumPy copy [batch, heads, n, n] or None.
  virtual void observe_map(const CallInfo&, const Plan&, nb::object) {}
  void observe(const CallInfo& call, const Plan& plan, const int32_t* map_counts) override {
    nb::gil_scoped_acquire gil;
    nb::object counts = nb::none();
    if (map_counts && call.grid) {
      const size_t n = size_t(call.grid->num_video_blocks);
      const size_t count = size_t(call.batch) * size_t(call.num_heads) * n * n;
      std::vector<int32_t> copy(map_counts, map_counts + count);
      counts = nb::cast(
          to_numpy(std::move(copy), {size_t(call.batch), size_t(call.num_heads), n, n}));
    }
    observe_map(call, plan, counts);
  }
};

class PyPolicy : public PolicyWithMap {
 public:
  NB_TRAMPOLINE(PolicyWithMap);
  std::string name() const override {
    nb::gil_scoped_acquire gil;
    NB_OVERRIDE_PURE(name);
  }
  Plan plan(const CallInfo& call) override {
    nb::gil_scoped_acquire gil;
    try {
      return python_plan(call);
    } catch (const nb::cast_error&) {
      throw Error("policy " + name() + ": plan() must return a moddit.Plan");
    }
  }
  Plan python_plan(const CallInfo& call) { NB_OVERRIDE_PURE_NAME("plan", plan, call); }
  void observe_map(const CallInfo& call, const Plan& plan, nb::object counts) override {
    NB_OVERRIDE_NAME("observe", observe_map, call, plan, counts);
  }
};

}  // namespace

void bind_policy(nb::module_& m) {
  nb::enum_<CallKind>(m, "CallKind")
      .value("DENSE", CallKind::Dense)
      .value("RECORD", CallKind::Record)
      .value("SPARSE", CallKind::Sparse)
      .value("REFRESH", CallKind::Refresh);

  nb::class_<CallInfo>(m, "CallInfo", "What a policy is told about one attention call.")
      .def_ro("step", &CallInfo::step)
      .def_ro("num_steps", &CallInfo::num_steps)
      .def_ro("layer", &CallInfo::layer)
      .def_ro("slot_begin", &CallInfo::slot_begin)
      .def_ro("batch", &CallInfo::batch)
      .def_ro("num_heads", &CallInfo::num_heads)
      .def_ro("head_dim", &CallInfo::head_dim)
      .def_prop_ro("tokens", [](const CallInfo& c) {
        MODDIT_CHECK(c.tokens, "CallInfo: no token layout");
        return *c.tokens;
      })
      .def_prop_ro("grid", [](const CallInfo& c) {
        MODDIT_CHECK(c.grid, "CallInfo: no block grid");
        return *c.grid;
      });

  nb::class_<HeadGroup>(m, "HeadGroup", "One launch: heads and the layout they share (None = dense).")
      .def(nb::init<>())
      .def(
          "__init__",
          [](HeadGroup* g, std::vector<int32_t> heads, std::optional<BlockLayout> layout,
             std::string label) {
            new (g) HeadGroup{std::move(heads), std::move(layout), std::move(label)};
          },
          nb::arg("heads"), nb::arg("layout").none() = nb::none(), nb::arg("label") = "")
      .def_rw("heads", &HeadGroup::heads)
      .def_rw("layout", &HeadGroup::layout)
      .def_rw("label", &HeadGroup::label);

  nb::class_<Plan>(m, "Plan", "What the backend runs for one call; heads in no group are skipped.")
      .def(nb::init<>())
      .def_rw("kind", &Plan::kind)
      .def_rw("groups", &Plan::groups)
      .def_rw("record_map", &Plan::record_map)
      .def_prop_rw(
          "precision",
          [](const Plan& p) -> std::optional<std::string> {
            if (!p.precision) return std::nullopt;
            return std::string(to_string(*p.precision));
          },
          [](Plan& p, std::optional<std::string> s) {
            p.precision = s ? std::optional<Precision>(precision_from_string(*s)) : std::nullopt;
          },
          nb::arg("value").none(), "\"exact\", \"fp8\" or None (the Session's precision).")
      .def_rw("map_eta", &Plan::map_eta,
              "The map's threshold (P < map_eta) when record_map is set; default ModditConfig().eta (1e-3).")
      .def_prop_rw(
          "map_statistic", [](const Plan& p) { return std::string(to_string(p.map_statistic)); },
          [](Plan& p, const std::string& s) { p.map_statistic = map_statistic_from_string(s); },
          nb::arg("value"),
          "What the recorded map holds: \"eq2\" (counts of P < map_eta) or \"mass\" (the "
          "block's mass in the same units); default \"eq2\".");
  m.def("dense_plan", &dense_plan, nb::arg("num_heads"), nb::arg("record_map") = false);

  nb::class_<Policy>(m, "Policy", "A policy: decides per call what the backend computes.")
      .def("name", &Policy::name)
      .def("plan", &Policy::plan, nb::arg("call"));
  nb::class_<PolicyWithMap, Policy, PyPolicy>(
      m, "PythonPolicy",
      "Subclass in Python: override name() and plan(call) -> Plan, optionally "
      "observe(call, plan, map_counts) (map_counts: int32 [batch, heads, n, n] or None).")
      .def(nb::init<>())
      .def("observe", &PolicyWithMap::observe_map, nb::arg("call"), nb::arg("plan"),
           nb::arg("map_counts").none());

  nb::class_<DensePolicy, Policy>(m, "DensePolicy", "Every head dense, one launch per call.")
      .def(nb::init<>());

  nb::class_<ModditConfig>(m, "ModditConfig", "Every MOD-DiT parameter (docs/CONFIG.md).")
      .def(nb::init<>())
      .def_rw("block_size", &ModditConfig::block_size)
      .def_rw("eta", &ModditConfig::eta)
      .def_rw("ridge_lambda", &ModditConfig::ridge_lambda)
      .def_rw("warmup_steps", &ModditConfig::warmup_steps)
      .def_rw("interval", &ModditConfig::interval)
      .def_rw("top_k", &ModditConfig::top_k)
      .def_rw("target_density", &ModditConfig::target_density)
      .def_rw("tau_e", &ModditConfig::tau_e)
      .def_rw("refresh", &ModditConfig::refresh)
      .def_rw("map_statistic", &ModditConfig::map_statistic,
              "\"eq2\" (the paper's Eq. 2) or \"mass\" (each block's share of its rows' mass).")
      .def_rw("dense_layers", &ModditConfig::dense_layers)
      .def_rw("device_step", &ModditConfig::device_step,
              "Run the MOD-DiT step on the session's GPU (default True).")
      .def_rw("precision", &ModditConfig::precision,
              "\"exact\" or \"fp8\": the record, sparse and refresh calls (map passes included).")
      .def_rw("warmup_precision", &ModditConfig::warmup_precision,
              "\"exact\" or \"fp8\": the plain dense calls (warm-up steps, dense_layers).")
      .def_rw("sparse_warmup_steps", &ModditConfig::sparse_warmup_steps,
              "The first this-many steps (0 .. warmup_steps-2) run a static mask, not dense; 0 = off.")
      .def_rw("sparse_warmup_mask", &ModditConfig::sparse_warmup_mask,
              "\"radial\" or \"window\": the static mask of the sparse warm-up steps.")
      .def_rw("sparse_warmup_density", &ModditConfig::sparse_warmup_density,
              "Video x video density of the sparse warm-up's static mask, in (0, 1].")
      .def("validate", &ModditConfig::validate)
      .def("to_json", &moddit_config_to_json)
      .def_static("from_json", &moddit_config_from_json, nb::arg("text"))
      .def_static("load", &load_moddit_config, nb::arg("path"))
      .def("__repr__", [](const ModditConfig& c) { return "ModditConfig(" + moddit_config_to_json(c) + ")"; });

  nb::class_<FitRecord>(m, "FitRecord")
      .def_ro("step", &FitRecord::step)
      .def_ro("layer", &FitRecord::layer)
      .def_ro("slot", &FitRecord::slot)
      .def_ro("head", &FitRecord::head)
      .def_ro("nae", &FitRecord::nae);

  nb::class_<ModditPolicy, Policy>(m, "ModditPolicy", "MOD-DiT as a Session policy.")
      .def(nb::init<const ModditConfig&, int, int>(), nb::arg("config"), nb::arg("num_layers"),
           nb::arg("num_heads"))
      .def_prop_ro("config", &ModditPolicy::config)
      .def(
          "fused_map",
          [](const ModditPolicy& p, int layer, int slot, int head) {
            auto v = p.fused_map(layer, slot, head);
            return to_numpy(std::move(v), {v.size()});
          },
          nb::arg("layer"), nb::arg("slot"), nb::arg("head"),
          "The fused sparsity map (flat n*n; empty before the first fit).")
      .def(
          "fitted_map",
          [](const ModditPolicy& p, int layer, int slot, int head) {
            auto v = p.fitted_map(layer, slot, head);
            return to_numpy(std::move(v), {v.size()});
          },
          nb::arg("layer"), nb::arg("slot"), nb::arg("head"))
      .def(
          "video_mask",
          [](const ModditPolicy& p, int layer, int slot, int head) {
            auto v = p.video_mask(layer, slot, head);
            return to_numpy(std::move(v), {v.size()});
          },
          nb::arg("layer"), nb::arg("slot"), nb::arg("head"))
      .def("kind_of", &ModditPolicy::kind_of, nb::arg("step"), nb::arg("layer"),
           "What a call of `layer` at `step` is: DENSE, RECORD, SPARSE or REFRESH.")
      .def_prop_ro("fits", &ModditPolicy::fits)
      .def_prop_ro("state_bytes", &ModditPolicy::state_bytes)
      .def_prop_ro("state_device", &ModditPolicy::state_device,
                   "Where the state lives (decided by the first record or sparse call).");
}

}  // namespace moddit::py
