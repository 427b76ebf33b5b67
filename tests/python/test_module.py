"""The Python module against the fp64 NumPy reference, on the CPU backend, with
NumPy arrays (and PyTorch CPU tensors where installed). Fresh random inputs,
scale-free tolerances, the edge cases of DESIGN.md (partial last block, N not a
multiple of the block size, text before/after with padding, batch 2, density
0 + diagonal and density 1)."""
import json

import numpy as np
import pytest

import moddit
from conftest import needs_torch, reference_attention, rel_err

TOL = 2e-5  # fp32 kernels against fp64


def rand_qkv(rng, B, N, H, D, scale=1.0):
    return tuple((rng.standard_normal((B, N, H, D)) * scale).astype(np.float32) for _ in range(3))


LAYOUTS = [
    dict(frames=3, height=5, width=7),                                         # N=105, no text
    dict(frames=2, height=9, width=11, text_tokens=37, text_valid=29, text_position="before"),
    dict(frames=3, height=6, width=6, text_tokens=20, text_valid=13, text_position="after"),
]


@pytest.mark.parametrize("spec", LAYOUTS)
@pytest.mark.parametrize("block_size", [64, 128])
def test_dense_matches_reference(spec, block_size):
    rng = np.random.default_rng()
    tokens = moddit.TokenLayout(**spec)
    q, k, v = rand_qkv(rng, 2, tokens.total_tokens, 3, 64, scale=float(rng.uniform(0.5, 2)))
    out, lse = moddit.attention(q, k, v, tokens, block_size=block_size, return_lse=True)
    ref, ref_lse = reference_attention(q, k, v, tokens)
    assert out.shape == q.shape and out.dtype == np.float32
    assert rel_err(out, ref) < TOL
    assert np.abs(lse - ref_lse).max() < 1e-4 * max(1.0, np.abs(ref_lse).max())


def test_hnd_layout_and_strided_views_without_copies():
    rng = np.random.default_rng()
    tokens = moddit.TokenLayout(frames=2, height=8, width=10)
    N = tokens.total_tokens
    # [B, H, N, D] views cut out of a bigger buffer: non-contiguous, unit D stride.
    big = rng.standard_normal((3, 2, 5, N, 64)).astype(np.float32)
    q, k, v = big[0, :, 1:4], big[1, :, 0:3], big[2, :, 2:5]
    assert not q.flags.c_contiguous
    out = np.full((2, 3, N, 64), np.nan, dtype=np.float32)
    ret = moddit.attention(q, k, v, tokens, out=out, qkv_layout="HND")
    assert ret is out  # written in place
    ref, _ = reference_attention(q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3),
                                 v.transpose(0, 2, 1, 3), tokens)
    assert rel_err(out.transpose(0, 2, 1, 3), ref) < TOL


def random_block_mask(rng, grid, B, H, density):
    nb = grid.num_blocks
    mask = moddit.BlockMask(B, H, nb, nb)
    bits = mask.bits
    bits[...] = rng.random((B, H, nb, nb)) < density
    for i in range(nb):
        bits[:, :, i, i] = 1  # every row keeps its diagonal block
    return mask


@pytest.mark.parametrize("density", [0.0, 0.4, 1.0])
def test_block_sparse_matches_masked_reference(density):
    rng = np.random.default_rng()
    tokens = moddit.TokenLayout(frames=3, height=7, width=9, text_tokens=40, text_valid=33,
                                text_position="before")
    grid = moddit.make_block_grid(tokens, 64)
    B, H = 2, 3
    q, k, v = rand_qkv(rng, B, tokens.total_tokens, H, 64)
    mask = random_block_mask(rng, grid, B, H, density)
    layout = moddit.to_layout(mask)
    assert layout.live_blocks == int(mask.bits.sum())
    out, lse = moddit.sparse_attention(q, k, v, layout, tokens, block_size=64, return_lse=True)
    ref, ref_lse = reference_attention(q, k, v, tokens, mask.bits, grid.starts)
    assert rel_err(out, ref) < TOL
    assert np.abs(lse - ref_lse).max() < 1e-4 * max(1.0, np.abs(ref_lse).max())
    back = moddit.to_mask(layout)
    assert np.array_equal(back.bits, mask.bits)


