"""Scenarios of the sequence-parallel tests (test_parallel.py): each runs a short
denoising schedule on P gloo processes (moddit's CPU backend) and on one
process, from the same inputs, and the outputs are compared. Imported by the
spawned workers, so it holds everything they need."""
from __future__ import annotations

import datetime
import json
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

import moddit
from moddit.parallel import Groups, ParallelSession, Sharding


@dataclass
class Scenario:
    name: str
    tokens: Dict[str, Any]          # TokenLayout keywords
    policy: str                     # "dense", "moddit", "sparse_vdit"
    ulysses: int
    ring: int = 1
    sharding: str = "chunked"       # "chunked", "padded", "text_split", "text_joint"
    heads: int = 4
    batch: int = 1
    calls_per_step: int = 1         # 2: CFG as two calls per step
    steps: int = 2
    layers: int = 2
    config: Dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    expect_error: Optional[str] = None  # every rank must raise a moddit.Error containing it
    bad_rows_on: Optional[int] = None   # this rank passes one row too few
    head_dim: int = 32
    device: str = "cpu"                 # "cuda": moddit's CUDA backend, bf16

    @property
    def world(self) -> int:
        return self.ulysses * self.ring


BLOCK = 64
MODDIT_CFG = dict(warmup_steps=3, interval=2, target_density=0.45)  # block size: BLOCK


def token_layout(s: Scenario) -> moddit.TokenLayout:
    return moddit.TokenLayout(**s.tokens)


def sharding_of(s: Scenario, tokens: moddit.TokenLayout) -> Sharding:
    N, P = tokens.total_tokens, s.world
    if s.sharding == "chunked":
        return Sharding.chunked(N, P)
    if s.sharding == "padded":
        return Sharding.padded(N, P)
    return Sharding.video_and_text(tokens.video_tokens, tokens.text_tokens, P,
                                   tokens.text_position, split_text=s.sharding == "text_split")


def vdit_config(tokens: moddit.TokenLayout, heads: int, head_dim: int, steps: int, layers: int,
                only: Optional[str] = None) -> moddit.VditConfig:
    """A hand-made Sparse-vDiT config with every mode (what `moddit search`
    writes), or every head in mode `only` ("diagonal": window 0)."""
    grid = moddit.make_block_grid(tokens, BLOCK)
    n = grid.num_video_blocks
    modes = [{"mode": "full"}, {"mode": "diagonal", "window": 1}, {"mode": "skip"},
             {"mode": "multi_diagonal", "window": 16}, {"mode": "vertical_stripe",
                                                         "stripes": [0, n - 1]}]
    if only == "diagonal":
        modes = [{"mode": "diagonal", "window": 0}]
    layer_choices = [[modes[(h + l) % len(modes)] for h in range(heads)] for l in range(layers)]
    data = {
        "format": "moddit.sparse_vdit", "version": 1,
        "model": {"num_layers": layers, "num_heads": heads, "head_dim": head_dim, "num_steps": steps},
        "tokens": {"frames": tokens.frames, "height": tokens.height, "width": tokens.width,
                   "text_tokens": tokens.text_tokens, "text_valid": tokens.text_valid,
                   "text_position": tokens.text_position},
        "block_size": BLOCK,
        "steps": [{"step": 0, "layers": layer_choices}],
    }
    return moddit.VditConfig.from_json(json.dumps(data))


def policy_args(s: Scenario, tokens: moddit.TokenLayout):
    if s.policy == "moddit":
        return "moddit", None, dict(MODDIT_CFG, **s.config)
    if s.policy == "sparse_vdit":
        return "sparse_vdit", vdit_config(tokens, s.heads, s.head_dim, s.steps, s.layers,
                                          s.config.get("only")), {}
    return s.policy, None, {}


