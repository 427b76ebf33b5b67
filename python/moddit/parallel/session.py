"""ParallelSession: a moddit Session spread over a sequence-parallel group.

Each rank holds its rows of Q/K/V for all H heads (the framework's split,
`Sharding`). A call runs in one of two ways:

- Ulysses: an all-to-all gives each rank every token for H/G of the heads (G:
  the group's size); the rank's own Session runs them (policy state, fits, masks
  and layouts for those heads only, the token layout unchanged); an all-to-all
  brings the output back. Every kind of call runs this way.
- Ring (ring degree R > 1): a Ulysses all-to-all within the Ulysses group, then
  ring attention (ring.py) over the ring group on the plan's layouts. No map can
  be recorded in a ring (the map compares every score with the row's final LSE,
  known only after every key chunk has been seen), so MOD-DiT runs its dense,
  record and refresh calls as Ulysses over all P = U x R ranks and only its
  sparse calls in the ring, gathering the masks its ranks planned for their own
  heads within each ring group.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .. import _api
from .. import _moddit as _C
from .exchange import all_gather_rows, comm_device, gather_heads, scatter_heads
from .groups import Groups
from .ring import Group, ring_attention
from .sharding import Piece, Sharding, _runs_of, key_owner_rows, piece_of


def _fail(msg: str):
    raise _C.Error(f"moddit.parallel: {msg}")


def slice_vdit_config(config: _C.VditConfig, heads: Sequence[int]) -> _C.VditConfig:
    """The Sparse-vDiT config of a head subset (a Ulysses rank's heads): the
    searched choices of those heads, in that order, for a model of len(heads)
    heads."""
    data = json.loads(config.to_json())
    H = int(data["model"]["num_heads"])
    heads = [int(h) for h in heads]
    if not heads or min(heads) < 0 or max(heads) >= H:
        _fail(f"head subset {heads[:3]}... outside the {H} heads the Sparse-vDiT config was "
              "searched for")
    data["model"]["num_heads"] = len(heads)
    for st in data["steps"]:
        st["layers"] = [[layer[h] for h in heads] for layer in st["layers"]]
    data.pop("mean_density", None)
    return _C.VditConfig.from_json(json.dumps(data))


class Layout:
    """Where a rank's heads and state live for a policy on a set of groups."""

    def __init__(self, groups: Groups, num_heads: int, policy_kind: str):
        self.groups = groups
        U, R, P = groups.U, groups.R, groups.P
        self.moddit_ring = policy_kind == "moddit" and R > 1
        G = P if self.moddit_ring else U
        if num_heads % G != 0:
            why = (f"MOD-DiT records its maps under Ulysses over all {P} ranks (a ring cannot: "
                   "the map needs each row's final LSE over every key)" if self.moddit_ring
                   else f"Ulysses splits the heads over its {U} ranks")
            _fail(f"{num_heads} heads cannot be split over {G} ranks: {why}; choose a "
                  f"Ulysses degree that divides {num_heads} (and use the ring for the rest)")
        self.ulysses_heads = num_heads // U  # heads of the ring path / Ulysses-only runs
        self.state_heads = num_heads // G    # heads this rank's Session (and policy) holds
        # Ulysses over all P ranks for MOD-DiT's whole calls: rank (ring i, Ulysses u)
        # takes head block u R + i, inside its Ulysses group's block u, so that
        # its state covers heads of the ring path's head block.
        if self.moddit_ring:
            self.whole_order = tuple((s % U) * R + s // U for s in range(P))
            block = self.whole_order[groups.sp_rank]
        else:
            self.whole_order = None
            block = groups.u
        self.state_head_ids = tuple(range(block * self.state_heads,
                                          (block + 1) * self.state_heads))
        self.ulysses_head_ids = tuple(range(groups.u * self.ulysses_heads,
                                            (groups.u + 1) * self.ulysses_heads))


def policy_kind(policy: Any) -> str:
    if isinstance(policy, str):
        name = policy.lower().replace("-", "_")
        return {"mod_dit": "moddit", "vdit": "sparse_vdit"}.get(name, name)
    if isinstance(policy, _C.ModditPolicy):
        return "moddit"
    if isinstance(policy, _C.SparseVditPolicy):
        return "sparse_vdit"
    return "object"


def make_local_policy(policy: Any, layout: Layout, num_layers: int, num_heads: int,
                      config: Any = None, **config_kw: Any) -> Any:
    """The policy of this rank's heads: MOD-DiT with state for them only,
    Sparse-vDiT with the searched config sliced to them, dense; a Policy object
    is used as given (it must be made for layout.state_heads heads)."""
    kind = policy_kind(policy)
    if kind == "sparse_vdit" and isinstance(policy, str):
        if config is None:
            _fail("sparse_vdit needs config= (a searched VditConfig or its JSON file)")
        cfg = config if isinstance(config, _C.VditConfig) else _C.VditConfig.load(str(config))
        if cfg.num_heads != num_heads:
            _fail(f"the Sparse-vDiT config was searched for {cfg.num_heads} heads, the "
                  f"model has {num_heads}")
        return _C.SparseVditPolicy(slice_vdit_config(cfg, layout.state_head_ids))
    if kind == "moddit" and isinstance(policy, str):
        return _api.make_policy("moddit", num_layers, layout.state_heads, config, **config_kw)
    if isinstance(policy, str):
        return _api.make_policy(policy, num_layers, layout.state_heads, config, **config_kw)
    return policy


class ParallelSession:
    """The Session of one token layout on one rank of a sequence-parallel group.

    ParallelSession(tokens, sharding, groups, policy="moddit", device, num_steps,
    num_layers, num_heads (all heads of the model), head_dim, block_size, eta,
    config=None, **config_kw): policy is a name ("moddit", "sparse_vdit" with
    config=, "dense"; the policy for this rank's heads is made here) or a policy
    object from make_local_policy (sessions of one pipeline with different token
    layouts share one). attention(layer, q, k, v) takes this rank's rows
    [B, n, H, D] and returns its output rows [B, n, H, D] (padding rows zero)."""

    def __init__(self, tokens: _C.TokenLayout, sharding: Sharding, groups: Groups,
                 policy: Any = "moddit", *, device: Any = "cpu", num_steps: int = 50,
                 num_layers: int = 1, num_heads: int = 1, head_dim: int = 128,
                 block_size: int = 128, eta: Optional[float] = None, dense_calls_sdpa: bool = False,
                 config: Any = None, **config_kw: Any):
        if sharding.world != groups.P:
            _fail(f"the sharding is over {sharding.world} ranks, the group has {groups.P}")
        if sharding.total != tokens.total_tokens:
            _fail(f"the sharding covers {sharding.total} tokens, the token layout has "
                  f"{tokens.total_tokens} ({tokens.describe()})")
        self.tokens, self.sharding, self.groups = tokens, sharding, groups
        self.kind = policy_kind(policy)
        self.layout = Layout(groups, num_heads, self.kind)
        if isinstance(policy, str):
            if self.kind == "moddit":
                config_kw.setdefault("block_size", block_size)
                if eta is not None:
                    config_kw.setdefault("eta", eta)
            elif eta is not None:
                _fail("eta is MOD-DiT's map threshold (the 'moddit' policy's config key 'eta')")
            policy = make_local_policy(policy, self.layout, num_layers, num_heads, config,
                                       **config_kw)
        elif config is not None or config_kw:
            _fail("config options given with a policy object: set them on the object")
        self.num_heads, self.head_dim, self.block_size = num_heads, head_dim, block_size
        self.dense_calls_sdpa = dense_calls_sdpa
        self.device = torch.device(device) if isinstance(device, str) else torch.device("cpu")
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.session = _api.Session(tokens, policy, device=device, num_steps=num_steps,
                                    num_layers=num_layers, num_heads=self.layout.state_heads,
                                    head_dim=head_dim, block_size=block_size)
        self.policy = policy
        self.grid = _C.make_block_grid(tokens, block_size)
        g = groups
        self.piece_all = piece_of(sharding, g.all_members())
        self.piece_uly = piece_of(sharding, g.ulysses_members())
        if g.R > 1:
            self.ring_pieces = [piece_of(sharding, tuple(y * g.U + x for x in range(g.U)))
                                for y in range(g.R)]
            owned = key_owner_rows(self.ring_pieces)
            self.k_runs = [_runs_of_positions(pc, own) for pc, own in zip(self.ring_pieces, owned)]
            mine = owned[g.i]
            self.k_rows = None if mine.size == self.ring_pieces[g.i].tokens.size else mine
            self.ring_globals = [g.sp_ranks[y * g.U + g.u] for y in range(g.R)]
        self._checked: set = set()
        self.step = 0
        self.calls: List[Dict[str, Any]] = []

    # --- the denoising loop --------------------------------------------------------
    def begin_step(self, step: int) -> None:
        self.step = int(step)
        self.session.begin_step(step)

    def attention(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  slot_begin: int = -1) -> torch.Tensor:
        g = self.groups
        B, n, H, D = q.shape
        self._check_call(B, n, H, D, q)
        ring = g.R > 1 and self._ring_call(layer)
        if not ring:
            return self._ulysses_call(layer, q, k, v, slot_begin)
        return self._ring_call_run(layer, q, k, v, slot_begin)

    # --- one call ----------------------------------------------------------------
    def _check_call(self, B: int, n: int, H: int, D: int, q: torch.Tensor) -> None:
        """Shapes every rank must agree on, checked on every rank and agreed on
        once per batch size (one small collective), so that a bad call is an
        error on every rank instead of a hang in the next collective."""
        want = self.sharding.local_tokens(self.groups.sp_rank)
        msg = None
        if H != self.num_heads or D != self.head_dim:
            msg = (f"q has {H} heads of dim {D}, the session was made for {self.num_heads} of "
                   f"{self.head_dim}")
        elif n != want:
            msg = (f"q has {n} rows on sequence-parallel rank {self.groups.sp_rank}, the "
                   f"sharding of the {self.sharding.total}-token sequence gives it {want}")
        key = (B, n)
        if key in self._checked and msg is None:
            return
        g = self.groups
        if g.distributed and g.P > 1:
            msgs: List[Optional[str]] = [None] * g.P
            dist.all_gather_object(msgs, msg, group=g.sp)
            bad = [(s, m) for s, m in enumerate(msgs) if m is not None]
            if bad:
                s, m = bad[0]
                _fail(m if s == g.sp_rank else f"rank {s} of the group refused the call: {m}")
        elif msg is not None:
            _fail(msg)
        self._checked.add(key)

    def _ring_call(self, layer: int) -> bool:
        if self.kind == "moddit":
            return self.policy.kind_of(self.step, layer) == _C.CallKind.SPARSE
        return True

    def _ulysses_call(self, layer, q, k, v, slot_begin):
        g, L = self.groups, self.layout
        if L.moddit_ring:
            group, piece, G, order = g.sp, self.piece_all, g.P, L.whole_order
        else:
            group, piece, G, order = g.ulysses, self.piece_uly, g.U, None
        n = q.shape[1]
        qh = scatter_heads(q, group, piece, G, order)
        kh = scatter_heads(k, group, piece, G, order)
        vh = scatter_heads(v, group, piece, G, order)
        B = qh.shape[0]
        if self.dense_calls_sdpa and self.session.plain_dense(layer, B, slot_begin):
            oh = self._sdpa(qh, kh, vh)
            self.calls.append({"layer": layer, "kind": "dense", "density": 1.0, "ring": False})
        else:
            before = self.session.history_size
            oh = self.session.attention(layer, qh, kh, vh, slot_begin=slot_begin)
            for rec in self.session.history_since(before, wait=False):
                self.calls.append({"layer": layer, "kind": _kind_name(rec.kind),
                                   "density": rec.density, "ring": False})
        return gather_heads(oh, group, piece, G, n, order)

    def _sdpa(self, q, k, v):
        """The model's own dense attention on the gathered heads (padding keys masked)."""
        mask = None
        t = self.tokens
        if t.pad_end > t.pad_begin:
            keep = torch.ones(t.total_tokens, dtype=torch.bool, device=q.device)
            keep[t.pad_begin:t.pad_end] = False
            mask = keep[None, None, None, :]
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2), attn_mask=mask)
        return o.transpose(1, 2)

    def _ring_call_run(self, layer, q, k, v, slot_begin):
        g, L = self.groups, self.layout
        n = q.shape[1]
        qh = scatter_heads(q, g.ulysses, self.piece_uly, g.U)
        kh = scatter_heads(k, g.ulysses, self.piece_uly, g.U)
        vh = scatter_heads(v, g.ulysses, self.piece_uly, g.U)
        B = qh.shape[0]
        plan = self.session.plan_call(layer, B, slot_begin)
        if L.moddit_ring:
            groups = self._gathered_groups(plan, B)
        else:
            groups = [Group(list(hg.heads), hg.layout) for hg in plan.groups if len(hg.heads)]
        stats: Dict[str, Any] = {}
        oh = ring_attention(qh, kh, vh, groups, tokens=self.tokens, grid=self.grid,
                            block_size=self.block_size, backend=self.session.backend,
                            ring_group=g.ring, ring_rank=g.i, ring_global_ranks=self.ring_globals,
                            q_runs=[pc.runs for pc in self.ring_pieces], k_runs=self.k_runs,
                            k_rows=self.k_rows, stats=stats)
        self.calls.append(dict(stats, layer=layer, kind=_kind_name(plan.kind),
                               density=_plan_density(groups, self.grid, L.ulysses_heads),
                               ring=True))
        return gather_heads(oh, g.ulysses, self.piece_uly, g.U, n)

    def _gathered_groups(self, plan, B: int) -> List[Group]:
        """MOD-DiT in a ring: every ring member planned its own heads (a block of
        the Ulysses group's); their masks, gathered (bit-packed), make one layout
        over the Ulysses group's heads, the same on every member."""
        L, g = self.layout, self.groups
        nb = self.grid.num_blocks
        Hs = L.state_heads
        bits = np.zeros((B, Hs, nb, nb), dtype=np.uint8)
        for hg in plan.groups:
            heads = list(hg.heads)
            if not heads:
                continue
            if hg.layout is None:
                bits[:, heads] = 1
            else:
                bits[:, heads] = np.asarray(_C.to_mask(hg.layout).bits)
        packed = torch.from_numpy(np.packbits(bits, axis=-1))
        device = comm_device(g.ring, self.device)
        every = all_gather_rows(packed.to(device), g.ring, g.R).cpu().numpy()  # [R, B, Hs, nb, w]
        full = np.unpackbits(every, axis=-1, count=nb).transpose(1, 0, 2, 3, 4).reshape(
            B, g.R * Hs, nb, nb)
        mask = _C.BlockMask(B, g.R * Hs, nb, nb)
        np.asarray(mask.bits)[...] = full
        return [Group(None, _C.to_layout(mask))]


def _runs_of_positions(piece: Piece, positions: np.ndarray):
    return _runs_of(piece.tokens[positions])


def _kind_name(kind) -> str:
    return {_C.CallKind.DENSE: "dense", _C.CallKind.RECORD: "record",
            _C.CallKind.SPARSE: "sparse", _C.CallKind.REFRESH: "refresh"}.get(kind, str(kind))


def _plan_density(groups: Sequence[Group], grid: Any, H: int) -> float:
    total = 0.0
    for gr in groups:
        heads = H if gr.heads is None else len(gr.heads)
        total += heads * (1.0 if gr.layout is None else _C.video_density(gr.layout, grid))
    return total / max(1, H)
