"""The collectives of sequence parallelism, all torch.distributed: the Ulysses
all-to-all (tokens gathered, heads split, with the framework's row order turned
into moddit's sequence in the same copy), its way back, and the mask gather of
ring attention."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist

from .sharding import Piece, gather_rows, scatter_rows

def comm_device(group: Any, device: torch.device) -> torch.device:
    """Where `group`'s collectives take tensors that live on `device`: there for
    NCCL (and for CPU tensors); host memory for a gloo group, which has no CUDA
    all-to-all or send/recv (CUDA tensors are staged through it: several
    processes sharing one GPU, tests)."""
    if device.type != "cuda":
        return device
    backend = str(dist.get_backend(group)).lower()
    return device if "nccl" in backend else torch.device("cpu")


def _all_to_all(recv: torch.Tensor, send: torch.Tensor, out_splits, in_splits, group) -> None:
    dev = comm_device(group, send.device)
    if dev == send.device:
        dist.all_to_all_single(recv, send, output_split_sizes=out_splits,
                               input_split_sizes=in_splits, group=group)
        return
    staged = torch.empty(recv.shape, dtype=recv.dtype, device=dev)
    dist.all_to_all_single(staged, send.to(dev), output_split_sizes=out_splits,
                           input_split_sizes=in_splits, group=group)
    recv.copy_(staged)


_index_cache: Dict[Tuple, Tuple[Piece, torch.Tensor]] = {}


def _index(kind: str, piece: Piece, batch: int, device: torch.device) -> torch.Tensor:
    """The row index of gather_rows / scatter_rows on the device, cached (the
    entry keeps its piece, so an id is never reused for another)."""
    key = (kind, id(piece), batch, str(device))
    hit = _index_cache.get(key)
    if hit is None or hit[0] is not piece:
        rows = gather_rows(piece, batch) if kind == "gather" else scatter_rows(piece, batch)
        if len(_index_cache) > 256:
            _index_cache.clear()
        hit = (piece, torch.from_numpy(np.ascontiguousarray(rows)).to(device))
        _index_cache[key] = hit
    return hit[1]


def scatter_heads(x: torch.Tensor, group: Any, piece: Piece, G: int,
                  head_order: Optional[Sequence[int]] = None) -> torch.Tensor:
    """x: this rank's rows [B, n, H, D] (all heads). Returns the piece (the
    group's tokens in canonical order) for this rank's H / G heads: [B, M, H/G, D].
    Rank g of the group gets head block head_order[g] (default g): heads
    [b H/G, (b + 1) H/G)."""
    B, n, H, D = x.shape
    h = H // G
    if G == 1:
        if piece.identity:
            return x
        flat = x.reshape(B * n, H * D)
        return flat.index_select(0, _index("gather", piece, B, x.device)).view(B, -1, H, D)
    # To rank g: my rows of its heads, [G, B, n, h, D] (one copy).
    blocks = x.reshape(B, n, G, h, D).permute(2, 0, 1, 3, 4)
    if head_order is not None and tuple(head_order) != tuple(range(G)):
        blocks = blocks[list(head_order)]
    send = blocks.contiguous()
    lengths = piece.lengths
    recv = torch.empty(B * sum(lengths) * h * D, dtype=x.dtype, device=x.device)
    _all_to_all(recv, send.reshape(-1), [B * m * h * D for m in lengths], [B * n * h * D] * G,
                group)
    if piece.identity and len(set(lengths)) == 1:
        # [G, B, m, h, D] -> [B, G m, h, D]
        return recv.view(G, B, lengths[0], h, D).transpose(0, 1).reshape(B, G * lengths[0], h, D)
    rows = recv.view(-1, h * D)
    return rows.index_select(0, _index("gather", piece, B, x.device)).view(B, -1, h, D)


def gather_heads(o: torch.Tensor, group: Any, piece: Piece, G: int, n: int,
                 head_order: Optional[Sequence[int]] = None) -> torch.Tensor:
    """The way back: o is the piece's output for this rank's heads [B, M, h, D];
    returns this rank's rows for all heads [B, n, G h, D] (padding rows zero)."""
    B, M, h, D = o.shape
    lengths = piece.lengths
    if G == 1 and piece.identity:
        return o
    flat = torch.cat([o.reshape(B * M, h * D), o.new_zeros(1, h * D)])
    send = flat.index_select(0, _index("scatter", piece, B, o.device))  # [sum_j B m_j, h D]
    if G == 1:
        return send.view(B, n, h, D)
    recv = torch.empty(G * B * n * h * D, dtype=o.dtype, device=o.device)
    _all_to_all(recv, send.reshape(-1), [B * n * h * D] * G, [B * m * h * D for m in lengths],
                group)
    got = recv.view(G, B, n, h, D)  # from group rank g: head block head_order[g]
    if head_order is not None and tuple(head_order) != tuple(range(G)):
        inverse = [0] * G
        for g, b in enumerate(head_order):
            inverse[b] = g
        got = got[inverse]
    # [G, B, n, h, D] -> [B, n, G, h, D]
    return got.permute(1, 2, 0, 3, 4).reshape(B, n, G * h, D)


def all_gather_rows(t: torch.Tensor, group: Any, size: int) -> torch.Tensor:
    """[size, *t.shape]: every member's t (same shape everywhere)."""
    if size == 1:
        return t.unsqueeze(0)
    dev = comm_device(group, t.device)
    src = t.to(dev).contiguous()
    out = torch.empty((size * t.shape[0],) + tuple(t.shape[1:]), dtype=t.dtype, device=dev)
    dist.all_gather_into_tensor(out, src, group=group)  # concatenated along dim 0 (gloo and NCCL)
    return out.view((size,) + tuple(t.shape)).to(t.device)
