// Sparse-vDiT: the searched config, the search, and the Session policy.
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"
#include "py_common.hpp"

namespace moddit::py {

void bind_vdit(nb::module_& m) {
  nb::enum_<VditMode>(m, "VditMode")
      .value("FULL", VditMode::Full)
      .value("SKIP", VditMode::Skip)
      .value("DIAGONAL", VditMode::Diagonal)
      .value("MULTI_DIAGONAL", VditMode::MultiDiagonal)
      .value("VERTICAL_STRIPE", VditMode::VerticalStripe);

  nb::class_<VditHeadChoice>(m, "VditHeadChoice")
      .def(nb::init<>())
      .def_rw("mode", &VditHeadChoice::mode)
      .def_rw("window", &VditHeadChoice::window)
      .def_rw("stripes", &VditHeadChoice::stripes);

  nb::class_<VditSearchOptions>(m, "VditSearchOptions")
      .def(nb::init<>())
      .def_rw("lambda_", &VditSearchOptions::lambda)
      .def_rw("eps", &VditSearchOptions::eps)
      .def_rw("modes", &VditSearchOptions::modes)
      .def_rw("diagonal_windows", &VditSearchOptions::diagonal_windows)
      .def_rw("multi_diagonal_windows", &VditSearchOptions::multi_diagonal_windows)
      .def_rw("stripe_counts", &VditSearchOptions::stripe_counts)
      .def_rw("block_size", &VditSearchOptions::block_size)
      .def_rw("stripe_sample_rows", &VditSearchOptions::stripe_sample_rows)
      .def("validate", &VditSearchOptions::validate);

  nb::class_<VditConfig>(m, "VditConfig", "Searched Sparse-vDiT decisions (per step, layer, head).")
      .def_ro("steps", &VditConfig::steps)
      .def_ro("calibration", &VditConfig::calibration)
      .def_prop_ro("num_layers", [](const VditConfig& c) { return c.shape.num_layers; })
      .def_prop_ro("num_heads", [](const VditConfig& c) { return c.shape.num_heads; })
      .def_prop_ro("head_dim", [](const VditConfig& c) { return c.shape.head_dim; })
      .def_prop_ro("num_steps", [](const VditConfig& c) { return c.shape.num_steps; })
      .def_prop_ro("block_size", [](const VditConfig& c) { return c.shape.block_size; })
      .def_prop_ro("tokens", [](const VditConfig& c) { return c.shape.tokens; })
      .def("layer_choices", &VditConfig::layer_choices, nb::arg("step"), nb::arg("layer"))
      .def("validate", &VditConfig::validate)
      .def("check_matches", &VditConfig::check_matches, nb::arg("tokens"), nb::arg("block_size"),
           nb::arg("num_heads"), nb::arg("head_dim"), nb::arg("num_steps"))
      .def("mean_density", &VditConfig::mean_density)
      .def("summary_table", [](const VditConfig& c) { return vdit_summary_table(c); })
      .def("to_json", [](const VditConfig& c) { return vdit_config_to_json(c); })
      .def_static("from_json", &vdit_config_from_json, nb::arg("text"))
      .def_static("load", &load_vdit_config, nb::arg("path"))
      .def("save", [](const VditConfig& c, const std::string& path) { save_vdit_config(c, path); },
           nb::arg("path"));

  m.def(
      "search_vdit",
      [](const std::vector<TrajectorySource*>& sources, Backend& backend,
         const VditSearchOptions& options, double target_density) {
        nb::gil_scoped_release release;
        if (target_density > 0) {
          return decide_vdit_for_density(measure_vdit_candidates(sources, backend, options),
                                         target_density);
        }
        return search_vdit(sources, backend, options);
      },
      nb::arg("sources"), nb::arg("backend"), nb::arg("options") = VditSearchOptions(),
      nb::arg("target_density") = 0.0,
      "Offline Sparse-vDiT search on trajectories; with target_density > 0 the "
      "(lambda, eps) pair is picked to reach that mean density.");

  nb::class_<SparseVditPolicy, Policy>(m, "SparseVditPolicy", "Sparse-vDiT as a Session policy.")
      .def(nb::init<VditConfig>(), nb::arg("config"))
      .def_prop_ro("config", &SparseVditPolicy::config);
}

}  // namespace moddit::py
