"""The generated attention test matrix (as ggml's test-backend-ops generates its
cases): the factors below, combined by a covering design in which every pair of
factor values appears in some case, plus the full product of the edge factors.
Each case runs moddit on a device against the fp32 CPU backend on the same
(upcast) inputs, with a tolerance of twice PyTorch's own SDPA error in the same
dtype on the same inputs (floored at twice the dtype's rounding of the exact
output, which no kernel can beat).

Everything here runs on the CPU too, with the CPU backend as the implementation
under test (tests/python/test_gpu_matrix.py checks the generator, the references
and the tolerance that way); on a GPU the implementation is the CUDA backend."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

import moddit

# Factor -> its values. density: 0.0 = the diagonal blocks only, 0.3 = random
# blocks plus the diagonal, 1.0 = a layout with every block, None = a dense call
# (no layout). qkv_layout "fused": q, k, v are strided views of one [B, N, 3, H, D]
# tensor (a fused QKV projection). reuse: the same layout object is run twice on
# fresh inputs (the second call finds the backend's cached copy).
FACTORS = {
    "head_dim": (64, 128),
    "dtype": ("bfloat16", "float16"),
    "qkv_layout": ("NHD", "HND", "fused"),
    "text": ("before", "after", "none"),
    "batch": (1, 2),
    "aligned": (True, False),
    "density": (0.0, 0.3, 1.0, None),
    "map": (False, True),
    "reuse": (False, True),
}
# The factors whose extremes meet the block grid's boundaries (the first and last
# block, partial blocks, the text block and its padding, rows with one block or
# all of them): their full product is run on top of the covering design.
EDGE_FACTORS = {"text": FACTORS["text"], "aligned": FACTORS["aligned"], "density": (0.0, 1.0)}
HEADS = 2
BLOCK = 128


@dataclass(frozen=True)
class Case:
    head_dim: int
    dtype: str
    qkv_layout: str
    text: str
    batch: int
    aligned: bool
    density: object
    map: bool
    reuse: bool
    padded: bool = True  # text_valid < text_tokens (text only)

    @property
    def name(self) -> str:
        d = "dense" if self.density is None else f"d{self.density:g}"
        pad = "" if self.padded or self.text == "none" else "-nopad"
        return (f"D{self.head_dim}-{self.dtype}-{self.qkv_layout}-text_{self.text}{pad}-B{self.batch}-"
                f"{'aligned' if self.aligned else 'unaligned'}-{d}-map{int(self.map)}-reuse{int(self.reuse)}")

    def tokens(self) -> moddit.TokenLayout:
        """aligned: every block full (128 text tokens, 2x16x16 video); unaligned: a
        partial text block and a partial last video block (77 text, 3x15x21)."""
        text_tokens = 0 if self.text == "none" else (128 if self.aligned else 77)
        text_valid = text_tokens if not self.padded else (100 if self.aligned else 60)
        f, h, w = (2, 16, 16) if self.aligned else (3, 15, 21)
        return moddit.TokenLayout(frames=f, height=h, width=w, text_tokens=text_tokens,
                                  text_valid=text_valid if text_tokens else -1,
                                  text_position=self.text)


def pairs_of(case: dict, names) -> set:
    return {((a, case[a]), (b, case[b])) for a, b in itertools.combinations(names, 2)}


def covering_cases(factors: dict) -> list:
    """A deterministic greedy pairwise covering design (AETG-style): each new case
    starts from the first pair not yet covered and gives every other factor the
    value that covers the most new pairs (the first such value on a tie)."""
    names = list(factors)
    uncovered = set()
    for a, b in itertools.combinations(names, 2):
        for va in factors[a]:
            for vb in factors[b]:
                uncovered.add(((a, va), (b, vb)))
    order = {name: i for i, name in enumerate(names)}
    cases = []
    while uncovered:
        # The first uncovered pair in a fixed order (factor order, then value order).
        (a, va), (b, vb) = min(uncovered, key=lambda p: (order[p[0][0]], order[p[1][0]],
                                                       factors[p[0][0]].index(p[0][1]),
                                                       factors[p[1][0]].index(p[1][1])))
        case = {a: va, b: vb}
        for name in names:
            if name in case:
                continue
            def gain(value):
                trial = dict(case, **{name: value})
                return sum(((x, trial[x]), (y, trial[y])) in uncovered or
                           ((y, trial[y]), (x, trial[x])) in uncovered
                           for x, y in itertools.combinations(sorted(trial, key=order.get), 2)
                           if name in (x, y))
            case[name] = max(factors[name], key=gain)  # max keeps the first on a tie
        cases.append(case)
        uncovered -= pairs_of(case, names)
    return cases


def edge_cases(factors: dict, edges: dict) -> list:
    """The full product of the edge factors, each with the other factors' values
    taken in turn (so that the edges meet both dtypes, head dims and layouts), with
    the map and layout reuse on; then text without padding, before and after."""
    names = list(factors)
    others = [n for n in names if n not in edges and n not in ("map", "reuse")]
    cases = []
    for i, values in enumerate(itertools.product(*edges.values())):
        case = dict(zip(edges, values))
        for j, n in enumerate(others):
            case[n] = factors[n][(i + j) % len(factors[n])]
        case.update(map=True, reuse=True)
        cases.append(case)
    for i, text in enumerate(("before", "after")):
        case = {n: factors[n][(i + j) % len(factors[n])] for j, n in enumerate(names)}
        case.update(text=text, padded=False, density=0.3, map=True)
        cases.append(case)
    return cases


def all_cases() -> list:
    """The matrix: the covering design, then the edge cases not already in it."""
    seen, out = set(), []
    for c in covering_cases(FACTORS) + edge_cases(FACTORS, EDGE_FACTORS):
        case = Case(**c)
        if case not in seen:
            seen.add(case)
            out.append(case)
    return out


# --- inputs, layouts, references -----------------------------------------------------

def block_mask(case: Case, grid, rng) -> np.ndarray:
    """[B, H, nb, nb] bool: the case's density, the diagonal always live."""
    nb = grid.num_blocks
    shape = (case.batch, HEADS, nb, nb)
    if case.density is None or case.density == 1.0:
        live = np.ones(shape, dtype=bool)
    else:
        live = rng.random(shape) < case.density
    live[..., np.arange(nb), np.arange(nb)] = True
    return live


