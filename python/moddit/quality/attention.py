"""Dense attention statistics of one call, in torch on the call's device: the
block mass of the dense attention, the oracle's masks and recall curves, and the
shadow metrics (recall, rel_l2) of a mask against dense attention.

Tensors are the processors' [B, N, H, D] (qkv layout NHD), video tokens only
(moddit-tiny has no text in its self-attention), N a multiple of the block size.

- Block mass [B, H, n, n]: mass[b, h, i, j] = sum over the query rows r of
  block i and the keys t of block j of the dense softmax P[r, t]. Computed as a
  dense attention whose values are the block indicators of the keys
  (V[t, j] = 1 if key t lies in block j), so it costs one fused SDPA call per
  D key blocks and never materialises P: out[r, j] is row r's mass on block j.
  Each query block row sums to its token count.
- Recall of a mask: the dense mass it keeps over the mass of all rows (1 for a
  full mask), per head, pooled over the batch items (as `moddit eval`).
- rel_l2: ||O_sparse - O_dense|| / ||O_dense|| per head, pooled over the items.
- Oracles, both with round(d n^2) blocks per head and the diagonal always
  kept. "global" (the quality policy; moddit eval's oracle_video_mask, for
  equal blocks): the blocks of most mass over the whole grid, which keeps the
  most mass of any mask with as many blocks: the upper bound of recall. "row":
  per query block row the blocks of most mass, K = round(d n) per row on
  average (the extra blocks go to the rows whose next block holds the most
  mass): the bound for methods that give every row the same budget.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

_INDICATORS: Dict[Tuple, torch.Tensor] = {}


def check_call(q: torch.Tensor, block: int) -> Tuple[int, int, int, int, int]:
    if q.dim() != 4:
        raise ValueError(f"moddit.quality: q must be [B, N, H, D], got {tuple(q.shape)}")
    B, N, H, D = (int(s) for s in q.shape)
    if N % block:
        raise ValueError(f"moddit.quality: {N} tokens are not a multiple of the block size "
                         f"{block} (the quality statistics assume equal blocks)")
    return B, N, H, D, N // block


def _indicator(B: int, N: int, H: int, D: int, block: int, c0: int, dtype, device) -> torch.Tensor:
    """[B, H, N, D] values: column c is 1 on the keys of block c0 + c (cached)."""
    key = (B, N, H, D, block, c0, dtype, str(device))
    e = _INDICATORS.get(key)
    if e is None:
        n = N // block
        blocks = torch.arange(N, device=device) // block - c0
        cols = torch.arange(D, device=device)
        one = (blocks[:, None] == cols[None, :]) & (blocks[:, None] < n - c0)
        e = one.to(dtype)[None, None].expand(B, H, N, D).contiguous()
        if len(_INDICATORS) > 8:
            _INDICATORS.clear()
        _INDICATORS[key] = e
    return e


def sdpa_nhd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Dense attention of [B, N, H, D] tensors, [B, N, H, D] out (SDPA)."""
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                          v.transpose(1, 2)).transpose(1, 2)


@torch.no_grad()
def block_mass(q: torch.Tensor, k: torch.Tensor, block: int) -> torch.Tensor:
    """[B, H, n, n] float32 dense block mass (module doc)."""
    B, N, H, D, n = check_call(q, block)
    qh, kh = q.transpose(1, 2), k.transpose(1, 2)
    out = torch.empty(B, H, n, n, dtype=torch.float32, device=q.device)
    for c0 in range(0, n, D):
        c1 = min(n, c0 + D)
        o = F.scaled_dot_product_attention(qh, kh, _indicator(B, N, H, D, block, c0, q.dtype,
                                                              q.device))
        out[..., c0:c1] = o[..., :c1 - c0].float().reshape(B, H, n, block, c1 - c0).sum(3)
    return out


def _total_blocks(n: int, density: float) -> int:
    return min(n * n, max(n, int(round(density * n * n))))


def _row_order(mass: torch.Tensor):
    """Per row: the order of the key blocks (diagonal first, then by mass) and
    the masses in that order."""
    n = mass.shape[-1]
    key = mass.clone()
    idx = torch.arange(n, device=mass.device)
    key[..., idx, idx] = float("inf")
    order = key.argsort(dim=-1, descending=True)
    return order, mass.gather(-1, order)


