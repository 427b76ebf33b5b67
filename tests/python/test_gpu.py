"""GPU tests (skipped without a CUDA device): the caller's-stream semantics, the
session and the diffusers adapters on CUDA, other DLPack producers, and the
cached-layout and backend checks. The attention matrix against the CPU reference
is test_gpu_matrix.py."""
import numpy as np
import pytest

import moddit
from conftest import needs_cuda, needs_diffusers, reference_attention, rel_err, tiny_wan

pytestmark = needs_cuda

BF16_TOL = 2e-2
F16_TOL = 5e-3


def _qkv(torch, B, N, H, D, dtype, device="cuda"):
    g = torch.Generator(device="cpu").manual_seed(int(np.random.default_rng().integers(1 << 30)))
    return tuple(torch.randn(B, N, H, D, generator=g).to(device=device, dtype=dtype)
                 for _ in range(3))


# Dense and block-sparse attention, the LSE and the map against the CPU reference:
# the generated matrix, test_gpu_matrix.py.


def test_runs_on_the_callers_current_stream():
    import torch

    tokens = moddit.TokenLayout(frames=4, height=30, width=52)  # Wan-like frame, N = 6240
    side = torch.cuda.Stream()
    big = torch.randn(4096, 4096, device="cuda")
    with torch.cuda.stream(side):
        # Slow producer work queued on `side`, then q/k/v written on `side`.
        for _ in range(8):
            big = big @ big
            big = big / big.norm()
        q, k, v = _qkv(torch, 1, tokens.total_tokens, 4, 128, torch.bfloat16)
        q = q + big[0, 0].to(torch.bfloat16) * 0
        out = moddit.attention(q, k, v, tokens)
        backend = moddit.get_backend(q)
        if backend.stream != 0:
            assert backend.stream == side.cuda_stream
        done = out.float().sum()  # consumer on the same stream, no synchronisation
    side.synchronize()
    ref = moddit.attention(q, k, v, tokens)  # default stream, after the side stream
    torch.cuda.synchronize()
    # A race (moddit reading q before the side stream wrote it) gives garbage,
    # not round-off: the results agree to kernel reproducibility.
    assert float((out.float() - ref.float()).norm() / ref.float().norm()) < 1e-3
    assert torch.isfinite(done)


def test_session_moddit_on_cuda_follows_its_masks():
    import torch

    spec = moddit.SyntheticSpec()
    spec.frames, spec.height, spec.width = 4, 16, 32
    spec.num_steps, spec.layers, spec.heads, spec.head_dim = 8, 1, 4, 128
    src = moddit.make_synthetic(spec)
    tokens = src.info.tokens
    s = moddit.Session(tokens, "moddit", device="cuda", num_steps=8, num_layers=1, num_heads=4,
                       head_dim=128, warmup_steps=3, interval=3, target_density=0.3)
    for step in range(8):
        s.begin_step(step)
        q, k, v = (torch.from_numpy(x).cuda().bfloat16() for x in src.load(step, 0))
        out = s.attention(0, q, k, v)
    torch.cuda.synchronize()
    assert [r.kind for r in s.history][-1] in (moddit.CallKind.SPARSE, moddit.CallKind.REFRESH)
    # The step ran on the GPU (the default there); its densities reached the history.
    assert s.policy.state_device == moddit.Device.CUDA
    assert 0.0 < s.history[-1].density < 0.6
    assert len(s.policy.fits) == 2 * 4 + 4  # two records and one refresh, 4 heads each
    grid = moddit.make_block_grid(tokens, 128)
    n = grid.num_video_blocks
    mask = moddit.BlockMask(1, 4, grid.num_blocks, grid.num_blocks)
    for h in range(4):
        moddit.place_video_mask(s.policy.video_mask(0, 0, h).reshape(n, n), grid, mask, 0, h)
    qf, kf, vf = (x.float().cpu().numpy() for x in (q, k, v))
    ref, _ = reference_attention(qf, kf, vf, tokens, mask.bits, grid.starts)
    assert rel_err(out.float().cpu().numpy(), ref) < BF16_TOL


@needs_diffusers
def test_adapter_on_cuda_dense_equals_original_and_moddit_runs():
    import torch
    import moddit.diffusers as md

    model = tiny_wan().to("cuda", torch.bfloat16)
    x = dict(hidden_states=torch.randn(2, 4, 5, 32, 32, device="cuda", dtype=torch.bfloat16),
             encoder_hidden_states=torch.randn(2, 7, 16, device="cuda", dtype=torch.bfloat16),
             return_dict=False)
    with torch.no_grad():
        ref = model(timestep=torch.full((2,), 900.0, device="cuda"), **x)[0]
        md.enable(model, policy="dense", num_steps=4)
        out = model(timestep=torch.full((2,), 900.0, device="cuda"), **x)[0]
        assert float((out - ref).float().norm() / ref.float().norm()) < BF16_TOL
        md.enable(model, policy="moddit", num_steps=6, warmup_steps=2, interval=2,
                  target_density=0.3)
        for t in torch.linspace(999, 1, 6):
            out = model(timestep=t.expand(2).cuda(), **x)[0]
        assert torch.isfinite(out.float()).all()
        s = md.summary(model)
        assert s.attention_seconds > 0 and s.mean_density is not None
        # The densities the GPU step reported after each call were filled in.
        ctl = model._moddit_state.controllers[0]
        sparse = [c.density for c in ctl.calls if c.kind in ("sparse", "refresh")]
        assert sparse and all(0.0 < d < 1.0 for d in sparse)
        md.disable(model)