def test_head_subset_touches_only_its_heads():
    rng = np.random.default_rng()
    tokens = moddit.TokenLayout(frames=2, height=8, width=8)
    q, k, v = rand_qkv(rng, 1, tokens.total_tokens, 4, 64)
    out = np.full(q.shape, 7.0, dtype=np.float32)
    moddit.attention(q, k, v, tokens, heads=[1, 3], out=out)
    ref, _ = reference_attention(q, k, v, tokens)
    assert rel_err(out[:, :, [1, 3]], ref[:, :, [1, 3]]) < TOL
    assert np.all(out[:, :, [0, 2]] == 7.0)


def test_sparsity_map_counts_match_reference():
    rng = np.random.default_rng()
    tokens = moddit.TokenLayout(frames=2, height=10, width=10, text_tokens=30, text_valid=21,
                                text_position="after")
    eta = 1e-3
    grid = moddit.make_block_grid(tokens, 64)
    q, k, v = rand_qkv(rng, 1, tokens.total_tokens, 2, 64, scale=2.0)
    out, counts = moddit.attention(q, k, v, tokens, block_size=64, return_map=True, eta=eta)
    n = grid.num_video_blocks
    assert counts.shape == (1, 2, n, n) and counts.dtype == np.int32
    # Reference: P over the real keys; pairs with P < eta per video block pair.
    qd, kd = q.astype(np.float64), k.astype(np.float64)
    s = np.einsum("bnhd,bmhd->bhnm", qd, kd) / 8.0
    s[..., tokens.pad_begin:tokens.pad_end] = -np.inf
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    vb = tokens.video_begin
    mismatch = 0
    for i in range(n):
        r0, r1 = vb + grid.video_block_begin(i), vb + grid.video_block_end(i)
        for j in range(n):
            c0, c1 = vb + grid.video_block_begin(j), vb + grid.video_block_end(j)
            ref = (p[0, :, r0:r1, c0:c1] < eta).sum(axis=(1, 2))
            # fp32 vs fp64 can flip pairs sitting exactly at the threshold.
            mismatch += int(np.abs(counts[0, :, i, j] - ref).max() > max(2, 0.002 * ref.max()))
    assert mismatch == 0


def test_mass_map_matches_reference():
    rng = np.random.default_rng()
    tokens = moddit.TokenLayout(frames=2, height=10, width=10, text_tokens=30, text_valid=21,
                                text_position="before")
    grid = moddit.make_block_grid(tokens, 64)
    q, k, v = rand_qkv(rng, 2, tokens.total_tokens, 2, 64, scale=2.0)
    _, counts = moddit.attention(q, k, v, tokens, block_size=64, return_map=True,
                                 map_statistic="mass")
    n = grid.num_video_blocks
    assert counts.shape == (2, 2, n, n) and counts.dtype == np.int32
    # Reference: len_i len_j - len_j * (the block's summed P), P over the real keys.
    qd, kd = q.astype(np.float64), k.astype(np.float64)
    s = np.einsum("bnhd,bmhd->bhnm", qd, kd) / 8.0
    s[..., tokens.pad_begin:tokens.pad_end] = -np.inf
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    vb = tokens.video_begin
    for i in range(n):
        r0, r1 = vb + grid.video_block_begin(i), vb + grid.video_block_end(i)
        for j in range(n):
            c0, c1 = vb + grid.video_block_begin(j), vb + grid.video_block_end(j)
            mass = p[:, :, r0:r1, c0:c1].sum(axis=(2, 3))
            ref = (r1 - r0) * (c1 - c0) - (c1 - c0) * mass
            # fp32 against fp64: relative to the block's mass, plus the rounding.
            tol = 1 + (c1 - c0) * mass * 1e-4
            assert np.all(np.abs(counts[:, :, i, j] - ref) <= tol), (i, j)
    with pytest.raises(moddit.Error, match="map_statistic"):
        moddit.attention(q, k, v, tokens, block_size=64, return_map=True, map_statistic="max")


