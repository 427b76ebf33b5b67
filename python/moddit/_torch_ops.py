"""moddit's attention entry points as PyTorch custom operators (namespace
``torch.ops.moddit``), so that ``torch.compile`` traces a model through them
without a graph break: a fake implementation gives each output's shape, dtype
and strides; the real one runs moddit's host decisions (step, policy plan,
MOD-DiT state) and kernels, as one opaque call inside the compiled graph.

    attention(q, k, v, tokens, text_position, block_size, scale, row_ptr, col_idx,
              layout_shape, heads, eta, qkv_layout, return_lse, return_map, precision="exact")
        -> (out, lse, map_counts)       stateless dense / block-sparse attention
    session_begin_step(session, step)
    session_attention(q, k, v, session, layer, slot_begin, qkv_layout) -> out
    diffusers_begin_forward(hidden_states, timestep, text_mask, controller)
    diffusers_attention(q, k, v, attn_mask, processor, text_tokens, qkv_layout) -> out
    diffusers_end_forward(output, controller)

Objects are named by integer handles (moddit._handles). A per-layer handle (a
diffusers processor) is a CPU int64 tensor, not an int: dynamo would bake an
int into the graph and guard on it, so compiling the repeated blocks one by one
(diffusers' compile_repeated_blocks) would recompile per block; a tensor is an
input whose value only the op reads. The denoising step is never an argument:
the op reads it from the host state that diffusers_begin_forward updated from
the forward's timestep tensor at run time.

The stateful ops are ordered effects (torch.library.EffectType.ORDERED): the
compiler keeps them even without outputs and never reorders them among
themselves, so the Session sees its calls in program order. Every op is tagged
cudagraph_unsafe: what a call launches is decided on the host per call (see
docs/PYTHON.md, "torch.compile and CUDA graphs"), and the ops refuse to run
while a CUDA graph is being captured rather than be replayed with a stale plan.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from . import _api
from . import _handles
from . import _moddit as _C

Tensor = torch.Tensor

# cudagraph_unsafe: keep the op out of inductor's CUDA graphs (partitioned around
# it). needs_exact_strides: the op's inputs have exactly the traced strides, so the
# output allocated like q has the strides the fake implementation promised.
_TAGS = tuple(getattr(torch.Tag, name) for name in ("cudagraph_unsafe", "needs_exact_strides")
              if hasattr(torch.Tag, name))

_POSITIONS = ("none", "before", "after")


def _ordered(op) -> None:
    """Marks op as an ordered side effect for torch.compile."""
    effect = torch.library.EffectType.ORDERED
    if hasattr(op, "register_effect"):
        op.register_effect(effect)
    else:  # torch releases whose CustomOpDef lacks register_effect
        from torch._higher_order_ops.effects import _register_effectful_op

        _register_effectful_op(op._qualname, effect)


def _refuse_capture(x: Tensor, what: str) -> None:
    if x.is_cuda and torch.cuda.is_current_stream_capturing():
        raise _C.Error(
            f"moddit: {what} cannot be captured in a CUDA graph (what it launches is decided on "
            "the host per call); keep it outside the graph (torch.compile partitions around it)")


def _like(out: Tensor, q: Tensor) -> Tensor:
    """out with the strides torch.empty_like(q) has (the fake implementation's)."""
    if out.stride() == torch.empty_like(q, device="meta").stride():
        return out
    res = torch.empty_like(q)
    res.copy_(out)
    return res


# --- op arguments from moddit objects (outside the compiled region) ----------------

def token_args(tokens: _C.TokenLayout) -> Tuple[list, str]:
    """(tokens, text_position) arguments of torch.ops.moddit.attention."""
    return ([tokens.frames, tokens.height, tokens.width, tokens.text_tokens, tokens.text_valid],
            tokens.text_position)


def layout_args(layout: Optional[_C.BlockLayout]) -> Tuple[Optional[Tensor], Optional[Tensor], list]:
    """(row_ptr, col_idx, layout_shape) arguments of torch.ops.moddit.attention:
    the layout's CSR arrays as CPU int32 tensors (None, None, [] = dense)."""
    if layout is None:
        return None, None, []
    return (torch.from_numpy(layout.row_ptr), torch.from_numpy(layout.col_idx),
            [layout.batch, layout.heads, layout.num_q_blocks, layout.num_k_blocks])


def _token_layout(tokens: Sequence[int], text_position: str) -> _C.TokenLayout:
    if len(tokens) != 5:
        raise _C.Error("moddit::attention: tokens must be [frames, height, width, text_tokens, "
                       f"text_valid], got {len(tokens)} values")
    if text_position not in _POSITIONS:
        raise _C.Error(f"moddit::attention: text_position must be one of {_POSITIONS}, "
                       f"got {text_position!r}")
    f, h, w, t, tv = (int(x) for x in tokens)
    return _C.TokenLayout(frames=f, height=h, width=w, text_tokens=t, text_valid=tv,
                          text_position=text_position)


def _extra_outputs(q, tokens, text_position, block_size, qkv_layout, return_lse, return_map):
    """(lse, map_counts) shapes; [0] when not asked for."""
    n_axis = 1 if qkv_layout == "NHD" else 2
    B, N, H = q.shape[0], q.shape[n_axis], q.shape[3 - n_axis]
    lse = (B, H, N) if return_lse else (0,)
    if return_map:
        n = _C.make_block_grid(_token_layout(tokens, text_position), block_size).num_video_blocks
        counts = (B, H, n, n)
    else:
        counts = (0,)
    return lse, counts


# --- stateless attention -------------------------------------------------------------

def _precision_kw(precision: str) -> dict:
    """moddit.attention's precision keyword, passed only when it is not the
    default "exact", so that the operator also runs on modules built before the
    FP8 option (where asking for "fp8" is then refused by moddit.attention)."""
    return {} if precision == "exact" else {"precision": precision}


@torch.library.custom_op("moddit::attention", mutates_args=(), tags=_TAGS)
def attention(q: Tensor, k: Tensor, v: Tensor, tokens: Sequence[int], text_position: str,
              block_size: int, scale: float, row_ptr: Optional[Tensor], col_idx: Optional[Tensor],
              layout_shape: Sequence[int], heads: Optional[Sequence[int]], eta: float,
              qkv_layout: str, return_lse: bool, return_map: bool,
              precision: str = "exact") -> Tuple[Tensor, Tensor, Tensor]:
    """moddit.attention() as an operator: tokens = [frames, height, width,
    text_tokens, text_valid] (token_args), the layout as CSR tensors
    (layout_args; None = dense), scale 0 = 1/sqrt(D), precision as
    moddit.attention's. lse and map_counts are empty ([0]) unless return_lse /
    return_map."""
    _refuse_capture(q, "moddit::attention")
    layout = None
    if row_ptr is not None or col_idx is not None:
        if row_ptr is None or col_idx is None or len(layout_shape) != 4:
            raise _C.Error("moddit::attention: a layout needs row_ptr, col_idx and layout_shape "
                           "[batch, heads, num_q_blocks, num_k_blocks] (see layout_args)")
        layout = _C.BlockLayout(*(int(x) for x in layout_shape),
                                row_ptr.to("cpu", torch.int32).numpy(),
                                col_idx.to("cpu", torch.int32).numpy())
    result = _api.attention(q, k, v, _token_layout(tokens, text_position), layout=layout,
                            heads=heads, block_size=block_size, scale=scale or None,
                            return_lse=return_lse, return_map=return_map, eta=eta,
                            qkv_layout=qkv_layout, **_precision_kw(precision))
    result = list(result) if isinstance(result, tuple) else [result]
    out = result.pop(0)
    lse = result.pop(0) if return_lse else q.new_empty(0, dtype=torch.float32)
    counts = result.pop(0) if return_map else q.new_empty(0, dtype=torch.int32)
    return out, lse, counts


@attention.register_fake
def _(q, k, v, tokens, text_position, block_size, scale, row_ptr, col_idx, layout_shape, heads,
      eta, qkv_layout, return_lse, return_map, precision="exact"):
    lse, counts = _extra_outputs(q, tokens, text_position, block_size, qkv_layout, return_lse,
                                 return_map)
    return (q.new_empty(q.shape), q.new_empty(lse, dtype=torch.float32),
            q.new_empty(counts, dtype=torch.int32))


# --- Session -------------------------------------------------------------------------

@torch.library.custom_op("moddit::session_begin_step", mutates_args=(), tags=_TAGS)
def session_begin_step(session: int, step: int) -> None:
    _handles.lookup(session, "Session").begin_step(step)


@session_begin_step.register_fake
def _(session, step):
    return None


@torch.library.custom_op("moddit::session_attention", mutates_args=(), tags=_TAGS)
def session_attention(q: Tensor, k: Tensor, v: Tensor, session: int, layer: int, slot_begin: int,
                      qkv_layout: str) -> Tensor:
    """Session.attention() as an operator (the Session named by its handle)."""
    _refuse_capture(q, "moddit::session_attention")
    return _handles.lookup(session, "Session").attention(layer, q, k, v, slot_begin=slot_begin,
                                                        qkv_layout=qkv_layout)


@session_attention.register_fake
def _(q, k, v, session, layer, slot_begin, qkv_layout):
    return q.new_empty(q.shape)


# --- diffusers processors and their transformer's forward ------------------------------

@torch.library.custom_op("moddit::diffusers_begin_forward", mutates_args=(), tags=_TAGS)
def diffusers_begin_forward(hidden_states: Tensor, timestep: Optional[Tensor],
                            text_mask: Optional[Tensor], controller: int) -> None:
    """The transformer's forward starts: the controller learns the step (from the
    timestep's value, read here at run time), the latent grid and the text mask."""
    _refuse_capture(hidden_states, "moddit::diffusers_begin_forward")
    _handles.lookup(controller, "moddit.diffusers controller").begin_forward(
        hidden_states, timestep, text_mask)


@diffusers_begin_forward.register_fake
def _(hidden_states, timestep, text_mask, controller):
    return None


@torch.library.custom_op("moddit::diffusers_attention", mutates_args=(), tags=_TAGS)
def diffusers_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor],
                        processor: Tensor, text_tokens: int, qkv_layout: str) -> Tensor:
    """One self-attention call of a moddit diffusers processor (named by its
    handle tensor): the policy's plan, moddit's kernels or the model's own
    attention for plain dense calls."""
    _refuse_capture(q, "moddit::diffusers_attention")
    proc = _handles.lookup(int(processor), "moddit.diffusers processor")
    return _like(proc.run_attention(q, k, v, attn_mask, text_tokens, qkv_layout), q)


@diffusers_attention.register_fake
def _(q, k, v, attn_mask, processor, text_tokens, qkv_layout):
    return torch.empty_like(q)


@torch.library.custom_op("moddit::diffusers_end_forward", mutates_args=(), tags=_TAGS)
def diffusers_end_forward(output: Tensor, controller: int) -> None:
    """The transformer's forward produced `output` (its time is taken here)."""
    _handles.lookup(controller, "moddit.diffusers controller").end_forward()


@diffusers_end_forward.register_fake
def _(output, controller):
    return None


for _op in (session_begin_step, session_attention, diffusers_begin_forward, diffusers_attention,
            diffusers_end_forward):
    _ordered(_op)


def handle_tensor(handle: int) -> Tensor:
    """A handle as the CPU int64 scalar tensor the per-layer ops take."""
    return torch.tensor(int(handle), dtype=torch.int64)
