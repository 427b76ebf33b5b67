"""Precision "fp8" through the Python API: moddit.attention, the Session, the
MOD-DiT config keys and the diffusers adapter; on the CPU (the emulation of the
GPU's FP8 quantization) and, where a Hopper GPU is there, on CUDA."""
import numpy as np
import pytest

import moddit
from conftest import has_cuda, needs_diffusers, reference_attention, rel_err, tiny_wan

# FP8's own error on N(0, 1)-like inputs (tests/cpu/test_cpu_fp8.cpp).
FP8_REL = 0.09
FP8_COS = 0.996


def cosine(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _inputs(B, N, H, D, seed):
    rng = np.random.default_rng(seed)
    return tuple((rng.standard_normal((B, N, H, D)) * s).astype(np.float32) for s in (1.5, 1.5, 1.0))


def test_cpu_fp8_is_quantized_and_within_fp8_error():
    tokens = moddit.TokenLayout(frames=2, height=10, width=13, text_tokens=40, text_valid=29,
                                text_position="after")
    q, k, v = _inputs(1, tokens.total_tokens, 2, 64, 1)
    ref, ref_lse = reference_attention(q, k, v, tokens)
    exact = moddit.attention(q, k, v, tokens)
    out, lse = moddit.attention(q, k, v, tokens, precision="fp8", return_lse=True)
    assert rel_err(exact, ref) < 1e-5
    assert 1e-4 < rel_err(out, ref) < FP8_REL  # quantized, and within FP8's error
    assert cosine(out, ref) > FP8_COS
    assert np.abs(lse - ref_lse).max() < 0.4


def test_precision_names_are_checked():
    q, k, v = _inputs(1, 128, 1, 64, 2)
    with pytest.raises(moddit.Error, match="precision"):
        moddit.attention(q, k, v, precision="int8")
    with pytest.raises(moddit.Error, match="precision"):
        moddit.moddit_config(precision="bf16")
    with pytest.raises(moddit.Error, match="warmup_precision"):
        moddit.moddit_config(warmup_precision=8)
    tokens = moddit.TokenLayout(frames=1, height=128, width=1)
    with pytest.raises(moddit.Error, match="warmup_precision"):
        moddit.Session(tokens, "dense", warmup_precision="fp8")


def test_config_keys_round_trip():
    c = moddit.moddit_config(precision="fp8", warmup_precision="fp8")
    assert (c.precision, c.warmup_precision) == ("fp8", "fp8")
    again = moddit.ModditConfig.from_json(c.to_json())
    assert (again.precision, again.warmup_precision) == ("fp8", "fp8")
    assert moddit.ModditConfig().precision == "exact"


def test_session_precision_reaches_the_calls():
    tokens = moddit.TokenLayout(frames=2, height=8, width=16)
    q, k, v = _inputs(1, tokens.total_tokens, 2, 64, 3)
    dense = moddit.Session(tokens, "dense", num_heads=2, head_dim=64, precision="fp8")
    dense.begin_step(0)
    want = moddit.attention(q, k, v, tokens, precision="fp8")
    assert np.array_equal(dense.attention(0, q, k, v), want)
    # MOD-DiT: the Session's precision goes to the config; an FP8 warm-up is not
    # plain dense (a caller must not replace it by its own exact attention).
    s = moddit.Session(tokens, "moddit", num_steps=4, num_heads=2, head_dim=64, warmup_steps=3,
                       precision="fp8", warmup_precision="fp8")
    assert (s.policy.config.precision, s.policy.config.warmup_precision) == ("fp8", "fp8")
    assert not s.plain_dense(0, 1)
    s.begin_step(0)
    assert np.array_equal(s.attention(0, q, k, v), want)
    exact_warmup = moddit.Session(tokens, "moddit", num_steps=4, num_heads=2, head_dim=64,
                                  warmup_steps=3, precision="fp8")
    assert exact_warmup.plain_dense(0, 1)
    assert moddit.get_backend("cpu").supports("fp8")


def _fp8_cuda():
    if not has_cuda():
        return False
    return moddit.get_backend("cuda").supports("fp8")


needs_fp8_gpu = pytest.mark.skipif(not _fp8_cuda(), reason="no GPU that runs precision fp8 (Hopper)")


@needs_fp8_gpu
@pytest.mark.parametrize("D", [64, 128])
def test_cuda_fp8_matches_emulation_and_reference(D):
    import torch

    tokens = moddit.TokenLayout(frames=3, height=15, width=21, text_tokens=77, text_valid=60,
                                text_position="before")
    q, k, v = _inputs(2, tokens.total_tokens, 3, D, 4)
    qc, kc, vc = (torch.from_numpy(x).cuda().bfloat16() for x in (q, k, v))
    qf, kf, vf = (x.float().cpu().numpy() for x in (qc, kc, vc))
    grid = moddit.make_block_grid(tokens, 128)
    mask = moddit.BlockMask(2, 3, grid.num_blocks, grid.num_blocks)
    mask.bits[...] = np.random.default_rng(5).random(mask.bits.shape) < 0.4
    for i in range(grid.num_blocks):
        mask.bits[:, :, i, i] = 1
    for layout, bits in ((None, None), (moddit.to_layout(mask), mask.bits)):
        out, lse = moddit.attention(qc, kc, vc, tokens, layout=layout, precision="fp8", return_lse=True)
        emu, emu_lse = moddit.attention(qf, kf, vf, tokens, layout=layout, precision="fp8", return_lse=True)
        ref, _ = reference_attention(qf, kf, vf, tokens, bits, grid.starts)
        got = out.float().cpu().numpy()
        assert rel_err(got, emu) < 1e-2  # the bf16 output's rounding
        assert np.abs(lse.cpu().numpy() - emu_lse).max() < 1e-2  # K's rounding flips (test_cuda_fp8.cpp)
        assert rel_err(got, ref) < FP8_REL and cosine(got, ref) > FP8_COS


@needs_fp8_gpu
def test_cuda_session_moddit_fp8_schedule():
    import torch

    spec = moddit.SyntheticSpec()
    spec.frames, spec.height, spec.width = 4, 16, 32
    spec.num_steps, spec.layers, spec.heads, spec.head_dim = 8, 1, 4, 128
    src = moddit.make_synthetic(spec)
    tokens = src.info.tokens
    kw = dict(device="cuda", num_steps=8, num_layers=1, num_heads=4, head_dim=128, warmup_steps=3,
              interval=3, target_density=0.3)
    s8 = moddit.Session(tokens, "moddit", precision="fp8", warmup_precision="fp8", **kw)
    sx = moddit.Session(tokens, "moddit", **kw)
    for step in range(8):
        s8.begin_step(step)
        sx.begin_step(step)
        q, k, v = (torch.from_numpy(x).cuda().bfloat16() for x in src.load(step, 0))
        o8, ox = s8.attention(0, q, k, v), sx.attention(0, q, k, v)
        assert torch.isfinite(o8.float()).all()
    torch.cuda.synchronize()
    kinds = [r.kind for r in s8.history]
    assert kinds == [r.kind for r in sx.history]
    # The FP8 maps drive nearly the same masks: the densities agree closely.
    d8 = [r.density for r in s8.history][3:]
    dx = [r.density for r in sx.history][3:]
    assert max(abs(a - b) for a, b in zip(d8, dx)) < 0.05


@needs_fp8_gpu
@needs_diffusers
def test_adapter_fp8_warmup_and_sparse_steps():
    import torch
    import moddit.diffusers as md

    model = tiny_wan().to("cuda", torch.bfloat16)
    x = dict(hidden_states=torch.randn(2, 4, 5, 32, 32, device="cuda", dtype=torch.bfloat16),
             encoder_hidden_states=torch.randn(2, 7, 16, device="cuda", dtype=torch.bfloat16),
             return_dict=False)
    with torch.no_grad():
        ref = model(timestep=torch.full((2,), 900.0, device="cuda"), **x)[0]
        md.enable(model, policy="dense", num_steps=4, precision="fp8")
        out = model(timestep=torch.full((2,), 900.0, device="cuda"), **x)[0]
        assert cosine(out.float().cpu().numpy(), ref.float().cpu().numpy()) > 0.99
        md.enable(model, policy="moddit", num_steps=6, warmup_steps=2, interval=2, target_density=0.3,
                  precision="fp8", warmup_precision="fp8")
        for t in torch.linspace(999, 1, 6):
            out = model(timestep=t.expand(2).cuda(), **x)[0]
        assert torch.isfinite(out.float()).all()
        ctl = model._moddit_state.controllers[0]
        # FP8 warm-up calls run on moddit's kernel (launches > 0), never SDPA.
        assert all(c.launches > 0 for c in ctl.calls if c.kind == "dense")
        md.disable(model)