def row_oracle_masks(mass: torch.Tensor, density: float) -> torch.Tensor:
    """[..., n, n] bool: the row oracle at `density` (module doc)."""
    n = mass.shape[-1]
    k_lo, extra = divmod(_total_blocks(n, density), n)
    order, sorted_mass = _row_order(mass)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(n, device=mass.device).expand_as(order).contiguous())
    mask = rank < k_lo
    if extra:
        rows = sorted_mass[..., k_lo].topk(extra, dim=-1).indices
        add = torch.zeros(mask.shape[:-1], dtype=torch.bool, device=mass.device)
        add.scatter_(-1, rows, True)
        mask |= add[..., None] & (rank == k_lo)
    return mask


def global_oracle_masks(mass: torch.Tensor, density: float) -> torch.Tensor:
    """[..., n, n] bool: moddit eval's oracle (equal blocks) at `density`: the
    diagonal, then the round(density n^2) - n blocks of most mass over the grid."""
    n = mass.shape[-1]
    key = mass.clone()
    idx = torch.arange(n, device=mass.device)
    key[..., idx, idx] = float("inf")
    flat = key.flatten(-2)
    top = flat.topk(_total_blocks(n, density), dim=-1).indices
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask.scatter_(-1, top, True)
    return mask.view(mass.shape)


def row_oracle_recall(mass: torch.Tensor, densities: Sequence[float],
                      sorted_mass: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[len(densities), ...]: the row oracle's kept mass over all mass, per
    leading index (e.g. [B, H])."""
    n = mass.shape[-1]
    if sorted_mass is None:
        sorted_mass = _row_order(mass)[1]
    cum = sorted_mass.cumsum(-1)
    rows_total = mass.sum((-1, -2))
    out = []
    for d in densities:
        k_lo, extra = divmod(_total_blocks(n, d), n)
        kept = cum[..., k_lo - 1].sum(-1)
        if extra:
            kept = kept + sorted_mass[..., k_lo].topk(extra, dim=-1).values.sum(-1)
        out.append(kept / rows_total)
    return torch.stack(out)


def global_oracle_recall(mass: torch.Tensor, densities: Sequence[float]) -> torch.Tensor:
    """[len(densities), ...]: moddit eval's oracle (equal blocks): the diagonal,
    then the blocks of most mass over the grid."""
    n = mass.shape[-1]
    key = mass.clone()
    idx = torch.arange(n, device=mass.device)
    key[..., idx, idx] = float("inf")
    flat_key = key.flatten(-2)
    order = flat_key.argsort(dim=-1, descending=True)
    cum = mass.flatten(-2).gather(-1, order).cumsum(-1)
    total = mass.sum((-1, -2))
    return torch.stack([cum[..., _total_blocks(n, d) - 1] / total for d in densities])


def recall_of(mask: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """[H]: kept mass of mask [B, H, n, n] (bool) under mass, pooled over B."""
    return (mass * mask).sum((0, 2, 3)) / mass.sum((0, 2, 3))


def rel_l2(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """[H]: relative L2 error of [B, N, H, D] outputs, pooled over B."""
    err = (out.float() - ref.float()).pow(2).sum((0, 1, 3))
    return (err / ref.float().pow(2).sum((0, 1, 3)).clamp_min(1e-30)).sqrt()


def mask_density(mask: torch.Tensor) -> torch.Tensor:
    """[H]: live fraction of [B, H, n, n] masks (equal blocks: the token-pair
    density), averaged over B."""
    return mask.float().mean((0, 2, 3))


def layout_of(masks: torch.Tensor, grid):
    """A moddit BlockLayout of video masks [B, H, n, n] (bool, any device) over
    `grid`: moddit's own builder (text rows and columns dense, the diagonal of
    every row live)."""
    import numpy as np

    import moddit

    arr = np.ascontiguousarray(masks.to(torch.uint8).cpu().numpy())
    return moddit.layout_from_video_masks(arr, grid)
