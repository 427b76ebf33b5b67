"""The generated GPU test matrix (gpu_matrix.py): every case on the CUDA backend
against the fp32 CPU backend, within twice PyTorch's own SDPA error (skipped
without a GPU); and, on the CPU, the generator (every pair of factor values
covered, every edge case present), the references and the tolerance, with the
CPU backend on 16-bit inputs as the implementation under test."""
import itertools

import numpy as np
import pytest

import gpu_matrix as gm
from conftest import has_cuda, needs_torch, reference_attention

CASES = gm.all_cases()
SEED = int(np.random.default_rng().integers(1 << 30))  # fresh inputs every run


@pytest.mark.skipif(not has_cuda(), reason="no CUDA device (or moddit built without CUDA)")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cuda_case_matches_cpu_reference(case):
    import torch

    seed = SEED + CASES.index(case)
    r = gm.run_case(torch, case, "cuda", seed)
    assert not r.failures(), f"{case.name} (seed {seed}): " + "; ".join(r.failures())


# --- the generator -----------------------------------------------------------------

def test_every_pair_of_factor_values_is_covered():
    names = list(gm.FACTORS)
    cases = [c.__dict__ for c in CASES]
    for a, b in itertools.combinations(names, 2):
        for va in gm.FACTORS[a]:
            for vb in gm.FACTORS[b]:
                assert any(c[a] == va and c[b] == vb for c in cases), (a, va, b, vb)
    # Far fewer cases than the full product (2*2*3*3*2*2*4*2*2 = 2304).
    assert len(CASES) < 60


def test_every_edge_case_is_present_and_cases_are_distinct():
    for values in itertools.product(*gm.EDGE_FACTORS.values()):
        want = dict(zip(gm.EDGE_FACTORS, values))
        assert any(all(getattr(c, k) == v for k, v in want.items()) and c.map and c.reuse
                   for c in CASES), want
    for text in ("before", "after"):
        assert any(c.text == text and not c.padded for c in CASES)
    assert len(set(CASES)) == len(CASES)
    assert len({c.name for c in CASES}) == len(CASES)
    assert gm.all_cases() == CASES  # deterministic


def test_covering_design_on_a_small_factor_set():
    factors = {"a": (0, 1, 2), "b": ("x", "y"), "c": (True, False), "d": (1, 2, 3)}
    cases = gm.covering_cases(factors)
    assert len(cases) < 3 * 2 * 2 * 3
    for a, b in itertools.combinations(factors, 2):
        got = {(c[a], c[b]) for c in cases}
        assert got == set(itertools.product(factors[a], factors[b]))


def test_case_shapes_are_what_the_factors_say():
    import moddit

    for c in CASES:
        t = c.tokens()
        grid = moddit.make_block_grid(t, gm.BLOCK)
        lens = np.diff(np.asarray(grid.starts))
        assert (lens == gm.BLOCK).all() == c.aligned, c.name
        assert (t.text_tokens > 0) == (c.text != "none")
        if c.text != "none":
            assert t.text_position == c.text
            assert (t.text_valid < t.text_tokens) == c.padded


# --- the references and the tolerance, on the CPU ------------------------------------

def _cpu_case(**kw):
    base = dict(head_dim=64, dtype="bfloat16", qkv_layout="NHD", text="before", batch=1,
                aligned=False, density=0.3, map=True, reuse=False)
    base.update(kw)
    return gm.Case(**base)


@needs_torch
def test_token_mask_and_reference_agree_with_the_fp64_reference():
    import torch
    import moddit

    for layout in ("NHD", "HND", "fused"):
        case = _cpu_case(qkv_layout=layout, batch=2, text="after")
        tokens = case.tokens()
        grid = moddit.make_block_grid(tokens, gm.BLOCK)
        rng = np.random.default_rng(SEED)
        live = gm.block_mask(case, grid, rng)
        gen = torch.Generator().manual_seed(SEED)
        _, (q, k, v) = gm.make_inputs(torch, case, tokens.total_tokens, "cpu", gen)
        ref64, lse64 = reference_attention(q, k, v, tokens, live, list(grid.starts))
        out, lse = moddit.attention(q, k, v, tokens, layout=gm.to_block_layout(live),
                                    backend=moddit.get_backend("cpu"), return_lse=True)
        assert gm.rel_err(out, ref64) < 1e-5
        assert np.abs(lse - lse64).max() < 1e-4
        # SDPA's mask: the same attention in fp64.
        allowed = gm.token_mask(live, grid, tokens)
        t = [torch.from_numpy(x).double().transpose(1, 2) for x in (q, k, v)]
        sdpa = torch.nn.functional.scaled_dot_product_attention(*t, attn_mask=torch.from_numpy(allowed))
        assert gm.rel_err(sdpa.transpose(1, 2).numpy(), ref64) < 1e-10


@needs_torch
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_tolerance_admits_a_correct_kernel_and_is_near_torchs_error(dtype):
    import torch

    for case in [c for c in CASES if c.dtype == dtype][:4] + [_cpu_case(dtype=dtype)]:
        r = gm.run_case(torch, case, "cpu", SEED, implementation=_implementation(case))
        assert not r.failures(), case.name
        for e, b in zip(r.errors, r.bound):
            assert 0.0 < e < b
            # A 16-bit output cannot do better than its rounding, and SDPA's error
            # is a small multiple of it: the bound stays within a few unit roundoffs.
            eps = 2.0 ** (-8 if dtype == "bfloat16" else -11)
            assert b < 4.0 * eps


def _implementation(case):
    import moddit

    def run(q, k, v, tokens, layout, **kw):
        return moddit.attention(q, k, v, tokens, layout=layout, backend=moddit.get_backend("cpu"),
                                qkv_layout="HND" if case.qkv_layout == "HND" else "NHD", **kw)
    return run


@needs_torch
def test_tolerance_rejects_a_wrong_layout_and_a_wrong_row():
    import torch
    import moddit

    case = _cpu_case(density=0.3, map=False)
    full = gm.to_block_layout(np.ones((1, gm.HEADS, 9, 9), dtype=bool))

    def denser(q, k, v, tokens, layout, **kw):  # every block instead of the case's
        return moddit.attention(q, k, v, tokens, layout=full, backend=moddit.get_backend("cpu"), **kw)

    r = gm.run_case(torch, case, "cpu", SEED, implementation=denser)
    assert r.failures()

    def one_row_off(q, k, v, tokens, layout, **kw):
        out = moddit.attention(q, k, v, tokens, layout=layout, backend=moddit.get_backend("cpu"), **kw)
        out[0, 500] *= 1.5
        return out

    r = gm.run_case(torch, case, "cpu", SEED, implementation=one_row_off)
    assert r.failures()


@needs_torch
def test_map_and_lse_checks_catch_a_wrong_map():
    import torch
    import moddit

    case = _cpu_case(map=True)

    def wrong_map(q, k, v, tokens, layout, **kw):
        out, lse, counts = moddit.attention(q, k, v, tokens, layout=layout,
                                            backend=moddit.get_backend("cpu"), **kw)
        counts[0, 0, 0, 0] = -1 if counts[0, 0, 0, 0] != -1 else 0
        lse[0, 1, 3] += 0.5
        return out, lse, counts

    fails = gm.run_case(torch, case, "cpu", SEED, implementation=wrong_map).failures()
    assert any("lse" in f for f in fails) and any("map blocks" in f for f in fails)
