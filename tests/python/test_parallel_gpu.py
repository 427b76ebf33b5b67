"""Sequence parallelism through moddit's CUDA backend (bf16) on one GPU: world
size 1 with NCCL (the NCCL plumbing: groups, the call check, the device
layouts of the GPU MOD-DiT step brought back for the ring), and 2 processes
sharing the GPU through gloo (CUDA tensors staged through host memory: Ulysses,
ring, MOD-DiT with every call kind, Sparse-vDiT), against one process. NCCL
refuses two ranks on one GPU; that case is tried and skipped when it does.
Skipped without a GPU."""
from __future__ import annotations

import pytest
import torch

from conftest import needs_cuda
from parallel_cases import Scenario
from test_parallel import TEXT_AFTER, TEXT_BEFORE, VIDEO, MODDIT_STEPS, check_scenario, run_world

pytestmark = [needs_cuda, pytest.mark.gpu]

BF16_TOL = 2e-2  # bf16 outputs; the ring merges bf16 partials in fp32

ONE = [
    Scenario("gpu_nccl1_moddit", TEXT_AFTER, "moddit", ulysses=1, head_dim=64, device="cuda",
             steps=MODDIT_STEPS, calls_per_step=2, seed=21),
    Scenario("gpu_nccl1_vdit", TEXT_BEFORE, "sparse_vdit", ulysses=1, head_dim=128,
             device="cuda", seed=22),
]
TWO = [
    Scenario("gpu_gloo2_dense_ulysses", TEXT_AFTER, "dense", ulysses=2, head_dim=128,
             device="cuda", batch=2, seed=23),
    Scenario("gpu_gloo2_moddit_ulysses", TEXT_BEFORE, "moddit", ulysses=2, head_dim=64,
             sharding="padded", device="cuda", steps=MODDIT_STEPS, calls_per_step=2, seed=24),
    Scenario("gpu_gloo2_moddit_ring", VIDEO, "moddit", ulysses=1, ring=2, head_dim=128,
             device="cuda", steps=MODDIT_STEPS, seed=25),
    Scenario("gpu_gloo2_vdit_ring", TEXT_AFTER, "sparse_vdit", ulysses=1, ring=2, head_dim=64,
             sharding="text_joint", device="cuda", seed=26),
]


@pytest.fixture(scope="module")
def one_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("gpu_nccl1"))
    run_world(1, out, scenarios=ONE, backend="nccl")
    return out


@pytest.fixture(scope="module")
def two_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("gpu_gloo2"))
    run_world(2, out, scenarios=TWO, backend="gloo")
    return out


@pytest.mark.parametrize("name", [s.name for s in ONE])
def test_nccl_world_size_one(name, one_dir):
    check_scenario(next(s for s in ONE if s.name == name), one_dir, rel_tol=BF16_TOL)


@pytest.mark.parametrize("name", [s.name for s in TWO])
def test_two_processes_share_one_gpu_through_gloo(name, two_dir):
    check_scenario(next(s for s in TWO if s.name == name), two_dir, rel_tol=BF16_TOL)


def test_two_nccl_processes_on_one_gpu_where_nccl_allows(tmp_path):
    if torch.cuda.device_count() >= 2:
        pytest.skip("two GPUs: the multi-GPU scripts cover NCCL across devices")
    s = Scenario("gpu_nccl2_shared", TEXT_AFTER, "dense", ulysses=2, head_dim=128, device="cuda",
                 seed=27)
    try:
        run_world(2, str(tmp_path), scenarios=[s], backend="nccl", deadline_s=120)
    except Exception as e:  # noqa: BLE001 (NCCL's refusal surfaces as a worker failure)
        pytest.skip(f"NCCL does not run two ranks on one GPU here: {str(e).splitlines()[-1]}")
    import os
    res = torch.load(os.path.join(str(tmp_path), f"{s.name}.rank0.pt"))
    if "error" in res and ("Duplicate GPU" in res["error"] or "nccl" in res["error"].lower()):
        pytest.skip("NCCL does not run two ranks on one GPU: " + res["error"].splitlines()[-1])
    check_scenario(s, str(tmp_path), rel_tol=BF16_TOL)
