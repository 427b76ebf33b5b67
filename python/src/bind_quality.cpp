// What the generated-video evaluation (moddit.quality) shares with `moddit eval`:
// the baselines' mask builders (window, radial, SVG's spatial and temporal
// masks, the oracle, Sparse-vDiT's modes) and the Sparse-vDiT search split into
// its measurement and its decision, so one measurement serves several target
// densities.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "core/static_mask_layout.hpp"
#include "eval/metrics.hpp"
#include "eval/svg_policy.hpp"
#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"
#include "py_common.hpp"

namespace moddit::py {

namespace {

nb::ndarray<nb::numpy, uint8_t> square(std::vector<uint8_t> mask, const BlockGrid& grid) {
  const size_t n = size_t(grid.num_video_blocks);
  MODDIT_CHECK(mask.size() == n * n, "mask builder returned ", mask.size(), " entries for a ", n,
               "x", n, " video block grid");
  return to_numpy(std::move(mask), {n, n});
}

void check_density(double target, const char* who) {
  MODDIT_CHECK(target > 0.0 && target <= 1.0, who, ": target density must be in (0, 1], got ",
               target);
}

}  // namespace

void bind_quality(nb::module_& m) {
  m.def(
      "static_video_mask",
      [](const std::string& kind, const TokenLayout& tokens, const BlockGrid& grid,
         double target_density) {
        check_density(target_density, "static_video_mask");
        tokens.validate();
        const core::StaticMaskKind k = core::static_mask_kind(kind, "static_video_mask: kind");
        return square(core::static_video_mask(k, tokens, grid, target_density), grid);
      },
      nb::arg("kind"), nb::arg("tokens"), nb::arg("grid"), nb::arg("target_density"),
      "The n x n video block mask (uint8, 1 = live) of the 'window' (3D sliding tile) or "
      "'radial' (Radial Attention) baseline at a target video density, as `moddit eval` builds it.");

  m.def(
      "svg_video_masks",
      [](const TokenLayout& tokens, const BlockGrid& grid, double target_density) {
        check_density(target_density, "svg_video_masks");
        tokens.validate();
        return nb::make_tuple(square(eval::svg_spatial_mask(tokens, grid, target_density), grid),
                              square(eval::svg_temporal_mask(tokens, grid, target_density), grid));
      },
      nb::arg("tokens"), nb::arg("grid"), nb::arg("target_density"),
      "(spatial, temporal): the two n x n video block masks of the SVG baseline at a target "
      "video density, as `moddit eval` builds them.");

  m.def(
      "oracle_video_mask",
      [](const nb::ndarray<nb::ro, double, nb::ndim<2>, nb::c_contig, nb::device::cpu>& mass,
         const BlockGrid& grid, double target_density) {
        check_density(target_density, "oracle_video_mask");
        const size_t n = size_t(grid.num_video_blocks);
        MODDIT_CHECK(mass.shape(0) == n && mass.shape(1) == n, "oracle_video_mask: mass is ",
                     mass.shape(0), "x", mass.shape(1), ", the grid has ", n, "x", n,
                     " video blocks");
        return square(eval::oracle_video_mask(mass.data(), grid, target_density), grid);
      },
      nb::arg("mass"), nb::arg("grid"), nb::arg("target_density"),
      "The evaluation's oracle for one head: from the dense block mass [n, n] (float64), the "
      "diagonal and then the blocks of most mass per token pair over the whole grid, at a target "
      "video density.");

  m.def(
      "vdit_video_mask",
      [](const VditHeadChoice& choice, const TokenLayout& tokens, const BlockGrid& grid) {
        tokens.validate();
        return square(vdit_video_mask(choice, tokens, grid), grid);
      },
      nb::arg("choice"), nb::arg("tokens"), nb::arg("grid"),
      "The n x n video block mask of a Sparse-vDiT head choice (full: ones, skip: zeros).");

  nb::class_<VditLossTable>(m, "VditLossTable",
                            "The measurements of a Sparse-vDiT search (measure_vdit): decisions "
                            "for any (lambda, eps) or target density follow without the data.")
      .def_prop_ro("steps", [](const VditLossTable& t) { return t.steps; })
      .def_prop_ro("layers", [](const VditLossTable& t) { return t.layers; })
      .def_prop_ro("calibration", [](const VditLossTable& t) { return t.calibration; });

  m.def(
      "measure_vdit",
      [](const std::vector<TrajectorySource*>& sources, Backend& backend,
         const VditSearchOptions& options) {
        nb::gil_scoped_release release;
        return measure_vdit_candidates(sources, backend, options);
      },
      nb::arg("sources"), nb::arg("backend"), nb::arg("options") = VditSearchOptions(),
      "The measurement half of search_vdit (every candidate of every searched step, layer and "
      "head against dense attention); releases the GIL.");

  m.def(
      "decide_vdit",
      [](const VditLossTable& table, double target_density) {
        return decide_vdit_for_density(table, target_density);
      },
      nb::arg("table"), nb::arg("target_density"),
      "The decision half of search_vdit(..., target_density): a VditConfig at that mean density.");
}

}  // namespace moddit::py
