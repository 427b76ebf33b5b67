// The nanobind extension `moddit._moddit`: the C++ API of moddit for Python.
// The public Python API (python/moddit/__init__.py) wraps it: it allocates
// outputs in the caller's framework and passes the caller's CUDA stream.
#include "moddit/error.hpp"
#include "py_common.hpp"

NB_MODULE(_moddit, m) {
  namespace nb = nanobind;
  m.doc() = "moddit: block-sparse attention for video diffusion transformers (C++ core)";
  // moddit::Error -> moddit.Error (a ValueError), with the C++ message unchanged.
  nb::exception<moddit::Error>(m, "Error", PyExc_ValueError);
  // A Python policy held by a C++ Session that lives in the policy's own module
  // globals forms a cycle through C++ that the GC cannot see; it is reclaimed
  // at exit, where nanobind would report it as a leak.
  nb::set_leak_warnings(false);
#ifdef MODDIT_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
  moddit::py::bind_layout(m);
  moddit::py::bind_backend(m);
  moddit::py::bind_policy(m);
  moddit::py::bind_session(m);
  moddit::py::bind_vdit(m);
  moddit::py::bind_trajectory(m);
  moddit::py::bind_eval(m);
  moddit::py::bind_quality(m);
}