def test_map_statistic_in_config_and_plan():
    c = moddit.moddit_config(map_statistic="mass")
    assert c.map_statistic == "mass"
    assert json.loads(c.to_json())["map_statistic"] == "mass"
    assert moddit.ModditConfig().map_statistic == "eq2"  # the paper's Eq. 2 by default
    with pytest.raises(moddit.Error, match="map_statistic"):
        moddit.moddit_config(map_statistic="max")
    plan = moddit.Plan()
    assert plan.map_statistic == "eq2"
    plan.map_statistic = "mass"
    assert plan.map_statistic == "mass"
    with pytest.raises(moddit.Error, match="map_statistic"):
        plan.map_statistic = "max"


def test_float16_and_torch_bfloat16_inputs():
    rng = np.random.default_rng()
    tokens = moddit.TokenLayout(frames=2, height=8, width=8)
    q, k, v = rand_qkv(rng, 1, tokens.total_tokens, 2, 64)
    out16 = moddit.attention(q.astype(np.float16), k.astype(np.float16), v.astype(np.float16),
                             tokens)
    assert out16.dtype == np.float16
    r16 = [x.astype(np.float16).astype(np.float32) for x in (q, k, v)]
    ref, _ = reference_attention(*r16, tokens)
    assert rel_err(out16.astype(np.float32), ref) < 2e-3  # output rounding only


@needs_torch
def test_torch_cpu_tensors_bf16_and_grad():
    import torch

    tokens = moddit.TokenLayout(frames=2, height=8, width=8)
    q, k, v = (torch.randn(1, tokens.total_tokens, 2, 64) for _ in range(3))
    q.requires_grad_(True)  # detached internally (a view), never copied
    out = moddit.attention(q, k, v, tokens)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    ref, _ = reference_attention(q.detach().numpy(), k.numpy(), v.numpy(), tokens)
    assert rel_err(out.numpy(), ref) < TOL
    qb, kb, vb = q.detach().bfloat16(), k.bfloat16(), v.bfloat16()
    outb = moddit.attention(qb, kb, vb, tokens)
    assert outb.dtype == torch.bfloat16
    refb, _ = reference_attention(qb.float().numpy(), kb.float().numpy(), vb.float().numpy(), tokens)
    assert rel_err(outb.float().numpy(), refb) < 1e-2  # output rounding only


def test_errors_carry_the_cpp_message():
    rng = np.random.default_rng()
    tokens = moddit.TokenLayout(frames=2, height=4, width=4)
    q, k, v = rand_qkv(rng, 1, tokens.total_tokens, 2, 64)
    with pytest.raises(moddit.Error, match="dtype float64"):
        moddit.attention(q.astype(np.float64), k, v, tokens)
    with pytest.raises(moddit.Error, match="4-D"):
        moddit.attention(q[0], k[0], v[0], tokens)
    with pytest.raises(moddit.Error, match="sequence length"):
        moddit.attention(q[:, :-1], k[:, :-1], v[:, :-1], tokens)
    with pytest.raises(moddit.Error, match="stride"):
        moddit.attention(q[..., ::2], k[..., ::2], v[..., ::2], tokens)
    with pytest.raises(moddit.Error, match="k: shape"):
        moddit.attention(q, k[:, :, :1], v, tokens)
    with pytest.raises(ValueError):  # moddit.Error is a ValueError
        moddit.TokenLayout(frames=2, height=4, width=4, text_tokens=3, text_valid=5,
                           text_position="after")
    with pytest.raises(moddit.Error, match="qkv_layout"):
        moddit.attention(q, k, v, tokens, qkv_layout="NDH")


def test_config_json_round_trip_and_unknown_key():
    cfg = moddit.moddit_config(target_density=0.2, warmup_steps=5, dense_layers=[0])
    assert cfg.target_density == 0.2 and cfg.warmup_steps == 5 and list(cfg.dense_layers) == [0]
    again = moddit.ModditConfig.from_json(cfg.to_json())
    assert json.loads(again.to_json()) == json.loads(cfg.to_json())
    with pytest.raises(moddit.Error, match="no_such_key"):
        moddit.moddit_config(no_such_key=1)
    with pytest.raises(moddit.Error, match="target_density"):
        moddit.moddit_config(target_density=-1.0)


