// The evaluation (`moddit eval` in-process): policies compared at equal density
// on a trajectory against the dense reference.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "moddit/eval.hpp"
#include "py_common.hpp"

namespace moddit::py {

void bind_eval(nb::module_& m) {
  m.def(
      "evaluate",
      [](TrajectorySource& source, const std::string& policies, double target_density,
         const ModditConfig& config, int threads, int first_step, int max_layers,
         const std::string& report_dir, const std::string& source_label) {
        EvalSettings s;
        s.config = config;
        s.target_density = target_density;
        s.policies = parse_policy_list(policies, config, target_density);
        s.threads = threads;
        s.first_step = first_step;
        s.max_layers = max_layers;
        s.source_label = source_label;
        std::vector<std::string> written;
        std::string json, table;
        if (!report_dir.empty()) check_report_dir(report_dir);  // before the run
        {
          nb::gil_scoped_release release;
          EvalResult r = run_evaluation(source, s);
          json = eval_report_json(r);
          table = format_eval_table(r);
          if (!report_dir.empty()) written = write_eval_report(r, report_dir);
        }
        return nb::make_tuple(json, table, written);
      },
      nb::arg("source"), nb::arg("policies") = "dense,moddit,oracle",
      nb::arg("target_density") = 0.15, nb::arg("config") = ModditConfig(),
      nb::arg("threads") = 0, nb::arg("first_step") = -1, nb::arg("max_layers") = 0,
      nb::arg("report_dir") = "", nb::arg("source_label") = "",
      "Low-level: (report JSON, table text, files written); see moddit.evaluate.");
  m.def("inspect_file", &inspect_file, nb::arg("path"));
}

}  // namespace moddit::py
