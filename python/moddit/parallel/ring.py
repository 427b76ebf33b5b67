"""Ring attention over block-sparse plans: each ring member keeps its query
rows, receives the K/V chunks its rows need from the members that own them, runs
moddit's chunk calls (one query run against one key run, the plan's layouts
sliced to that pair) and merges the partial results exactly by their LSE.

K/V move in R - 1 rounds; in round d member m sends its own chunk to m + d and
receives the chunk of m - d (mod R), each only if the receiver's rows have a
live block in it, which every member knows from the plan's layouts: a chunk pair
with no live block costs neither a transfer nor a call. The next round's
transfers fly while this round's chunk is computed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist

from .. import _frameworks as fw
from .. import _moddit as _C
from .exchange import comm_device
from .sharding import Run

_NEG_INF = float("-inf")


@dataclass
class Group:
    """One launch of a plan: heads (indices into the local heads; None = all)
    and their whole-sequence layout over (batch, len(heads)) (None = dense)."""
    heads: Optional[List[int]]
    layout: Optional[Any]
    mask: Optional[np.ndarray] = None  # [nb, nb] bool: any batch item / head live (layouts only)


def block_any(layout: Any, nb: int) -> np.ndarray:
    """[nb, nb]: whether any (batch, head) row of query block q lists key block k."""
    row_ptr = np.asarray(layout.row_ptr)
    col = np.asarray(layout.col_idx)
    rows = np.repeat(np.arange(row_ptr.size - 1), np.diff(row_ptr)) % nb
    m = np.zeros((nb, nb), dtype=bool)
    m[rows, col] = True
    return m


def merge_into(acc_out: torch.Tensor, acc_lse: torch.Tensor, out: torch.Tensor,
               lse: torch.Tensor) -> None:
    """acc += (out, lse) by log-sum-exp weights, in place. acc_out [B, m, H, D]
    float32, acc_lse [B, H, m] float32; a row with lse -inf (no live key) adds
    nothing."""
    new = torch.logaddexp(acc_lse, lse)
    safe = torch.where(torch.isinf(new), torch.zeros_like(new), new)
    w_acc = torch.exp(acc_lse - safe).transpose(1, 2).unsqueeze(-1)
    w_new = torch.exp(lse - safe).transpose(1, 2).unsqueeze(-1)
    acc_out.mul_(w_acc).add_(out.float() * w_new)
    acc_lse.copy_(new)


def _runs_in_rows(runs: Sequence[Run]) -> List[Tuple[int, int, int]]:
    """(start token, length, first row in the tensor) of consecutive runs."""
    out, row = [], 0
    for start, n in runs:
        out.append((start, n, row))
        row += n
    return out


class RingPlan:
    """What every member needs of every other, for one call's plan groups."""

    def __init__(self, groups: Sequence[Group], grid: Any, q_runs: Sequence[Sequence[Run]],
                 k_runs: Sequence[Sequence[Run]]):
        R = len(q_runs)
        nb = grid.num_blocks
        self.need = np.zeros((R, R), dtype=bool)
        spans_q = [[_C.blocks_meeting(grid, a, a + n) for a, n in runs] for runs in q_runs]
        spans_k = [[_C.blocks_meeting(grid, a, a + n) for a, n in runs] for runs in k_runs]
        for g in groups:
            if g.layout is None:
                self.need |= np.array([[bool(k_runs[j]) for j in range(R)]] * R)
                continue
            if g.mask is None:
                g.mask = block_any(g.layout, nb)
            for i in range(R):
                for j in range(R):
                    if not self.need[i, j]:
                        self.need[i, j] = any(g.mask[a:e, c:f].any() for a, e in spans_q[i]
                                              for c, f in spans_k[j])


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: Sequence[Group],
                   *, tokens: Any, grid: Any, block_size: int, backend: Any, ring_group: Any,
                   ring_rank: int, ring_global_ranks: Sequence[int],
                   q_runs: Sequence[Sequence[Run]], k_runs: Sequence[Sequence[Run]],
                   k_rows: Optional[np.ndarray], eta: float = 1e-4,
                   stats: Optional[dict] = None) -> torch.Tensor:
    """q, k, v: this member's rows [B, M, H, D] (its piece: q_runs[ring_rank]
    in order). k_runs[j]: the keys member j owns (a subset of its rows, in
    order); k_rows: the rows of this member's own keys (None = all of them).
    Returns [B, M, H, D] in q's dtype. stats, if given, gets "received" (K/V
    chunks received), "skipped" (other members' chunks not needed: no transfer)
    and "calls" (chunk calls run)."""
    R = len(q_runs)
    me = ring_rank
    B, M, H, D = q.shape
    plan = RingPlan(groups, grid, q_runs, k_runs)
    counts = {"received": 0, "skipped": 0, "calls": 0}
    if k_rows is not None:
        idx = torch.from_numpy(k_rows).to(k.device)
        k_own, v_own = k.index_select(1, idx), v.index_select(1, idx)
    else:
        k_own, v_own = k, v
    k_own, v_own = k_own.contiguous(), v_own.contiguous()
    dev = comm_device(ring_group, k.device)  # gloo: CUDA chunks travel through host memory
    k_send, v_send = (k_own, v_own) if dev == k.device else (k_own.to(dev), v_own.to(dev))
    keys = [sum(n for _, n in runs) for runs in k_runs]

    acc_out = torch.zeros((B, M, H, D), dtype=torch.float32, device=q.device)
    acc_lse = torch.full((B, H, M), _NEG_INF, dtype=torch.float32, device=q.device)
    stream = fw.current_stream(q)
    heads_all = list(range(H))

    def compute(j: int, kj: torch.Tensor, vj: torch.Tensor) -> None:
        for qa, qn, qrow in _runs_in_rows(q_runs[me]):
            for ka, kn, krow in _runs_in_rows(k_runs[j]):
                calls = []
                for g in groups:
                    lay = None
                    if g.layout is not None:
                        lay = _C.slice_layout(g.layout, grid, qa, qa + qn, ka, ka + kn)
                        if lay.live_blocks == 0:
                            continue
                    calls.append((g, lay))
                if not calls:
                    continue
                part = torch.empty((B, qn, H, D), dtype=q.dtype, device=q.device)
                part_lse = torch.full((B, H, qn), _NEG_INF, dtype=torch.float32, device=q.device)
                counts["calls"] += len(calls)
                for g, lay in calls:
                    heads = None if g.heads is None or list(g.heads) == heads_all else g.heads
                    _C.attention(backend, q[:, qrow:qrow + qn], kj[:, krow:krow + kn],
                                 vj[:, krow:krow + kn], part, tokens, block_size, 0.0, lay,
                                 heads, part_lse, None, float(eta), "NHD", int(stream), qa, ka)
                covered = set()
                for g, _ in calls:
                    covered.update(heads_all if g.heads is None else g.heads)
                if len(covered) < H:  # heads this pair does not reach: no contribution
                    miss = [h for h in heads_all if h not in covered]
                    part[:, :, miss] = 0
                merge_into(acc_out[:, qrow:qrow + qn], acc_lse[:, :, qrow:qrow + qn], part,
                           part_lse)

    def post(d: int):
        """Posts round d's transfers; returns (requests, source, k, v) or None."""
        dst, src = (me + d) % R, (me - d) % R
        ops = []
        if plan.need[dst, me] and keys[me] > 0:
            ops.append(dist.P2POp(dist.isend, k_send, ring_global_ranks[dst], ring_group))
            ops.append(dist.P2POp(dist.isend, v_send, ring_global_ranks[dst], ring_group))
        kin = vin = None
        if plan.need[me, src] and keys[src] > 0:
            kin = torch.empty((B, keys[src], H, D), dtype=k.dtype, device=dev)
            vin = torch.empty_like(kin)
            ops.append(dist.P2POp(dist.irecv, kin, ring_global_ranks[src], ring_group))
            ops.append(dist.P2POp(dist.irecv, vin, ring_global_ranks[src], ring_group))
            counts["received"] += 1
        elif keys[src] > 0:
            counts["skipped"] += 1
        reqs = dist.batch_isend_irecv(ops) if ops else []
        return reqs, src, kin, vin

    pending = post(1) if R > 1 else None
    if plan.need[me, me] and keys[me] > 0:
        compute(me, k_own, v_own)
    for d in range(1, R):
        reqs, src, kin, vin = pending
        for r in reqs:
            r.wait()
        pending = post(d + 1) if d + 1 < R else None
        if kin is not None:
            compute(src, kin.to(k.device), vin.to(k.device))
    if stats is not None:
        stats.update(counts)
    return acc_out.to(q.dtype)
