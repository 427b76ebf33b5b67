// Attention trajectories: open/inspect/load, write (convert), and the synthetic
// stand-in for a real model.
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include "io/atomic_file.hpp"
#include "moddit/error.hpp"
#include "moddit/host_tensor.hpp"
#include "moddit/trajectory.hpp"
#include "py_common.hpp"

namespace moddit::py {

namespace {

nb::ndarray<nb::numpy, float> host_to_numpy(const HostTensor& t) {
  HostTensor f = t.dtype == DType::F32 ? t : t.to(DType::F32);
  std::vector<float> values(f.f32(), f.f32() + f.numel());
  return to_numpy(std::move(values), {size_t(f.shape[0]), size_t(f.shape[1]), size_t(f.shape[2]),
                                      size_t(f.shape[3])});
}

}  // namespace

void bind_trajectory(nb::module_& m) {
  nb::class_<TrajectoryInfo>(m, "TrajectoryInfo")
      .def_ro("tokens", &TrajectoryInfo::tokens)
      .def_ro("num_steps", &TrajectoryInfo::num_steps)
      .def_ro("batch", &TrajectoryInfo::batch)
      .def_ro("heads", &TrajectoryInfo::heads)
      .def_ro("head_dim", &TrajectoryInfo::head_dim)
      .def_ro("steps", &TrajectoryInfo::steps)
      .def_ro("layers", &TrajectoryInfo::layers)
      .def_ro("source", &TrajectoryInfo::source)
      .def("__repr__", [](const TrajectoryInfo& i) {
        return detail::concat("TrajectoryInfo(", i.tokens.describe(), ", num_steps=", i.num_steps,
                              ", batch=", i.batch, ", heads=", i.heads, ", head_dim=", i.head_dim,
                              ", steps=", i.steps.size(), ", layers=", i.layers.size(), ")");
      });

  nb::class_<TrajectorySource>(m, "TrajectorySource", "Q/K/V per (step, layer).")
      .def_prop_ro("info", &TrajectorySource::info, nb::rv_policy::reference_internal)
      .def(
          "load",
          [](TrajectorySource& s, int step, int layer) {
            HostTensor q, k, v;
            {
              nb::gil_scoped_release release;
              s.load(step, layer, q, k, v);
            }
            return nb::make_tuple(host_to_numpy(q), host_to_numpy(k), host_to_numpy(v));
          },
          nb::arg("step"), nb::arg("layer"),
          "(q, k, v) as float32 NumPy arrays [B, N, H, D] (converted from the stored dtype).");

  // The C++ atomic writer, so that files the Python side assembles (the
  // diffusers recorder's trajectories) follow the same rules as every other
  // file moddit writes: regular files only, symlinks written through, the mode
  // kept, no temporary left on failure or SIGINT/SIGTERM.
  nb::class_<AtomicFile>(m, "AtomicFile",
                         "A file written atomically (io/atomic_file.hpp): write(), then commit().")
      .def(nb::init<const std::string&>(), nb::arg("path"))
      .def(
          "write",
          [](AtomicFile& f, nb::bytes data) {
            const char* p = data.c_str();
            const size_t n = data.size();
            nb::gil_scoped_release release;
            f.write(p, n);
          },
          nb::arg("data"))
      .def("commit", &AtomicFile::commit, nb::call_guard<nb::gil_scoped_release>())
      .def("abort", &AtomicFile::abort)
      .def_prop_ro("bytes_written", &AtomicFile::bytes_written)
      .def_prop_ro("path", &AtomicFile::path);
  m.def("check_output_file", &check_output_file, nb::arg("path"),
        "Raises moddit.Error unless a file can be written at `path`; returns where it lands.");

  m.def("open_trajectory", &open_trajectory, nb::arg("path"),
        "Opens and validates a trajectory file (safetensors, DESIGN.md 6).");
  m.def(
      "write_trajectory",
      [](TrajectorySource& source, const std::string& path, const std::string& dtype) {
        const DType d = dtype_from_string(dtype);
        nb::gil_scoped_release release;
        write_trajectory(source, path, d, nullptr);
      },
      nb::arg("source"), nb::arg("path"), nb::arg("dtype") = "bf16",
      "Writes every (step, layer) of a source to a file, atomically.");

  nb::class_<SyntheticSpec>(m, "SyntheticSpec", "The synthetic trajectory generator's settings.")
      .def(nb::init<>())
      .def_rw("frames", &SyntheticSpec::frames)
      .def_rw("height", &SyntheticSpec::height)
      .def_rw("width", &SyntheticSpec::width)
      .def_rw("text_tokens", &SyntheticSpec::text_tokens)
      .def_rw("text_valid", &SyntheticSpec::text_valid)
      .def_rw("text_position", &SyntheticSpec::text_position)
      .def_rw("num_steps", &SyntheticSpec::num_steps)
      .def_rw("layers", &SyntheticSpec::layers)
      .def_rw("heads", &SyntheticSpec::heads)
      .def_rw("head_dim", &SyntheticSpec::head_dim)
      .def_rw("batch", &SyntheticSpec::batch)
      .def_rw("seed", &SyntheticSpec::seed)
      .def_rw("head_logit_spread", &SyntheticSpec::head_logit_spread,
              "Spread of the heads' sharpness (0: none; `moddit demo`: "
              "MODDIT_TINY_HEAD_LOGIT_SPREAD, fitted to moddit-tiny).")
      .def_rw("value_offset", &SyntheticSpec::value_offset,
              "A value component shared by every token (0: none; `moddit demo`: "
              "MODDIT_TINY_VALUE_OFFSET, fitted to moddit-tiny).")
      .def("describe", &SyntheticSpec::describe);
  m.attr("MODDIT_TINY_HEAD_LOGIT_SPREAD") = kModditTinyHeadLogitSpread;
  m.attr("MODDIT_TINY_VALUE_OFFSET") = kModditTinyValueOffset;
  m.def("make_synthetic", &make_synthetic, nb::arg("spec"),
        "A synthetic stand-in for a real model's trajectory (labelled as such).");
}

}  // namespace moddit::py
