#!/usr/bin/env python3
"""GPU stall check of whole MOD-DiT runs on moddit-tiny at the quality
evaluation's shape (16 videos x 2 CFG branches = a batch of 32, 16 frames x 24 x
32 tokens, 96 x 96 blocks of 128, 50 UniPC steps), through moddit.diffusers
exactly as scripts/quality.py runs MOD-DiT: dense warm-up on SDPA, the record,
sparse and refresh steps on moddit's kernels and GPU MOD-DiT step.

After every denoising step it waits for the GPU and prints the step; a step that
does not finish within --stall-seconds ends the run (faulthandler: every thread's
stack, exit 1), so the last printed step names where the stall is. Each --runs
run uses new seeds. The kernel is MODDIT_CUDA_KERNEL's (auto | sm80), the Hopper
map pass's count MODDIT_CUDA_MAP_COUNT's (auto | compare), so an A/B is three
invocations (docs/LOG.md, 2026-12-03 evening).

    python3 scripts/stress_moddit_run.py --runs 2
    MODDIT_CUDA_MAP_COUNT=compare python3 scripts/stress_moddit_run.py
"""
from __future__ import annotations

import argparse
import faulthandler
import os
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/moddit-tiny")
    p.add_argument("--videos", type=int, default=16, help="videos per run (x 2 CFG branches)")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--density", type=float, default=0.15, help="MOD-DiT target_density")
    p.add_argument("--stall-seconds", type=float, default=30.0)
    args = p.parse_args(argv)

    import torch
    import moddit.diffusers as md
    from moddit.tiny import NUM_FAMILIES, load_tiny

    if not torch.cuda.is_available():
        print("stress_moddit_run: needs a CUDA GPU", file=sys.stderr)
        return 2
    pipe = load_tiny(args.model, device="cuda", dtype=torch.bfloat16)
    md.enable(pipe, policy="moddit", dense_calls="sdpa", block_size=128,
              target_density=args.density)
    print(f"stress_moddit_run: kernel {os.environ.get('MODDIT_CUDA_KERNEL') or 'auto'}, map count "
          f"{os.environ.get('MODDIT_CUDA_MAP_COUNT') or 'auto'}, {args.videos} videos, "
          f"{args.steps} steps, density {args.density}", flush=True)
    for run in range(args.runs):
        t0 = time.time()

        def after_step(_pipe, i, _t, _kw):
            torch.cuda.synchronize()  # a stalled kernel stops here, under the watchdog
            faulthandler.cancel_dump_traceback_later()
            print(f"  run {run + 1} step {i + 1}/{args.steps} finished, {time.time() - t0:.1f} s",
                  flush=True)
            faulthandler.dump_traceback_later(args.stall_seconds, exit=True)
            return {}

        faulthandler.dump_traceback_later(args.stall_seconds, exit=True)
        ids = [(run * args.videos + i) % NUM_FAMILIES for i in range(args.videos)]
        seeds = [run * args.videos + i for i in range(args.videos)]
        pipe(ids, seeds=seeds, num_inference_steps=args.steps, callback_on_step_end=after_step)
        torch.cuda.synchronize()
        faulthandler.cancel_dump_traceback_later()
        print(f"stress_moddit_run: run {run + 1} finished in {time.time() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
