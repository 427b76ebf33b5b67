#!/usr/bin/env python3
"""GPU stress run of host layouts that change on every call, at moddit-tiny's
shape (16 frames x 24 x 32 tokens, 96 x 96 blocks of 128, 3 heads x 128, a
batch of 32 = 16 videos x 2 CFG branches), through a Session and a Python
policy exactly as the quality evaluation's oracle and SVG-style baselines run:
a new layout per call (oracle-like: random top-density blocks per head) or one
of the per-head spatial/temporal combinations (SVG-like, so the layout cache
both hits and misses).

After every call it waits for the GPU under a watchdog (--stall-seconds): a
kernel that does not finish ends the run (faulthandler: exit 1) with every thread's stack
(the Hopper kernel's stall of docs/LOG.md, 2026-12-03). Every --check-every
calls it compares sampled query rows with a masked fp32 reference (exit 1
beyond --tolerance, rel_l2).

    python3 scripts/stress_host_layouts.py --calls 400          # MODDIT_CUDA_KERNEL picks the kernel
"""
from __future__ import annotations

import argparse
import faulthandler
import sys
import time

import torch

import moddit
from moddit import _moddit as _C


class ChangingLayouts(moddit.PythonPolicy):
    def __init__(self, density: float, mode: str, seed: int):
        super().__init__()
        self.density, self.mode = density, mode
        self.gen = torch.Generator(device="cuda").manual_seed(seed)
        self.svg = None
        self.last_masks = None
        self.calls = 0

    def name(self) -> str:
        return f"stress-{self.mode}"

    def masks(self, call) -> torch.Tensor:
        n = call.grid.num_blocks
        B, H = call.batch, call.num_heads
        mode = self.mode if self.mode != "mixed" else ("oracle", "svg")[self.calls % 2]
        if mode == "oracle":  # the oracle's shape of layout: new blocks every call
            keep = max(1, round(self.density * n * n))
            score = torch.rand(B, H, n * n, device="cuda", generator=self.gen)
            m = torch.zeros(B, H, n * n, dtype=torch.bool, device="cuda")
            m.scatter_(2, score.topk(keep, dim=2).indices, True)
            return m.view(B, H, n, n)
        if self.svg is None:
            s, t = _C.svg_video_masks(call.tokens, call.grid, self.density)
            self.svg = (torch.from_numpy(s.copy()).bool().cuda(), torch.from_numpy(t.copy()).bool().cuda())
        pick = torch.rand(H, device="cuda", generator=self.gen) < 0.4
        per_head = torch.where(pick[:, None, None], self.svg[1][None], self.svg[0][None])
        return per_head[None].expand(B, H, n, n)

    def plan(self, call):
        masks = self.masks(call)
        self.last_masks = masks
        self.calls += 1
        arr = masks.to(torch.uint8).cpu().numpy()
        plan = moddit.Plan()
        plan.kind = moddit.CallKind.SPARSE
        plan.groups = [moddit.HeadGroup(list(range(call.num_heads)),
                                        moddit.layout_from_video_masks(arr, call.grid), self.mode)]
        return plan


def reference_rows(q, k, v, masks, block, rows):
    """fp32 attention of the sampled query rows under the block masks (diagonal
    kept, as moddit's layout builder does)."""
    B, N, H, D = q.shape
    qb = rows // block
    kb = torch.arange(N, device=q.device) // block
    m = masks[:, :, qb][:, :, :, kb].clone()                         # [B, H, S, N]
    m |= (qb[:, None] == kb[None, :])[None, None]
    s = torch.einsum("bshd,bnhd->bhsn", q[:, rows].float(), k.float()) * D ** -0.5
    s = s.masked_fill(~m, float("-inf"))
    return torch.einsum("bhsn,bnhd->bshd", torch.softmax(s, -1), v.float())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--density", type=float, default=0.15)
    ap.add_argument("--mode", choices=("oracle", "svg", "mixed"), default="mixed")
    ap.add_argument("--stall-seconds", type=float, default=30.0)
    ap.add_argument("--check-every", type=int, default=50)
    ap.add_argument("--tolerance", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not torch.cuda.is_available() or not moddit.cuda_available():
        print("stress_host_layouts: needs a CUDA device and moddit built with CUDA", file=sys.stderr)
        return 3
    tokens = moddit.TokenLayout(frames=16, height=24, width=32)
    H, D, block = 3, 128, 128
    N = tokens.frames * tokens.height * tokens.width
    pol = ChangingLayouts(a.density, a.mode, a.seed)
    steps = (a.calls + a.layers - 1) // a.layers
    s = moddit.Session(tokens, pol, device="cuda", num_steps=steps, num_layers=a.layers,
                       num_heads=H, head_dim=D, block_size=block)
    g = torch.Generator(device="cuda").manual_seed(a.seed + 1)
    qkv = [torch.randn(a.batch, N, H, D, device="cuda", generator=g).to(torch.bfloat16)
           for _ in range(3)]
    rows = torch.arange(block // 2, N, N // 64, device="cuda")
    t0, worst, call = time.time(), 0.0, 0
    for step in range(steps):
        s.begin_step(step)
        for layer in range(a.layers):
            if call == a.calls:
                break
            faulthandler.dump_traceback_later(a.stall_seconds, exit=True)
            out = s.attention(layer, *qkv)
            torch.cuda.synchronize()
            faulthandler.cancel_dump_traceback_later()
            if call % a.check_every == 0 or call == a.calls - 1:
                ref = reference_rows(*qkv, pol.last_masks, block, rows)
                got = out[:, rows].float()
                err = float((got - ref).norm() / ref.norm())
                worst = max(worst, err)
                finite = bool(torch.isfinite(got).all())
                print(f"call {call}: step {step} layer {layer} rel_l2 {err:.2e} finite {finite} "
                      f"({time.time() - t0:.1f} s)", flush=True)
                if not finite or err > a.tolerance:
                    print(f"stress_host_layouts: FAILED at call {call}: rel_l2 {err:.3e}", flush=True)
                    return 1
            call += 1
    print(f"stress_host_layouts: {call} calls ({a.mode}, density {a.density}, batch {a.batch}) "
          f"finished in {time.time() - t0:.1f} s, worst sampled rel_l2 {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
