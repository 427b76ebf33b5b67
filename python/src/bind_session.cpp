// The Session: the per-pipeline controller a model integration talks to.
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>

#include "moddit/error.hpp"
#include "moddit/session.hpp"
#include "py_common.hpp"

namespace moddit::py {

void bind_session(nb::module_& m) {
  nb::class_<SessionOptions>(m, "SessionOptions")
      .def(
          "__init__",
          [](SessionOptions* o, int num_steps, int num_layers, int num_heads, int head_dim,
             int block_size, const std::string& precision) {
            new (o) SessionOptions{num_steps, num_layers, num_heads, head_dim, block_size,
                                   precision_from_string(precision)};
          },
          nb::arg("num_steps") = 50, nb::arg("num_layers") = 1, nb::arg("num_heads") = 1,
          nb::arg("head_dim") = 128, nb::arg("block_size") = 128, nb::arg("precision") = "exact",
          "No eta: the map's threshold is the policy's (ModditConfig.eta, Plan.map_eta).")
      .def_rw("num_steps", &SessionOptions::num_steps)
      .def_rw("num_layers", &SessionOptions::num_layers)
      .def_rw("num_heads", &SessionOptions::num_heads)
      .def_rw("head_dim", &SessionOptions::head_dim)
      .def_rw("block_size", &SessionOptions::block_size)
      .def_prop_rw(
          "precision", [](const SessionOptions& o) { return std::string(to_string(o.precision)); },
          [](SessionOptions& o, const std::string& s) { o.precision = precision_from_string(s); },
          "\"exact\" or \"fp8\": calls whose policy leaves the precision open (dense, "
          "sparse_vdit); MOD-DiT follows its config's precision / warmup_precision.");

  nb::class_<CallRecord>(m, "CallRecord", "What one Session.attention call did.")
      .def_ro("step", &CallRecord::step)
      .def_ro("layer", &CallRecord::layer)
      .def_ro("slot_begin", &CallRecord::slot_begin)
      .def_ro("batch", &CallRecord::batch)
      .def_ro("kind", &CallRecord::kind)
      .def_ro("density", &CallRecord::density)
      .def_ro("launches", &CallRecord::launches)
      .def_ro("seconds", &CallRecord::seconds)
      .def_ro("overhead_seconds", &CallRecord::overhead_seconds)
      .def("__repr__", [](const CallRecord& r) {
        return detail::concat("CallRecord(step=", r.step, ", layer=", r.layer, ", slot_begin=",
                              r.slot_begin, ", batch=", r.batch, ", kind=", to_string(r.kind),
                              ", density=", r.density, ", launches=", r.launches, ")");
      });

  nb::class_<Session>(m, "Session")
      .def(nb::init<const TokenLayout&, const SessionOptions&, std::shared_ptr<Backend>,
                    std::shared_ptr<Policy>>(),
           nb::arg("tokens"), nb::arg("options"), nb::arg("backend"), nb::arg("policy"))
      .def("begin_step", &Session::begin_step, nb::arg("step"))
      .def(
          "attention",
          [](Session& s, int layer, const AnyTensor& q, const AnyTensor& k, const AnyTensor& v,
             const AnyMutTensor& out, int slot_begin, const std::string& qkv_layout,
             uintptr_t stream) {
            const Layout lay = layout_from_string(qkv_layout);
            const TensorView qv = tensor_view(q, lay, "q"), kv = tensor_view(k, lay, "k"),
                             vv = tensor_view(v, lay, "v"), ov = tensor_view(out, lay, "out");
            MODDIT_CHECK(qv.device == s.backend().device(), "q: a ", to_string(qv.device),
                         " tensor given to a Session on the ", s.backend().name(), " backend");
            nb::gil_scoped_release release;
            s.backend().set_stream(reinterpret_cast<void*>(stream));
            s.attention(layer, qv, kv, vv, ov, slot_begin);
          },
          nb::arg("layer"), nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"),
          nb::arg("slot_begin") = -1, nb::arg("qkv_layout") = "NHD", nb::arg("stream") = 0)
      .def_prop_ro("tokens", &Session::tokens)
      .def_prop_ro("grid", &Session::grid)
      .def_prop_ro("options", &Session::options)
      .def_prop_ro("policy", [](Session& s) { return &s.policy(); }, nb::rv_policy::reference_internal)
      .def_prop_ro("backend", [](Session& s) { return &s.backend(); }, nb::rv_policy::reference_internal)
      .def_prop_ro(
          "history",
          [](const Session& s) {
            nb::gil_scoped_release release;  // may wait for the GPU
            return s.history();
          },
          "Every call so far (a copy; waits for the GPU when densities are pending).")
      .def_prop_ro("history_size", &Session::history_size)
      .def(
          "history_since",
          [](const Session& s, size_t first, bool wait) {
            std::vector<CallRecord> out;
            {
              nb::gil_scoped_release release;
              const auto& h = wait ? s.history() : s.history_now();
              first = std::min(first, h.size());
              out.assign(h.begin() + static_cast<std::ptrdiff_t>(first), h.end());
            }
            return out;
          },
          nb::arg("first"), nb::arg("wait") = true,
          "The calls from index `first` on. wait=False never waits for the GPU: a density "
          "the GPU step reports later is NaN there.")
      .def(
          "plan_call",
          [](Session& s, int layer, int batch, int slot_begin) {
            nb::gil_scoped_release release;  // may download a device layout
            return s.plan_call(layer, batch, slot_begin);
          },
          nb::arg("layer"), nb::arg("batch"), nb::arg("slot_begin") = -1,
          "The policy's plan for the layer's next call, run by the caller (ring attention): "
          "slots advance as in attention(); nothing runs or enters the history; device layouts "
          "come back as host layouts. Refuses a plan that records the map.")
      .def("plain_dense", &Session::plain_dense, nb::arg("layer"), nb::arg("batch"),
           nb::arg("slot_begin") = -1,
           "Whether the policy would run this call as plain dense attention without a map or "
           "state change (the caller may run its own dense attention instead).");
}

}  // namespace moddit::py