def test_session_dense_policy_equals_dense_attention():
    rng = np.random.default_rng()
    tokens = moddit.TokenLayout(frames=3, height=6, width=6, text_tokens=10, text_valid=7,
                                text_position="before")
    s = moddit.Session(tokens, "dense", num_steps=3, num_layers=2, num_heads=2, head_dim=64,
                       block_size=64)
    for step in range(3):
        s.begin_step(step)
        for layer in range(2):
            q, k, v = rand_qkv(rng, 2, tokens.total_tokens, 2, 64)
            out = s.attention(layer, q, k, v)
            ref, _ = reference_attention(q, k, v, tokens)
            assert rel_err(out, ref) < TOL
    assert len(s.history) == 6
    assert all(r.density == 1.0 and r.kind == moddit.CallKind.DENSE for r in s.history)


def test_session_moddit_schedule_on_synthetic_trajectory():
    spec = moddit.SyntheticSpec()
    spec.frames, spec.height, spec.width = 4, 16, 16
    spec.num_steps, spec.layers, spec.heads, spec.head_dim = 12, 1, 4, 64
    src = moddit.make_synthetic(spec)
    info = src.info
    s = moddit.Session(info.tokens, "moddit", num_steps=12, num_layers=1, num_heads=4,
                       head_dim=64, block_size=64, warmup_steps=4, interval=4,
                       target_density=0.3)
    for step in range(12):
        s.begin_step(step)
        q, k, v = src.load(step, 0)
        out = s.attention(0, q, k, v)
        ref, _ = reference_attention(q, k, v, info.tokens)
        err = rel_err(out, ref)
        if step < 4:
            assert err < TOL  # warm-up is dense
        else:
            assert err < 1.0
    # The last (sparse) step ran exactly the policy's latest masks.
    grid = moddit.make_block_grid(info.tokens, 64)
    n = grid.num_video_blocks
    mask = moddit.BlockMask(1, 4, grid.num_blocks, grid.num_blocks)
    for h in range(4):
        vm = s.policy.video_mask(0, 0, h).reshape(n, n)
        moddit.place_video_mask(vm, grid, mask, 0, h)
    ref, _ = reference_attention(q, k, v, info.tokens, mask.bits, grid.starts)
    assert rel_err(out, ref) < TOL
    kinds = [r.kind for r in s.history]
    assert kinds[:2] == [moddit.CallKind.DENSE] * 2
    assert kinds[2:4] == [moddit.CallKind.RECORD] * 2
    sparse = [r.density for r in s.history if r.kind == moddit.CallKind.SPARSE]
    assert sparse and all(0.0 < d < 0.6 for d in sparse)


def test_python_policy_subclass():
    class Diagonal(moddit.PythonPolicy):
        def __init__(self):
            super().__init__()
            self.observed = 0

        def name(self):
            return "diagonal-only"

        def plan(self, call):
            grid = call.grid
            mask = moddit.BlockMask(call.batch, call.num_heads, grid.num_blocks, grid.num_blocks)
            n = grid.num_video_blocks
            for b in range(call.batch):
                for h in range(call.num_heads):
                    moddit.place_video_mask(np.eye(n, dtype=np.uint8), grid, mask, b, h)
            plan = moddit.Plan()
            plan.kind = moddit.CallKind.SPARSE
            plan.groups = [moddit.HeadGroup(list(range(call.num_heads)), moddit.to_layout(mask),
                                            "diag")]
            plan.record_map = True
            return plan

        def observe(self, call, plan, map_counts):
            assert map_counts is not None and map_counts.ndim == 4
            self.observed += 1

    rng = np.random.default_rng()
    tokens = moddit.TokenLayout(frames=2, height=8, width=16)
    pol = Diagonal()
    s = moddit.Session(tokens, pol, num_steps=1, num_layers=1, num_heads=2, head_dim=64,
                       block_size=64)
    s.begin_step(0)
    q, k, v = rand_qkv(rng, 1, tokens.total_tokens, 2, 64)
    out = s.attention(0, q, k, v)
    grid = moddit.make_block_grid(tokens, 64)
    eye = np.zeros((1, 2, grid.num_blocks, grid.num_blocks), np.uint8)
    eye[:, :, range(grid.num_blocks), range(grid.num_blocks)] = 1
    ref, _ = reference_attention(q, k, v, tokens, eye, grid.starts)
    assert rel_err(out, ref) < TOL
    assert pol.observed == 1
    assert s.history[0].density < 0.5


