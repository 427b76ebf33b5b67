"""torch.compile through moddit's custom operators (CPU): the diffusers adapters
of every family compile with fullgraph=True (no graph break anywhere, one
moddit attention operator per layer), keep the eager run's step / call-kind
sequence without recompiling per step, and give the eager output; regional
compilation (diffusers' compile_repeated_blocks) compiles the blocks once;
the Session and the stateless attention compile as operators too."""
import numpy as np
import pytest

import moddit
from conftest import needs_diffusers, needs_torch, rel_err

pytestmark = needs_torch

ATTENTION_OP = "moddit.diffusers_attention"


def _recording_backend(torch, graphs, inner="aot_eager"):
    """A torch.compile backend that keeps each graph dynamo hands over, then
    compiles it with `inner` (aot_eager: fake tensors and functionalization, so
    the fake implementations and the ordered effects are exercised)."""
    from torch._dynamo import lookup_backend

    compile_inner = lookup_backend(inner)

    def backend(gm, example_inputs):
        graphs.append(gm)
        return compile_inner(gm, example_inputs)

    return backend


def _denoise(model, x, steps, batch):
    import torch

    outs = []
    for t in torch.linspace(999, 1, steps):
        x["timestep"] = t.expand(batch).clone()
        outs.append(model(**x)[0])
    return outs


def _calls(model):
    return [(c.step, c.layer, c.batch, c.kind) for c in model._moddit_state.controllers[0].calls]


MODDIT = dict(policy="moddit", num_steps=6, warmup_steps=3, interval=2, target_density=0.3,
              block_size=64)


@needs_diffusers
@pytest.mark.parametrize("family", ["wan", "hunyuan_video", "cogvideox"])
def test_compiled_transformer_has_no_graph_break_and_equals_eager(family):
    import torch
    import moddit.diffusers as md
    from test_diffusers import FAMILIES

    _, make, inputs = next(f for f in FAMILIES if f[0] == family)
    model = make()
    x = inputs(torch)
    torch._dynamo.reset()
    with torch.no_grad():
        md.enable(model, **MODDIT)
        ref = _denoise(model, x, 6, 2)
        ref_calls = _calls(model)
        md.enable(model, **MODDIT)  # a fresh generation
        graphs = []
        compiled = torch.compile(model, fullgraph=True, backend=_recording_backend(torch, graphs))
        out = _denoise(compiled, x, 6, 2)
        calls = _calls(model)
    layers = model._moddit_state.controllers[0].num_layers
    # Dynamo compiles the forward pre-hook, the forward and the forward hook as
    # three frames, each whole (fullgraph=True), and never again: the step is read
    # from the timestep tensor at run time, not baked into the graph.
    assert len(graphs) == 3
    ops = [str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"]
    assert ops.count(ATTENTION_OP) == layers
    assert ops.count("moddit.diffusers_begin_forward") == 1
    assert ops.count("moddit.diffusers_end_forward") == 1
    assert calls == ref_calls
    assert {k for *_, k in calls} >= {"dense", "record", "sparse"}
    for a, b in zip(out, ref):
        assert float((a - b).norm() / b.norm()) < 1e-6
    assert md.summary(model).forward_seconds > 0  # the hooks' timers ran
    md.disable(model)


@needs_diffusers
def test_inductor_compiled_wan_equals_eager():
    import torch
    import moddit.diffusers as md
    from conftest import tiny_wan
    from test_diffusers import wan_inputs

    model = tiny_wan()
    x = wan_inputs(torch)
    torch._dynamo.reset()
    with torch.no_grad():
        md.enable(model, **MODDIT)
        ref = _denoise(model, x, 6, 2)
        ref_calls = _calls(model)
        md.enable(model, **MODDIT)
        out = _denoise(torch.compile(model, fullgraph=True), x, 6, 2)
    assert _calls(model) == ref_calls
    for a, b in zip(out, ref):
        assert float((a - b).norm() / b.norm()) < 1e-5  # inductor's fused fp32 kernels
    md.disable(model)


@needs_diffusers
def test_compile_repeated_blocks_compiles_the_block_once():
    """Each processor is named by a tensor, not an int: an int would be baked
    into the block's graph and recompile it for every layer."""
    import torch
    import moddit.diffusers as md
    from conftest import tiny_wan
    from test_diffusers import wan_inputs

    model = tiny_wan(num_layers=4)
    x = wan_inputs(torch)
    torch._dynamo.reset()
    graphs = []
    with torch.no_grad():
        md.enable(model, **MODDIT)
        ref = _denoise(model, x, 6, 2)
        ref_calls = _calls(model)
        md.enable(model, **MODDIT)
        backend = _recording_backend(torch, graphs)
        for block in model.blocks:
            block.compile(fullgraph=True, backend=backend)
        out = _denoise(model, x, 6, 2)
    assert len(graphs) == 1
    assert [str(n.target) for n in graphs[0].graph.nodes].count(ATTENTION_OP) == 1
    assert _calls(model) == ref_calls
    for a, b in zip(out, ref):
        assert float((a - b).norm() / b.norm()) < 1e-6
    md.disable(model)


def test_compiled_session_attention_equals_eager():
    import torch

    tokens = moddit.TokenLayout(frames=3, height=8, width=12, text_tokens=20, text_valid=13,
                                text_position="after")
    kw = dict(device="cpu", num_steps=6, num_layers=2, num_heads=2, head_dim=64,
              block_size=64, warmup_steps=3, interval=2, target_density=0.4)
    eager, compiled = moddit.Session(tokens, **kw), moddit.Session(tokens, **kw)
    graphs = []

    def layer_pair(session, q, k, v):
        out = session.attention(0, q, k, v)
        return session.attention(1, out * 0.5 + q, k, v)

    run = torch.compile(layer_pair, fullgraph=True, backend=_recording_backend(torch, graphs))
    g = torch.Generator().manual_seed(3)
    for step in range(6):
        q, k, v = (torch.randn(2, tokens.total_tokens, 2, 64, generator=g) for _ in range(3))
        eager.begin_step(step)
        compiled.begin_step(step)
        ref = layer_pair(eager, q, k, v)
        out = run(compiled, q, k, v)
        assert rel_err(out.numpy(), ref.numpy()) < 1e-6
    kinds = [(r.step, r.layer, r.kind) for r in compiled.history]
    assert kinds == [(r.step, r.layer, r.kind) for r in eager.history]
    assert {str(r.kind) for r in compiled.history} >= {"CallKind.DENSE", "CallKind.SPARSE"}
    assert len(graphs) == 1  # one graph for every step (the session handle is its constant)
    nodes = [str(n.target) for n in graphs[0].graph.nodes]
    assert nodes.count("moddit.session_attention") == 2


def _sparse_case(torch):
    tokens = moddit.TokenLayout(frames=2, height=10, width=9, text_tokens=33, text_valid=21,
                                text_position="before")
    grid = moddit.make_block_grid(tokens, 64)
    nb = grid.num_blocks
    bits = np.random.default_rng(5).random((1, 3, nb, nb)) < 0.5
    bits[..., np.arange(nb), np.arange(nb)] = True
    mask = moddit.BlockMask(1, 3, nb, nb)
    mask.bits[...] = bits
    layout = moddit.to_layout(mask)
    g = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(1, tokens.total_tokens, 3, 64, generator=g) for _ in range(3))
    return tokens, layout, q, k, v


