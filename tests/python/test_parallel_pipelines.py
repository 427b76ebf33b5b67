"""moddit's attention in sequence-parallel pipelines, on 2 gloo processes (CPU):
diffusers' context parallelism (Ulysses; ring, with moddit enabled before
enable_parallelism) on Wan, and xDiT (xfuser) on Wan (its sequence padded to a
multiple of the ranks) and HunyuanVideo (text split over the ranks, or whole on
each when its length does not divide). The transformer's output on 2 processes
equals the same model's on one process with moddit on one device, per step of
a short schedule (MOD-DiT: every call kind)."""
from __future__ import annotations

import os
import time

import pytest
import torch
import torch.multiprocessing as tmp

from conftest import needs_diffusers
from test_parallel import _free_port

pytestmark = needs_diffusers

try:
    import xfuser  # noqa: F401
    HAS_XFUSER = True
except Exception:  # noqa: BLE001 (any import failure: not usable here)
    HAS_XFUSER = False

NAMES = ["diffusers_wan_dense_ulysses", "diffusers_wan_moddit_ring_enable_first"]
if HAS_XFUSER:
    NAMES += ["xdit_wan_dense_padded", "xdit_wan_moddit_padded", "xdit_hunyuan_dense_text_split",
              "xdit_hunyuan_moddit_text_joint"]
_out = {}


def _results(tmp_path_factory, deadline_s: float = 300.0):
    if "dir" not in _out:
        from parallel_pipelines import worker

        out = str(tmp_path_factory.mktemp("pipelines"))
        ctx = tmp.start_processes(worker, args=(2, _free_port(), NAMES, out), nprocs=2,
                                  join=False, start_method="spawn")
        end = time.time() + deadline_s
        while not ctx.join(timeout=max(1.0, end - time.time())):
            if time.time() > end:
                for p in ctx.processes:
                    if p.is_alive():
                        p.kill()
                pytest.fail(f"the pipeline workers did not finish within {deadline_s:.0f} s")
        _out["dir"] = out
    return _out["dir"]


@pytest.mark.parametrize("name", NAMES)
def test_pipeline_on_two_ranks_matches_one(name, tmp_path_factory):
    out = _results(tmp_path_factory)
    for rank in range(2):
        res = torch.load(os.path.join(out, f"{name}.rank{rank}.pt"))
        assert "error" not in res, f"rank {rank}: {res['error']}"
        if "moddit" in name:
            assert res["kinds"] == ["dense", "record", "refresh", "sparse"]
        for step, (ref, got) in enumerate(res["outs"]):
            err = float((got - ref).norm() / ref.norm())
            assert err < 1e-5, f"rank {rank} step {step}: relative error {err:.3g}"