@needs_diffusers
@pytest.mark.parametrize("family", ["wan", "hunyuan_video", "cogvideox"])
def test_every_family_on_cuda(family):
    """Dense policy = the original processors (bf16 tolerance); MOD-DiT runs."""
    import torch
    import moddit.diffusers as md
    from test_diffusers import FAMILIES

    _, make, inputs = next(f for f in FAMILIES if f[0] == family)
    model = make().to("cuda", torch.bfloat16)

    def to_cuda(x):
        if isinstance(x, torch.Tensor):
            return x.to("cuda", torch.bfloat16) if x.is_floating_point() else x.to("cuda")
        return x

    x = {k: to_cuda(v) for k, v in inputs(torch).items()}
    with torch.no_grad():
        ref = model(**x)[0]
        md.enable(model, policy="dense", num_steps=4)
        out = model(**x)[0]
        assert float((out - ref).float().norm() / ref.float().norm()) < 3e-2
        md.enable(model, policy="moddit", num_steps=5, warmup_steps=2, interval=2,
                  target_density=0.4, block_size=64)
        for t in torch.linspace(999, 1, 5):
            x["timestep"] = t.expand(2).to("cuda")
            out = model(**x)[0]
        assert torch.isfinite(out.float()).all()
        assert md.summary(model).mean_density is not None
        md.disable(model)


def test_cupy_and_jax_inputs_on_cuda():
    """Other DLPack producers on the GPU: CuPy (output in CuPy, on CuPy's current
    stream) and JAX (read-only input; the output buffer comes from PyTorch)."""
    import torch

    tokens = moddit.TokenLayout(frames=2, height=16, width=16, text_tokens=20, text_valid=15,
                                text_position="after")
    rng = np.random.default_rng()
    host = [rng.standard_normal((1, tokens.total_tokens, 2, 64)).astype(np.float16)
            for _ in range(3)]
    ref, _ = reference_attention(*[h.astype(np.float32) for h in host], tokens)
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        with cupy.cuda.Stream(non_blocking=True):
            q, k, v = (cupy.asarray(h) for h in host)
            out = moddit.attention(q, k, v, tokens)
            assert isinstance(out, cupy.ndarray) and out.dtype == cupy.float16
            got = cupy.asnumpy(out).astype(np.float32)
        assert rel_err(got, ref) < F16_TOL
    try:
        import jax
        import jax.numpy as jnp
        gpus = jax.devices("gpu")
    except Exception:
        gpus = []
    if gpus:
        q, k, v = (jax.device_put(jnp.asarray(h), gpus[0]) for h in host)
        out = torch.empty(host[0].shape, dtype=torch.float16, device=f"cuda:{gpus[0].id}")
        moddit.attention(q, k, v, tokens, out=out)
        assert rel_err(out.float().cpu().numpy(), ref) < F16_TOL
    if cupy is None and not gpus:
        pytest.skip("neither CuPy nor JAX with a GPU is installed")


def test_cached_layout_is_checked_against_every_calls_batch():
    # Issue 13: the CUDA backend caches layouts by content; a layout made for
    # batch 1, used once at batch 1, must be refused at batch 2 (it was run with
    # garbage for batch item 1 and invalid reads).
    import torch

    tokens = moddit.TokenLayout(frames=3, height=15, width=21)
    grid = moddit.make_block_grid(tokens, 128)
    mask = moddit.BlockMask(1, 2, grid.num_blocks, grid.num_blocks)
    rng = np.random.default_rng()
    mask.bits[...] = rng.random(mask.bits.shape) < 0.4
    for i in range(grid.num_blocks):
        mask.bits[:, :, i, i] = 1
    layout = moddit.to_layout(mask)
    q1, k1, v1 = _qkv(torch, 1, tokens.total_tokens, 2, 128, torch.bfloat16)
    moddit.sparse_attention(q1, k1, v1, layout, tokens)  # valid: now cached
    q2, k2, v2 = _qkv(torch, 2, tokens.total_tokens, 2, 128, torch.bfloat16)
    with pytest.raises(moddit.Error, match="batch 1"):
        moddit.sparse_attention(q2, k2, v2, layout, tokens)
    torch.cuda.synchronize()


def test_moddit_state_refuses_a_second_cuda_backend():
    import torch

    tokens = moddit.TokenLayout(frames=2, height=16, width=32)
    policy = moddit.make_policy("moddit", 1, 2, warmup_steps=2, interval=2)
    a, b = moddit.cuda_backend(0), moddit.cuda_backend(0)  # two instances on one device
    sa = moddit.Session(tokens, policy, device=a, num_steps=6, num_layers=1, num_heads=2,
                        head_dim=128)
    sb = moddit.Session(tokens, policy, device=b, num_steps=6, num_layers=1, num_heads=2,
                        head_dim=128)
    q, k, v = _qkv(torch, 1, tokens.total_tokens, 2, 128, torch.bfloat16)
    sa.begin_step(0)
    sa.attention(0, q, k, v)  # a record: the state is made on backend a
    sb.begin_step(1)
    with pytest.raises(moddit.Error, match="another backend"):
        sb.attention(0, q, k, v)
    sa.begin_step(1)
    sa.attention(0, q, k, v)
    torch.cuda.synchronize()
