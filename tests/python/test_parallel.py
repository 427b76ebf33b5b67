"""Sequence parallelism on the CPU: 2 and 4 gloo processes (moddit's CPU backend)
give the outputs of one process, to fp32 round-off, for dense attention, MOD-DiT
over a short schedule with every call kind (dense, record, sparse, refresh; CFG
as batch 2 and as two calls) and Sparse-vDiT, under Ulysses, ring and both, with
the splits frameworks make (uneven chunks, xDiT's padding, text split or whole on
every rank). Bad configurations are one-line errors on every rank: collectives
time out after 60 s in the workers, and the whole run is killed after a deadline,
so a hang fails the test instead of blocking CI.

One spawn per world size runs every scenario of that size (process start-up,
not the attention, is what costs here)."""
from __future__ import annotations

import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as tmp

from parallel_cases import Scenario, reference, sharding_of, token_layout, worker

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch.distributed is not available")

TEXT_AFTER = dict(frames=3, height=8, width=11, text_tokens=21, text_valid=15,
                  text_position="after")  # N = 285: not a multiple of 2, 4 or 64
TEXT_BEFORE = dict(frames=3, height=8, width=12, text_tokens=20, text_valid=20,
                   text_position="before")  # N = 308
VIDEO = dict(frames=4, height=6, width=10)  # N = 240

MODDIT_STEPS = 8  # warm-up 3, interval 2: dense, record x2, sparse x2, refresh, sparse, refresh

