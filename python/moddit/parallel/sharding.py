"""How a framework splits the sequence over the ranks of a sequence-parallel
group, and the row indices that turn the ranks' rows into moddit's sequence.

The *canonical* sequence is the one moddit's TokenLayout describes (video
frame-major, text before or after it). A framework's split need not be a plain
cut of it: xDiT pads Wan's sequence to a multiple of the rank count, and splits
HunyuanVideo's video and text separately (each rank holds [its video chunk; its
text chunk], or the whole text when the text length does not divide). A
`Sharding` says, per rank, which canonical tokens its rows hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import List, Sequence, Tuple

import numpy as np

from .. import _moddit as _C

Run = Tuple[int, int]  # (start, length) in the canonical sequence; start -1: padding rows
PAD = -1


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise _C.Error(f"moddit.parallel: {msg}")


@dataclass(frozen=True)
class Sharding:
    """Rank s of the sequence-parallel group holds the rows `runs[s]`, in order:
    (start, length) ranges of the canonical sequence of `total` tokens, or
    (-1, length) for padding rows that belong to no token (their output is
    zeros). A token held by several ranks (text every rank keeps whole) is
    attended to once as a key; each holder gets its output row."""

    total: int
    runs: Tuple[Tuple[Run, ...], ...]

    def __post_init__(self):
        _check(self.total > 0, f"a sharding of {self.total} tokens")
        _check(len(self.runs) > 0, "a sharding over no ranks")
        seen = np.zeros(self.total, dtype=bool)
        for s, runs in enumerate(self.runs):
            _check(sum(n for _, n in runs) > 0,
                   f"rank {s} holds no token of the {self.total}-token sequence "
                   f"(too short for {len(self.runs)} ranks)")
            for start, n in runs:
                _check(n > 0, f"rank {s}: a run of {n} rows")
                if start == PAD:
                    continue
                _check(0 <= start and start + n <= self.total,
                       f"rank {s}: tokens [{start}, {start + n}) outside the sequence of "
                       f"{self.total}")
                seen[start:start + n] = True
        missing = np.flatnonzero(~seen)
        _check(missing.size == 0, f"token {missing[0] if missing.size else 0} of {self.total} is "
               "on no rank")

    @property
    def world(self) -> int:
        return len(self.runs)

    def local_tokens(self, rank: int) -> int:
        return sum(n for _, n in self.runs[rank])

    def rows_of(self, rank: int) -> np.ndarray:
        """Canonical token of each of the rank's rows (-1 for padding)."""
        parts = [np.full(n, PAD, np.int64) if start == PAD else np.arange(start, start + n)
                 for start, n in self.runs[rank]]
        return np.concatenate(parts)

    # --- the splits frameworks make -------------------------------------------
    @staticmethod
    def chunked(total: int, world: int) -> "Sharding":
        """torch.chunk(x, world) along the sequence, rank s taking chunk s:
        diffusers' context parallelism (which requires total % world == 0) and
        xDiT's HunyuanVideo video tokens."""
        c = -(-total // world)
        runs = []
        for s in range(world):
            a, e = s * c, min(total, (s + 1) * c)
            runs.append(((a, e - a),) if e > a else ())
        return Sharding(total, tuple(runs))

    @staticmethod
    def padded(total: int, world: int) -> "Sharding":
        """Zeros appended up to a multiple of world, then equal chunks (xDiT's Wan)."""
        c = -(-total // world)
        runs = []
        for s in range(world):
            a, e = s * c, (s + 1) * c
            r = []
            if a < total:
                r.append((a, min(e, total) - a))
            if e > total:
                r.append((PAD, e - max(a, total)))
            runs.append(tuple(r))
        return Sharding(total, tuple(runs))

    @staticmethod
    def video_and_text(video: int, text: int, world: int, text_position: str,
                       split_text: bool) -> "Sharding":
        """Video tokens split by torch.chunk, text split the same way when
        `split_text` (else every rank holds all of it), each rank's rows being
        [video chunk; text part] (text after the video: HunyuanVideo in xDiT) or
        [text part; video chunk] (text before)."""
        _check(text_position in ("after", "before"), f"text_position {text_position!r}")
        v_off = 0 if text_position == "after" else text
        t_off = video if text_position == "after" else 0
        vs = Sharding.chunked(video, world).runs
        ts = Sharding.chunked(text, world).runs if split_text else ((( 0, text),),) * world
        runs = []
        for s in range(world):
            v = tuple((a + v_off, n) for a, n in vs[s])
            t = tuple((a + t_off, n) for a, n in ts[s]) if text > 0 else ()
            runs.append(v + t if text_position == "after" else t + v)
        return Sharding(video + text, tuple(runs))


@dataclass(frozen=True)
class Piece:
    """The canonical tokens the members of a group hold together, sorted, and
    how the all-to-all's rows map onto them (see gather_rows / scatter_rows)."""

    tokens: np.ndarray       # sorted unique canonical tokens (int64)
    runs: Tuple[Run, ...]    # the same as (start, length) runs
    lengths: Tuple[int, ...]  # rows of each member, in group order
    first: np.ndarray        # per piece token: (member, row) of its first holder, flat (see below)
    position: Tuple[np.ndarray, ...]  # per member: the piece position of each row (-1: padding)
    identity: bool           # the members' rows concatenated are exactly `tokens`


def _runs_of(tokens: np.ndarray) -> Tuple[Run, ...]:
    if tokens.size == 0:
        return ()
    breaks = np.flatnonzero(np.diff(tokens) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [tokens.size]])
    return tuple((int(tokens[a]), int(e - a)) for a, e in zip(starts, ends))


@lru_cache(maxsize=64)
def piece_of(sharding: Sharding, members: Tuple[int, ...]) -> Piece:
    """The piece of the group whose members are the sharding's ranks `members`
    (in group-rank order)."""
    rows = [sharding.rows_of(m) for m in members]
    allrows = np.concatenate(rows)
    real = allrows[allrows >= 0]
    tokens = np.unique(real)
    lengths = tuple(int(r.size) for r in rows)
    # first holder of each token: the flat row index over the concatenated members
    flat = np.arange(allrows.size)
    order = np.lexsort((flat[allrows >= 0], real))
    sorted_tokens = real[order]
    keep = np.concatenate([[True], sorted_tokens[1:] != sorted_tokens[:-1]])
    first = flat[allrows >= 0][order][keep]
    position = []
    for r in rows:
        p = np.searchsorted(tokens, np.where(r >= 0, r, 0))
        position.append(np.where(r >= 0, p, -1).astype(np.int64))
    identity = (allrows.size == tokens.size and bool(np.all(allrows == tokens)))
    return Piece(tokens, _runs_of(tokens), lengths, first.astype(np.int64), tuple(position),
                 identity)


def gather_rows(piece: Piece, batch: int) -> np.ndarray:
    """Row indices, [batch * len(piece.tokens)], that take the all-to-all's
    receive buffer (member j's rows as one [batch, lengths[j], ...] block after
    another) to the piece in canonical order, batch-major."""
    lengths = np.asarray(piece.lengths, np.int64)
    cum = np.concatenate([[0], np.cumsum(lengths)])
    member = np.searchsorted(cum, piece.first, side="right") - 1
    row = piece.first - cum[member]
    base = batch * cum[member] + row
    return (base[None, :] + np.arange(batch)[:, None] * lengths[member][None, :]).reshape(-1)


def scatter_rows(piece: Piece, batch: int) -> np.ndarray:
    """Row indices into the piece's output [batch * M + 1 rows, the last one
    zero] that build the send buffer back to the members (member j's rows as
    one [batch, lengths[j], ...] block after another); padding rows take the
    zero row."""
    M = piece.tokens.size
    out = []
    for pos in piece.position:
        for b in range(batch):
            out.append(np.where(pos >= 0, b * M + pos, batch * M))
    return np.concatenate(out)


def key_owner_rows(pieces: Sequence[Piece]) -> List[np.ndarray]:
    """For ring attention: per ring member, the piece positions whose keys it
    owns (a token several members hold is owned by the first)."""
    owned = []
    earlier = np.zeros(0, np.int64)
    for pc in pieces:
        owned.append(np.flatnonzero(~np.isin(pc.tokens, earlier)))
        earlier = np.union1d(earlier, pc.tokens)
    return owned