def to_block_layout(live: np.ndarray) -> moddit.BlockLayout:
    B, H, nb, _ = live.shape
    row_ptr = np.zeros(B * H * nb + 1, dtype=np.int32)
    row_ptr[1:] = np.cumsum(live.sum(-1).reshape(-1))
    col_idx = np.ascontiguousarray(np.nonzero(live.reshape(-1, nb))[1].astype(np.int32))
    return moddit.BlockLayout(B, H, nb, nb, row_ptr, col_idx)


def make_inputs(torch, case: Case, N: int, device: str, gen):
    """q, k, v in the case's dtype and layout on `device`; also as fp32 [B, N, H, D]."""
    dtype = getattr(torch, case.dtype)
    B, H, D = case.batch, HEADS, case.head_dim
    if case.qkv_layout == "fused":
        qkv = torch.randn(B, N, 3, H, D, generator=gen).to(device=device, dtype=dtype)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        nhd = (q, k, v)
    elif case.qkv_layout == "HND":
        q, k, v = (torch.randn(B, H, N, D, generator=gen).to(device=device, dtype=dtype)
                   for _ in range(3))
        nhd = tuple(x.transpose(1, 2) for x in (q, k, v))
    else:
        q, k, v = (torch.randn(B, N, H, D, generator=gen).to(device=device, dtype=dtype)
                   for _ in range(3))
        nhd = (q, k, v)
    f32 = tuple(np.ascontiguousarray(x.float().cpu().numpy()) for x in nhd)
    return (q, k, v), f32


def token_mask(live: np.ndarray, grid, tokens) -> np.ndarray:
    """[B, H, N, N] bool: the key tokens each query may attend (its live blocks,
    padded text keys excluded), as SDPA's attn_mask."""
    starts = np.asarray(grid.starts)
    block_of = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    allowed = live[:, :, block_of][:, :, :, block_of]
    if tokens.pad_end > tokens.pad_begin:
        allowed[..., tokens.pad_begin:tokens.pad_end] = False
    return allowed