def test_synthetic_trajectory_write_and_open(tmp_path):
    spec = moddit.SyntheticSpec()
    spec.frames, spec.height, spec.width = 2, 8, 8
    spec.num_steps, spec.layers, spec.heads, spec.head_dim = 3, 2, 2, 64
    src = moddit.make_synthetic(spec)
    path = str(tmp_path / "synthetic.safetensors")
    moddit.write_trajectory(src, path, "f32")
    back = moddit.open_trajectory(path)
    assert back.info.steps == src.info.steps and back.info.layers == [0, 1]
    for step in back.info.steps:
        a = src.load(step, 1)
        b = back.load(step, 1)
        for x, y in zip(a, b):
            assert np.array_equal(x, y)
    with pytest.raises(moddit.Error, match="nothing.safetensors"):
        moddit.open_trajectory(str(tmp_path / "nothing.safetensors"))


def test_any_dlpack_producer():
    """An object that only speaks DLPack (like a JAX array) is read without a copy;
    its output comes back as NumPy."""

    class Foreign:
        def __init__(self, a):
            self._a = a
            self.shape = a.shape
            self.dtype = a.dtype

        def __dlpack__(self, **kw):
            return self._a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self._a.__dlpack_device__()

    rng = np.random.default_rng()
    tokens = moddit.TokenLayout(frames=2, height=6, width=6)
    q, k, v = rand_qkv(rng, 1, tokens.total_tokens, 2, 64)
    out = moddit.attention(Foreign(q), Foreign(k), Foreign(v), tokens)
    assert isinstance(out, np.ndarray)
    ref, _ = reference_attention(q, k, v, tokens)
    assert rel_err(out, ref) < TOL


def test_python_policy_errors_propagate():
    class Raising(moddit.PythonPolicy):
        def name(self):
            return "raising"

        def plan(self, call):
            raise KeyError("no plan for layer %d" % call.layer)

    class WrongType(moddit.PythonPolicy):
        def name(self):
            return "wrong-type"

        def plan(self, call):
            return 42

    tokens = moddit.TokenLayout(frames=2, height=4, width=8)
    q = np.random.default_rng().standard_normal((1, 64, 2, 64)).astype(np.float32)
    for policy, exc, text in ((Raising(), KeyError, "layer 3"),
                              (WrongType(), moddit.Error, "must return a moddit.Plan")):
        s = moddit.Session(tokens, policy, num_steps=1, num_layers=4, num_heads=2, head_dim=64,
                           block_size=64)
        s.begin_step(0)
        with pytest.raises(exc, match=text):
            s.attention(3, q, q, q)


def test_layout_from_video_masks_equals_the_block_mask_path():
    """The one layout builder, bound: the same layout as placing each (b, h) video
    mask into a BlockMask and converting, on a grid with text and a partial block."""
    tokens = moddit.TokenLayout(frames=5, height=9, width=10, text_tokens=77, text_valid=50,
                                text_position="after")
    grid = moddit.make_block_grid(tokens, 64)
    n = grid.num_video_blocks
    rng = np.random.default_rng(3)
    masks = (rng.random((2, 3, n, n)) < 0.3).astype(np.uint8)
    got = moddit.layout_from_video_masks(masks, grid)
    ref = moddit.BlockMask(2, 3, grid.num_blocks, grid.num_blocks)
    for b in range(2):
        for h in range(3):
            moddit.place_video_mask(masks[b, h], grid, ref, b, h)
    assert np.array_equal(moddit.to_mask(got).bits, ref.bits)
    assert 0.3 < moddit.video_density(got, grid) < 0.6
    with pytest.raises(moddit.Error, match="video blocks"):
        moddit.layout_from_video_masks(masks[:, :, :-1, :-1].copy(), grid)