def inputs(s: Scenario, step: int, layer: int, call: int, N: int):
    """Full-sequence q, k, v [B, N, H, D] of one call (the same in every process),
    on the scenario's device (bf16 on CUDA)."""
    g = torch.Generator().manual_seed(hash((s.seed, step, layer, call)) % (2 ** 31))
    shape = (s.batch, N, s.heads, s.head_dim)
    dtype = torch.bfloat16 if s.device == "cuda" else torch.float32
    return tuple((torch.randn(shape, generator=g) * (1.5 if i < 2 else 1.0)).to(s.device, dtype)
                 for i in range(3))


def reference(s: Scenario) -> List[torch.Tensor]:
    """One process, all heads: the outputs of every call in order."""
    moddit.set_cpu_threads(1)
    tokens = token_layout(s)
    policy, config, kw = policy_args(s, tokens)
    sess = moddit.Session(tokens, policy, device=s.device, num_steps=s.steps,
                          num_layers=s.layers, num_heads=s.heads, head_dim=s.head_dim,
                          block_size=BLOCK, config=config, **kw)
    outs = []
    for step in range(s.steps):
        sess.begin_step(step)
        for layer in range(s.layers):
            for call in range(s.calls_per_step):
                q, k, v = inputs(s, step, layer, call, tokens.total_tokens)
                outs.append(sess.attention(layer, q, k, v).float().cpu())
    return outs


def local_rows(full: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a full-sequence tensor (padding rows: noise, which
    must not reach any output)."""
    pad = (torch.randn(full.shape[0], 1, *full.shape[2:]) * 7.0).to(full.device, full.dtype)
    src = torch.cat([full, pad], dim=1)
    rows = rows.to(full.device)
    idx = torch.where(rows >= 0, rows, torch.full_like(rows, full.shape[1]))
    return src.index_select(1, idx)


def run_parallel(s: Scenario, groups: Groups):
    """This rank's output rows of every call, and the session's call records."""
    tokens = token_layout(s)
    sharding = sharding_of(s, tokens)
    rows = torch.from_numpy(sharding.rows_of(groups.sp_rank))
    policy, config, kw = policy_args(s, tokens)
    sess = ParallelSession(tokens, sharding, groups, policy, device=s.device, num_steps=s.steps,
                           num_layers=s.layers, num_heads=s.heads, head_dim=s.head_dim,
                           block_size=BLOCK, config=config, **kw)
    outs = []
    for step in range(s.steps):
        sess.begin_step(step)
        for layer in range(s.layers):
            for call in range(s.calls_per_step):
                q, k, v = (local_rows(t, rows) for t in inputs(s, step, layer, call,
                                                               tokens.total_tokens))
                if s.bad_rows_on == groups.sp_rank:
                    q, k, v = q[:, 1:], k[:, 1:], v[:, 1:]
                outs.append(sess.attention(layer, q, k, v).float().cpu())
    return outs, sess.calls


def worker(rank: int, world: int, port: int, scenarios: List[Scenario], out_dir: str,
           backend: str = "gloo") -> None:
    """One rank: every scenario in order, its outputs (or error) saved per rank.
    backend "nccl" needs one GPU per rank; "gloo" runs CPU and CUDA tensors
    (CUDA ones staged through host memory: ranks may share a GPU)."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    moddit.set_cpu_threads(1)
    if torch.cuda.is_available():
        torch.cuda.set_device(rank % torch.cuda.device_count())
    torch.distributed.init_process_group(backend, rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=60))
    try:
        cache: Dict[Any, Groups] = {}
        for s in scenarios:
            key = (s.ulysses, s.ring)
            if key not in cache:
                cache[key] = Groups.from_degrees(s.ulysses, s.ring)
            result: Dict[str, Any] = {}
            try:
                result["outs"], result["calls"] = run_parallel(s, cache[key])
            except moddit.Error as e:
                result["error"] = str(e)
            except Exception:  # noqa: BLE001 (reported to the test)
                result["error"] = "unexpected: " + traceback.format_exc()
            torch.save(result, os.path.join(out_dir, f"{s.name}.rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()