def rel_err(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def tolerance(torch, q32, k32, v32, allowed, ref, dtype_name: str, device: str) -> float:
    """Twice PyTorch's SDPA error in `dtype_name` against the fp32 reference on the
    same inputs, floored at twice the error of the reference rounded to that
    dtype (the floor binds only when SDPA's own error is the rounding alone)."""
    dtype = getattr(torch, dtype_name)
    q, k, v = (torch.from_numpy(x).to(device=device, dtype=dtype).transpose(1, 2) for x in (q32, k32, v32))
    mask = torch.from_numpy(allowed).to(device)
    with torch.no_grad():
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch_err = rel_err(out.transpose(1, 2).float().cpu().numpy(), ref)
    rounding = rel_err(torch.from_numpy(ref).to(dtype).float().numpy(), ref)
    return 2.0 * max(torch_err, rounding)


@dataclass
class Result:
    errors: list      # relative L2 error of each call's output
    bound: list       # the tolerance of each call
    lse_error: list   # max |lse - ref| / max(1, max |ref|), map cases
    map_written_differs: list  # blocks written (!= -1) by one backend only
    map_count_error: list      # max |count - ref| over blocks both wrote
    map_count_bound: list

    def failures(self) -> list:
        out = []
        for i, (e, b) in enumerate(zip(self.errors, self.bound)):
            if not e <= b:
                out.append(f"call {i}: out rel_l2 {e:.3g} > {b:.3g}")
        for i, e in enumerate(self.lse_error):
            if not e <= LSE_TOL:
                out.append(f"call {i}: lse error {e:.3g} > {LSE_TOL:.3g}")
        for i, w in enumerate(self.map_written_differs):
            if w:
                out.append(f"call {i}: {w} map blocks written by one backend only")
        for i, (e, b) in enumerate(zip(self.map_count_error, self.map_count_bound)):
            if not e <= b:
                out.append(f"call {i}: map counts differ by {e} > {b}")
        return out


# The LSE is fp32 on both sides from the same inputs: only summation order and
# the exp2 approximation differ, far below this (relative to max(1, |lse|)).
LSE_TOL = 1e-3


def run_case(torch, case: Case, device: str, seed: int, implementation=None) -> Result:
    """Runs `case` on `device` (moddit's backend for that device, or
    `implementation`(q, k, v, tokens, layout, return_lse, return_map) when given)
    against the fp32 CPU backend. One call, or two on fresh inputs with the same
    layout object when case.reuse."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    tokens = case.tokens()
    grid = moddit.make_block_grid(tokens, BLOCK)
    N = tokens.total_tokens
    live = block_mask(case, grid, rng)
    layout = None if case.density is None else to_block_layout(live)
    allowed = token_mask(live, grid, tokens)
    cpu = moddit.get_backend("cpu")
    res = Result([], [], [], [], [], [])
    for _ in range(2 if case.reuse else 1):
        (q, k, v), (q32, k32, v32) = make_inputs(torch, case, N, device, gen)
        kw = dict(return_lse=case.map, return_map=case.map)
        if implementation is None:
            got = moddit.attention(q, k, v, tokens, layout=layout, qkv_layout="HND" if case.qkv_layout == "HND"
                                   else "NHD", **kw)
        else:
            got = implementation(q, k, v, tokens, layout, **kw)
        if device != "cpu":
            torch.cuda.synchronize()
        got = got if case.map else (got,)
        out = got[0].transpose(1, 2) if case.qkv_layout == "HND" else got[0]
        ref = moddit.attention(q32, k32, v32, tokens, layout=layout, backend=cpu, **kw)
        ref = ref if case.map else (ref,)
        res.errors.append(rel_err(out.float().cpu().numpy(), ref[0]))
        res.bound.append(tolerance(torch, q32, k32, v32, allowed, ref[0], case.dtype, device))
        if case.map:
            lse, want_lse = got[1].cpu().numpy(), ref[1]
            res.lse_error.append(float(np.abs(lse - want_lse).max() / max(1.0, np.abs(want_lse).max())))
            counts, want = got[2].cpu().numpy(), ref[2]
            res.map_written_differs.append(int(((counts == -1) != (want == -1)).sum()))
            both = (counts != -1) & (want != -1)
            res.map_count_error.append(int(np.abs(counts - want)[both].max(initial=0)))
            # A few pairs whose score sits at eta may round across it.
            res.map_count_bound.append(max(4, int(0.01 * want.max())))
    return res
