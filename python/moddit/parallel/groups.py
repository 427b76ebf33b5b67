"""The process groups of sequence parallelism, in the layout xDiT (yunchang's
USP) and diffusers' context parallelism share: P = U x R ranks, a Ulysses group
of U ranks that splits the heads and a ring group of R ranks that exchanges
K/V chunks; sequence-parallel rank s = ring_rank * U + ulysses_rank holds chunk
s of the sequence. moddit makes no groups of its own beyond from_degrees()
(tests, scripts): it takes the framework's."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch.distributed as dist

from .. import _moddit as _C


def _ranks(group) -> Tuple[int, ...]:
    if group is None or group is dist.group.WORLD:
        return tuple(range(dist.get_world_size()))
    return tuple(dist.get_process_group_ranks(group))


class Groups:
    """sp: the whole sequence-parallel group (P ranks); ulysses, ring: its
    subgroups (None = size 1). On one process, or without torch.distributed,
    everything is size 1 and no collective runs."""

    def __init__(self, sp=None, ulysses=None, ring=None):
        self.distributed = dist.is_available() and dist.is_initialized()
        self.sp, self.ulysses, self.ring = sp, ulysses, ring
        if not self.distributed:
            self.sp_ranks, self.U, self.R, self.u, self.i = (0,), 1, 1, 0, 0
            self.ulysses = self.ring = self.sp = None
            return
        self.sp_ranks = _ranks(sp)
        me = dist.get_rank()
        if me not in self.sp_ranks:
            raise _C.Error(f"moddit.parallel: rank {me} is not in its sequence-parallel group "
                           f"{list(self.sp_ranks)}")
        uly = _ranks(ulysses) if ulysses is not None else (me,)
        ring_r = _ranks(ring) if ring is not None else (me,)
        self.U, self.R = len(uly), len(ring_r)
        P = len(self.sp_ranks)
        if self.U * self.R != P:
            raise _C.Error(f"moddit.parallel: Ulysses degree {self.U} x ring degree {self.R} != "
                           f"{P} sequence-parallel ranks")
        s = self.sp_ranks.index(me)
        self.i, self.u = divmod(s, self.U)
        want_u = tuple(self.sp_ranks[self.i * self.U + x] for x in range(self.U))
        want_r = tuple(self.sp_ranks[y * self.U + self.u] for y in range(self.R))
        if uly != want_u or ring_r != want_r:
            raise _C.Error(
                "moddit.parallel: the Ulysses / ring groups are not in the USP layout "
                f"(sequence-parallel rank s = ring_rank * U + ulysses_rank): rank {me} has "
                f"Ulysses group {list(uly)} and ring group {list(ring_r)}, expected "
                f"{list(want_u)} and {list(want_r)}")
        if self.U == 1:
            self.ulysses = None
        if self.R == 1:
            self.ring = None

    @property
    def P(self) -> int:
        return self.U * self.R

    @property
    def sp_rank(self) -> int:
        return self.i * self.U + self.u

    def ulysses_members(self) -> Tuple[int, ...]:
        """Sequence-parallel ranks of this rank's Ulysses group, in group order."""
        return tuple(self.i * self.U + x for x in range(self.U))

    def ring_members(self) -> Tuple[int, ...]:
        return tuple(y * self.U + self.u for y in range(self.R))

    def all_members(self) -> Tuple[int, ...]:
        return tuple(range(self.P))

    def describe(self) -> str:
        return f"{self.P} ranks (Ulysses {self.U} x ring {self.R})"

    # --- from what users run ---------------------------------------------------------
    @staticmethod
    def from_degrees(ulysses: int, ring: int = 1, group: Any = None) -> "Groups":
        """Makes the subgroups of `group` (default: the world) in the USP layout.
        Every rank of the world must call it (torch.distributed.new_group)."""
        ranks = _ranks(group)
        if ulysses * ring != len(ranks):
            raise _C.Error(f"moddit.parallel: ulysses {ulysses} x ring {ring} != {len(ranks)} ranks")
        uly = ring_g = None
        me = dist.get_rank()
        for i in range(ring):
            members = [ranks[i * ulysses + x] for x in range(ulysses)]
            g = dist.new_group(members)
            if me in members:
                uly = g
        for u in range(ulysses):
            members = [ranks[y * ulysses + u] for y in range(ring)]
            g = dist.new_group(members)
            if me in members:
                ring_g = g
        return Groups(group, uly, ring_g)

    @staticmethod
    def from_xdit() -> "Groups":
        """xDiT's sequence-parallel group and its Ulysses / ring subgroups (after
        xfuser's initialize_model_parallel)."""
        from xfuser.core.distributed import get_sp_group

        sp = get_sp_group()
        return Groups(sp.device_group, getattr(sp, "ulysses_group", None),
                      getattr(sp, "ring_group", None))

    @staticmethod
    def from_diffusers(config: Any) -> "Groups":
        """diffusers' ContextParallelConfig (or a ParallelConfig holding one),
        after enable_parallelism() has set up its meshes."""
        cp = getattr(config, "context_parallel_config", None) or config
        if getattr(cp, "_flattened_mesh", None) is None:
            raise _C.Error("moddit.parallel: the diffusers ContextParallelConfig has no device mesh "
                           "yet (call transformer.enable_parallelism(config=...) first)")
        return Groups(cp._flattened_mesh.get_group(), cp._ulysses_mesh.get_group(),
                      cp._ring_mesh.get_group())