def test_attention_operator_matches_the_python_call_and_its_fake():
    import torch
    from moddit import _torch_ops

    tokens, layout, q, k, v = _sparse_case(torch)
    tok, pos = _torch_ops.token_args(tokens)
    row_ptr, col_idx, shape = _torch_ops.layout_args(layout)
    args = (q, k, v, tok, pos, 64, 0.0, row_ptr, col_idx, shape, None, 1e-4, "NHD", True, True)
    torch.library.opcheck(torch.ops.moddit.attention.default, args,
                          test_utils=("test_schema", "test_faketensor"))
    ref_out, ref_lse, ref_map = moddit.attention(q, k, v, tokens, layout=layout, block_size=64,
                                                 return_lse=True, return_map=True)
    graphs = []
    run = torch.compile(lambda *a: torch.ops.moddit.attention(*a), fullgraph=True,
                        backend=_recording_backend(torch, graphs))
    out, lse, counts = run(*args)
    assert torch.equal(out, ref_out) and torch.equal(lse, ref_lse)
    assert torch.equal(counts, ref_map)
    dense, no_lse, no_map = torch.ops.moddit.attention(q, k, v, tok, pos, 64, 0.0, None, None,
                                                       [], None, 1e-4, "NHD", False, False)
    assert no_lse.numel() == 0 and no_map.numel() == 0
    assert torch.equal(dense, moddit.attention(q, k, v, tokens, block_size=64))
    with pytest.raises(moddit.Error, match="text_position must be one of"):
        torch.ops.moddit.attention(q, k, v, tok, "middle", 64, 0.0, None, None, [], None, 1e-4,
                                   "NHD", False, False)


def test_attention_operator_passes_precision():
    """precision reaches moddit.attention (the FP8 path: its CPU emulation here)."""
    import inspect
    import torch

    tokens, layout, q, k, v = _sparse_case(torch)
    tok, pos, row_ptr, col_idx, shape = _torch_ops_args(tokens, layout)
    args = (q, k, v, tok, pos, 64, 0.0, row_ptr, col_idx, shape, None, 1e-4, "NHD", False, False)
    exact = torch.ops.moddit.attention(*args)[0]
    assert torch.equal(exact, torch.ops.moddit.attention(*args, "exact")[0])
    if "precision" not in inspect.signature(moddit.attention).parameters:
        with pytest.raises(TypeError, match="precision"):
            torch.ops.moddit.attention(*args, "fp8")
        return
    ref = moddit.attention(q, k, v, tokens, layout=layout, block_size=64, precision="fp8")
    run = torch.compile(lambda *a: torch.ops.moddit.attention(*a, "fp8")[0], fullgraph=True,
                        backend="aot_eager")
    out = run(*args)
    assert torch.equal(out, ref)
    assert 0 < rel_err(out.numpy(), exact.numpy()) < 0.1  # FP8 rounding, not another call


def _torch_ops_args(tokens, layout):
    from moddit import _torch_ops

    return (*_torch_ops.token_args(tokens), *_torch_ops.layout_args(layout))


def test_python_attention_call_inside_compile_runs_eagerly():
    """moddit.attention() takes host objects dynamo cannot read: inside
    torch.compile it is a graph break, with the eager result."""
    import torch

    tokens, layout, q, k, v = _sparse_case(torch)
    ref = moddit.attention(q, k, v, tokens, layout=layout, block_size=64)

    def fn(q, k, v):
        return moddit.attention(q * 1.0, k, v, tokens, layout=layout, block_size=64) + 0.0

    assert torch.equal(torch.compile(fn, backend="eager")(q, k, v), ref)
