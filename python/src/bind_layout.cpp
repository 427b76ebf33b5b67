// Enums, token layout, block grid, block layouts and masks.
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "core/video_mask.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/error.hpp"
#include "moddit/token_layout.hpp"
#include "py_common.hpp"

namespace moddit::py {

namespace {

std::vector<int32_t> int_vector(const nb::ndarray<nb::ro, int32_t, nb::ndim<1>, nb::device::cpu>& a) {
  std::vector<int32_t> v(a.shape(0));
  for (size_t i = 0; i < v.size(); ++i) v[i] = a(i);
  return v;
}

// A writable NumPy view of a mask's bits that keeps the mask alive.
nb::ndarray<nb::numpy, uint8_t, nb::ndim<4>> mask_bits(nb::handle self_handle) {
  BlockMask& self = nb::cast<BlockMask&>(self_handle);
  size_t shape[4] = {size_t(self.batch), size_t(self.heads), size_t(self.num_q_blocks),
                     size_t(self.num_k_blocks)};
  return nb::ndarray<nb::numpy, uint8_t, nb::ndim<4>>(self.bits.data(), 4, shape, self_handle);
}

std::string repr_tokens(const TokenLayout& t) { return "TokenLayout(" + t.describe() + ")"; }

}  // namespace

void bind_layout(nb::module_& m) {
  nb::enum_<DType>(m, "DType")
      .value("F32", DType::F32)
      .value("BF16", DType::BF16)
      .value("F16", DType::F16);
  nb::enum_<Device>(m, "Device").value("CPU", Device::CPU).value("CUDA", Device::CUDA);
  nb::enum_<Layout>(m, "Layout").value("NHD", Layout::NHD).value("HND", Layout::HND);
  nb::enum_<TextPosition>(m, "TextPosition")
      .value("NONE", TextPosition::None)
      .value("BEFORE", TextPosition::Before)
      .value("AFTER", TextPosition::After);
  m.def("dtype_from_string", &dtype_from_string, nb::arg("name"));

  nb::class_<TokenLayout>(m, "TokenLayout",
                          "Where text and video tokens sit: N = text_tokens + frames*height*width.")
      .def(
          "__init__",
          [](TokenLayout* t, int64_t frames, int64_t height, int64_t width, int64_t text_tokens,
             int64_t text_valid, const std::string& text_position) {
            new (t) TokenLayout();
            t->frames = frames;
            t->height = height;
            t->width = width;
            t->text_tokens = text_tokens;
            t->text_valid = text_valid < 0 ? text_tokens : text_valid;
            t->text_position = text_position_from_string(text_position);
            t->validate();
          },
          nb::arg("frames") = 1, nb::arg("height") = 1, nb::arg("width") = 1,
          nb::arg("text_tokens") = 0, nb::arg("text_valid") = -1,
          nb::arg("text_position") = "none",
          "text_valid < 0 means every text token is real; text_position is "
          "'none', 'before' or 'after'.")
      .def_rw("frames", &TokenLayout::frames)
      .def_rw("height", &TokenLayout::height)
      .def_rw("width", &TokenLayout::width)
      .def_rw("text_tokens", &TokenLayout::text_tokens)
      .def_rw("text_valid", &TokenLayout::text_valid)
      .def_prop_rw(
          "text_position", [](const TokenLayout& t) { return std::string(to_string(t.text_position)); },
          [](TokenLayout& t, const std::string& s) { t.text_position = text_position_from_string(s); })
      .def_prop_ro("tokens_per_frame", &TokenLayout::tokens_per_frame)
      .def_prop_ro("video_tokens", &TokenLayout::video_tokens)
      .def_prop_ro("total_tokens", &TokenLayout::total_tokens)
      .def_prop_ro("video_begin", &TokenLayout::video_begin)
      .def_prop_ro("text_begin", &TokenLayout::text_begin)
      .def_prop_ro("pad_begin", &TokenLayout::pad_begin)
      .def_prop_ro("pad_end", &TokenLayout::pad_end)
      .def("validate", &TokenLayout::validate)
      .def("describe", &TokenLayout::describe)
      .def("__repr__", &repr_tokens)
      .def("__eq__", [](const TokenLayout& a, const TokenLayout& b) {
        return a.frames == b.frames && a.height == b.height && a.width == b.width &&
               a.text_tokens == b.text_tokens && a.text_valid == b.text_valid &&
               a.text_position == b.text_position;
      })
      .def("__hash__", [](const TokenLayout& a) {
        return nb::hash(nb::make_tuple(a.frames, a.height, a.width, a.text_tokens, a.text_valid,
                                       int(a.text_position)));
      });

  nb::class_<BlockGrid>(m, "BlockGrid", "The block tiling of one sequence (make_block_grid).")
      .def_ro("block_size", &BlockGrid::block_size)
      .def_ro("starts", &BlockGrid::starts)
      .def_ro("first_video_block", &BlockGrid::first_video_block)
      .def_ro("num_video_blocks", &BlockGrid::num_video_blocks)
      .def_prop_ro("num_blocks", &BlockGrid::num_blocks)
      .def("block_len", &BlockGrid::block_len, nb::arg("block"))
      .def("is_video", &BlockGrid::is_video, nb::arg("block"))
      .def("video_block_begin", &BlockGrid::video_block_begin, nb::arg("v"))
      .def("video_block_end", &BlockGrid::video_block_end, nb::arg("v"))
      .def("__repr__", [](const BlockGrid& g) {
        return detail::concat("BlockGrid(block_size=", g.block_size, ", num_blocks=",
                              g.num_blocks(), ", first_video_block=", g.first_video_block,
                              ", num_video_blocks=", g.num_video_blocks, ")");
      });
  m.def("make_block_grid", &make_block_grid, nb::arg("tokens"), nb::arg("block_size") = 128);

  nb::class_<BlockLayout>(m, "BlockLayout",
                          "Live key blocks per (batch, head, query block), in CSR form.")
      .def(nb::init<>())
      .def(
          "__init__",
          [](BlockLayout* l, int batch, int heads, int nq, int nk,
             const nb::ndarray<nb::ro, int32_t, nb::ndim<1>, nb::device::cpu>& row_ptr,
             const nb::ndarray<nb::ro, int32_t, nb::ndim<1>, nb::device::cpu>& col_idx) {
            new (l) BlockLayout();
            l->batch = batch;
            l->heads = heads;
            l->num_q_blocks = nq;
            l->num_k_blocks = nk;
            l->row_ptr = int_vector(row_ptr);
            l->col_idx = int_vector(col_idx);
            l->validate();
          },
          nb::arg("batch"), nb::arg("heads"), nb::arg("num_q_blocks"), nb::arg("num_k_blocks"),
          nb::arg("row_ptr"), nb::arg("col_idx"))
      .def_rw("batch", &BlockLayout::batch)
      .def_rw("heads", &BlockLayout::heads)
      .def_rw("num_q_blocks", &BlockLayout::num_q_blocks)
      .def_rw("num_k_blocks", &BlockLayout::num_k_blocks)
      // Copies (the arrays own their data): a property's default policy,
      // reference_internal, cannot apply to them.
      .def_prop_ro("row_ptr",
                   [](const BlockLayout& l) { return to_numpy(l.row_ptr, {l.row_ptr.size()}); },
                   nb::rv_policy::move)
      .def_prop_ro("col_idx",
                   [](const BlockLayout& l) { return to_numpy(l.col_idx, {l.col_idx.size()}); },
                   nb::rv_policy::move)
      .def_prop_ro("rows", &BlockLayout::rows)
      .def_prop_ro("live_blocks", &BlockLayout::live_blocks)
      .def("validate", &BlockLayout::validate)
      .def("__repr__", [](const BlockLayout& l) {
        return detail::concat("BlockLayout(batch=", l.batch, ", heads=", l.heads, ", blocks=",
                              l.num_q_blocks, "x", l.num_k_blocks, ", live=", l.live_blocks(), ")");
      });

  nb::class_<BlockMask>(m, "BlockMask", "A dense boolean block mask [batch, heads, nq, nk].")
      .def(nb::init<int, int, int, int, bool>(), nb::arg("batch"), nb::arg("heads"),
           nb::arg("num_q_blocks"), nb::arg("num_k_blocks"), nb::arg("value") = false)
      .def_ro("batch", &BlockMask::batch)
      .def_ro("heads", &BlockMask::heads)
      .def_ro("num_q_blocks", &BlockMask::num_q_blocks)
      .def_ro("num_k_blocks", &BlockMask::num_k_blocks)
      .def_prop_ro("bits", [](nb::handle self) { return mask_bits(self); },
                   "A writable NumPy view [batch, heads, nq, nk] (uint8, 1 = live).");

  m.def("to_layout", &to_layout, nb::arg("mask"));
  m.def("to_mask", &to_mask, nb::arg("layout"));
  m.def("full_layout", &full_layout, nb::arg("batch"), nb::arg("heads"), nb::arg("num_blocks"));
  m.def("video_density", &video_density, nb::arg("layout"), nb::arg("grid"));
  m.def("blocks_meeting", &blocks_meeting, nb::arg("grid"), nb::arg("begin"), nb::arg("end"),
        "The blocks of `grid` that meet tokens [begin, end): (first, last + 1).");
  m.def("slice_layout", &slice_layout, nb::arg("layout"), nb::arg("grid"), nb::arg("q_begin"),
        nb::arg("q_end"), nb::arg("k_begin"), nb::arg("k_end"),
        "The layout of one chunk call (ring attention): the rows of the query blocks that meet "
        "[q_begin, q_end), each with its live key blocks that meet [k_begin, k_end). Empty "
        "(live_blocks == 0): the chunk pair contributes nothing.");
  m.def(
      "place_video_mask",
      [](const nb::ndarray<nb::ro, uint8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>& video_mask,
         const BlockGrid& grid, BlockMask& out, int b, int h) {
        const size_t n = size_t(grid.num_video_blocks);
        MODDIT_CHECK(video_mask.shape(0) == n && video_mask.shape(1) == n,
                     "place_video_mask: video_mask is ", video_mask.shape(0), "x",
                     video_mask.shape(1), ", the grid has ", n, "x", n, " video blocks");
        MODDIT_CHECK(b >= 0 && b < out.batch && h >= 0 && h < out.heads,
                     "place_video_mask: (b, h) = (", b, ", ", h, ") outside the mask");
        MODDIT_CHECK(out.num_q_blocks == grid.num_blocks() && out.num_k_blocks == grid.num_blocks(),
                     "place_video_mask: the mask is not over the grid's ", grid.num_blocks(),
                     " blocks");
        place_video_mask(video_mask.data(), grid, out, b, h);
      },
      nb::arg("video_mask"), nb::arg("grid"), nb::arg("out"), nb::arg("b"), nb::arg("h"));
  m.def(
      "layout_from_video_masks",
      [](const nb::ndarray<nb::ro, uint8_t, nb::ndim<4>, nb::c_contig, nb::device::cpu>& masks,
         const BlockGrid& grid) {
        const size_t n = size_t(grid.num_video_blocks);
        MODDIT_CHECK(masks.shape(2) == n && masks.shape(3) == n, "layout_from_video_masks: masks "
                     "are [", masks.shape(0), ", ", masks.shape(1), ", ", masks.shape(2), ", ",
                     masks.shape(3), "], the grid has ", n, "x", n, " video blocks");
        MODDIT_CHECK(masks.shape(0) >= 1 && masks.shape(1) >= 1 && masks.shape(0) <= 1 << 20 &&
                         masks.shape(1) <= 1 << 20,
                     "layout_from_video_masks: batch and heads must be >= 1, got ", masks.shape(0),
                     " and ", masks.shape(1));
        std::vector<uint8_t> flat(masks.data(), masks.data() + masks.size());
        const int batch = int(masks.shape(0)), heads = int(masks.shape(1));
        nb::gil_scoped_release release;
        return core::layout_from_video_masks(flat, grid, batch, heads);
      },
      nb::arg("masks"), nb::arg("grid"),
      "The block layout of per-(batch item, head) video block masks [B, H, n, n] (uint8): text "
      "rows and columns dense, every row's diagonal block live; the one layout builder of "
      "moddit's own policies.");
}

}  // namespace moddit::py