SCENARIOS = {
    2: [
        Scenario("dense_ulysses2", TEXT_AFTER, "dense", ulysses=2, batch=2),
        Scenario("moddit_ulysses2", TEXT_BEFORE, "moddit", ulysses=2, sharding="padded",
                 steps=MODDIT_STEPS, calls_per_step=2, seed=1),
        Scenario("vdit_ulysses2", TEXT_AFTER, "sparse_vdit", ulysses=2, sharding="text_split",
                 seed=2),
        Scenario("dense_ring2", VIDEO, "dense", ulysses=1, ring=2, seed=3),
        Scenario("vdit_ring2", TEXT_AFTER, "sparse_vdit", ulysses=1, ring=2,
                 sharding="text_joint", batch=2, seed=4),
        Scenario("moddit_ring2", TEXT_BEFORE, "moddit", ulysses=1, ring=2, steps=MODDIT_STEPS,
                 seed=5),
        Scenario("bad_heads2", VIDEO, "dense", ulysses=2, heads=3,
                 expect_error="3 heads cannot be split over 2 ranks"),
        Scenario("bad_rows2", TEXT_AFTER, "dense", ulysses=2, bad_rows_on=1,
                 expect_error="q has 141 rows on sequence-parallel rank 1"),
    ],
    4: [
        Scenario("dense_ulysses4", TEXT_AFTER, "dense", ulysses=4, sharding="padded", batch=2,
                 seed=6),
        Scenario("moddit_ulysses4", TEXT_BEFORE, "moddit", ulysses=4, sharding="text_split",
                 steps=MODDIT_STEPS, calls_per_step=2, seed=7),
        Scenario("vdit_hybrid4", TEXT_AFTER, "sparse_vdit", ulysses=2, ring=2, seed=8),
        Scenario("moddit_hybrid4", TEXT_AFTER, "moddit", ulysses=2, ring=2, sharding="text_joint",
                 steps=MODDIT_STEPS, seed=9),
        Scenario("dense_ring4", VIDEO, "dense", ulysses=1, ring=4, seed=10),
        # diagonal-only heads: chunks of 60 tokens over 64-token blocks, so only
        # neighbouring members share a live block; the other 6 of 12 transfers are skipped
        Scenario("vdit_diagonal_ring4", VIDEO, "sparse_vdit", ulysses=1, ring=4,
                 config={"only": "diagonal"}, seed=11),
        Scenario("bad_moddit_ring4", VIDEO, "moddit", ulysses=2, ring=2, heads=6,
                 expect_error="6 heads cannot be split over 4 ranks: MOD-DiT records its maps"),
    ],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_results = {}


def run_world(world: int, out_dir: str, deadline_s: float = 300.0, scenarios=None,
              backend: str = "gloo"):
    scenarios = SCENARIOS[world] if scenarios is None else scenarios
    ctx = tmp.start_processes(worker, args=(world, _free_port(), scenarios, out_dir, backend),
                              nprocs=world, join=False, start_method="spawn")
    end = time.time() + deadline_s
    while not ctx.join(timeout=max(1.0, end - time.time())):
        if time.time() > end:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail(f"{world} processes did not finish within {deadline_s:.0f} s (a hang)")


def results(world: int, tmp_path_factory):
    if world not in _results:
        out = str(tmp_path_factory.mktemp(f"parallel{world}"))
        run_world(world, out)
        _results[world] = out
    return _results[world]


def assemble(s: Scenario, per_rank, call: int) -> torch.Tensor:
    """The canonical output of one call from every rank's rows; rows a token has
    on several ranks must agree (to round-off), padding rows must be zero."""
    tokens = token_layout(s)
    sharding = sharding_of(s, tokens)
    full = None
    for rank, res in enumerate(per_rank):
        out = res["outs"][call]
        rows = torch.from_numpy(sharding.rows_of(rank))
        assert out.shape[1] == rows.numel()
        if full is None:
            full = torch.full((out.shape[0], tokens.total_tokens, *out.shape[2:]), float("nan"))
        pad = rows < 0
        assert torch.all(out[:, pad] == 0), f"rank {rank}: padding rows are not zero"
        real = rows[~pad]
        have = ~torch.isnan(full[:, real, 0, 0]).any(0)
        if have.any():  # a token another rank holds too (text kept whole): a ring
            # member merges its chunks in its own order, so round-off may differ
            scale = out.abs().max().item()
            torch.testing.assert_close(out[:, ~pad][:, have], full[:, real[have]], rtol=0,
                                       atol=(2e-6 if s.device == "cpu" else 1e-2) * scale)
        full[:, real] = out[:, ~pad]
    assert not torch.isnan(full).any()
    return full


@pytest.mark.parametrize("world,name", [(w, s.name) for w in SCENARIOS for s in SCENARIOS[w]])
def test_parallel_matches_one_process(world, name, tmp_path_factory):
    s = next(x for x in SCENARIOS[world] if x.name == name)
    check_scenario(s, results(world, tmp_path_factory), rel_tol=2e-6)


def check_scenario(s: Scenario, out_dir: str, rel_tol: float) -> None:
    """Every rank's outputs against one process's, or the expected error on every rank."""
    world, name = s.world, s.name
    per_rank = [torch.load(os.path.join(out_dir, f"{name}.rank{r}.pt")) for r in range(world)]
    if s.expect_error:
        for r, res in enumerate(per_rank):
            assert "error" in res, f"rank {r} did not refuse the call"
            assert s.expect_error in res["error"], f"rank {r}: {res['error']}"
            assert "\n" not in res["error"]
        return
    for r, res in enumerate(per_rank):
        assert "error" not in res, f"rank {r}: {res['error']}"
    calls = [c for res in per_rank for c in res["calls"]]
    if s.policy == "moddit":
        assert {c["kind"] for c in calls} == {"dense", "record", "sparse", "refresh"}
    if s.ring > 1:
        assert any(c["ring"] for c in calls)
        if s.policy == "moddit":  # sparse calls in the ring, the rest under Ulysses
            assert all(c["ring"] == (c["kind"] == "sparse") for c in calls)
    if name == "vdit_diagonal_ring4":
        per_call = len(calls) // world
        assert sum(c["skipped"] for c in calls) == 6 * per_call
        assert sum(c["received"] for c in calls) == 6 * per_call
    ref = reference(s)
    assert len(per_rank[0]["outs"]) == len(ref)
    for call, want in enumerate(ref):
        got = assemble(s, per_rank, call)
        scale = want.abs().max().item()
        err = (got - want).abs().max().item()
        assert err <= rel_tol * scale, f"call {call}: max |diff| {err:.3g} (max |out| {scale:.3g})"
