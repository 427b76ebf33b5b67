"""torch.compile on the GPU (skipped without a CUDA device): every family in
bf16, compiled by inductor with fullgraph=True, runs moddit's calls in the
eager run's order; aot_eager (no change of numerics) gives the eager output;
mode="reduce-overhead" (CUDA graphs) keeps moddit's calls out of the graphs,
records the parts between them as CUDA graphs and gives the compiled output;
capturing a moddit call by hand is refused."""
import pytest

import moddit
from conftest import needs_cuda, needs_diffusers

pytestmark = [needs_cuda, needs_diffusers]

MODDIT = dict(policy="moddit", num_steps=6, warmup_steps=3, interval=2, target_density=0.4,
              block_size=64)


def _model_and_inputs(family):
    import torch
    from test_diffusers import FAMILIES

    _, make, inputs = next(f for f in FAMILIES if f[0] == family)
    model = make().to("cuda", torch.bfloat16)

    def to_cuda(x):
        if isinstance(x, torch.Tensor):
            return x.to("cuda", torch.bfloat16) if x.is_floating_point() else x.to("cuda")
        return x

    return model, {k: to_cuda(v) for k, v in inputs(torch).items()}


def _denoise(model, x, steps=6):
    import torch

    outs = []
    for t in torch.linspace(999, 1, steps):
        x["timestep"] = t.expand(2).to("cuda")
        # clone: outputs of a CUDA graph replay are overwritten by the next replay
        outs.append(model(**x)[0].float().clone())
    return outs


def _calls(model):
    return [(c.step, c.layer, c.kind) for c in model._moddit_state.controllers[0].calls]


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("family", ["wan", "hunyuan_video", "cogvideox"])
def test_compiled_family_on_cuda(family):
    import torch
    import moddit.diffusers as md

    model, x = _model_and_inputs(family)
    torch._dynamo.reset()
    with torch.no_grad():
        md.enable(model, **MODDIT)
        ref = _denoise(model, x)
        ref_calls = _calls(model)
        # aot_eager: traced and functionalised, the same kernels: the eager output.
        md.enable(model, **MODDIT)
        out = _denoise(torch.compile(model, fullgraph=True, backend="aot_eager"), x)
        assert _calls(model) == ref_calls
        assert max(_rel(a, b) for a, b in zip(out, ref)) < 1e-2
        # inductor: fused bf16 kernels change the inputs of attention by rounding,
        # so a block at the density threshold may flip; the calls are the same.
        torch._dynamo.reset()
        md.enable(model, **MODDIT)
        out = _denoise(torch.compile(model, fullgraph=True), x)
        assert _calls(model) == ref_calls
        assert all(torch.isfinite(o).all() for o in out)
        assert max(_rel(a, b) for a, b in zip(out, ref)) < 0.1
        ctl = model._moddit_state.controllers[0]
        md.summary(model)  # resolves the densities the GPU step reported
        sparse = [c.density for c in ctl.calls if c.kind in ("sparse", "refresh")]
        assert sparse and all(0.0 < d < 1.0 for d in sparse)
        md.disable(model)


def test_reduce_overhead_keeps_moddit_out_of_cuda_graphs():
    import torch
    import moddit.diffusers as md
    from torch._dynamo.utils import counters
    from torch._inductor import cudagraph_trees

    model, x = _model_and_inputs("wan")
    torch._dynamo.reset()
    with torch.no_grad():
        md.enable(model, **MODDIT)
        compiled = torch.compile(model, fullgraph=True)
        ref = _denoise(compiled, x)
        ref_calls = _calls(model)
        torch._dynamo.reset()
        md.enable(model, **MODDIT)
        graphed = torch.compile(model, fullgraph=True, mode="reduce-overhead")
        skips = counters["inductor"]["cudagraph_skips"]
        out = _denoise(graphed, x)
        assert _calls(model) == ref_calls  # every call ran its host decisions
        assert max(_rel(a, b) for a, b in zip(out, ref)) < 1e-2
        # The parts between moddit's calls did run as CUDA graphs: inductor
        # partitioned the graph instead of giving CUDA graphs up.
        assert counters["inductor"]["cudagraph_skips"] == skips, "inductor skipped CUDA graphs"
        manager = cudagraph_trees.get_manager(torch.cuda.current_device(),
                                              create_if_none_exists=False)
        assert manager is not None and any(manager.roots.values()), "no CUDA graph recorded"
        md.disable(model)


def test_capturing_a_moddit_call_is_refused():
    import torch
    import moddit.diffusers as md

    model, x = _model_and_inputs("wan")
    x["timestep"] = torch.full((2,), 999.0, device="cuda")
    md.enable(model, **MODDIT)
    with torch.no_grad():
        model(**x)  # warm-up outside the capture (allocations, caches)
        graph = torch.cuda.CUDAGraph()
        with pytest.raises(moddit.Error, match="cannot be captured in a CUDA graph"):
            with torch.cuda.graph(graph):
                model(**x)
    md.disable(model)


def test_attention_operator_compiled_on_cuda_equals_eager():
    import torch
    from moddit import _torch_ops

    tokens = moddit.TokenLayout(frames=3, height=15, width=21, text_tokens=77, text_valid=60,
                                text_position="before")
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(2, tokens.total_tokens, 4, 128, generator=g).to("cuda", torch.bfloat16)
               for _ in range(3))
    tok, pos = _torch_ops.token_args(tokens)
    ref = moddit.attention(q, k, v, tokens)

    def fn(q, k, v):
        return torch.ops.moddit.attention(q * 1, k, v, tok, pos, 128, 0.0, None, None, [], None,
                                          1e-4, "NHD", False, False)[0]

    out = torch.compile(fn, fullgraph=True)(q, k, v)
    assert torch.equal(out, ref)
