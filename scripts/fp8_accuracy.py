#!/usr/bin/env python3
"""Precision FP8's accuracy on a trajectory: for every recorded (step, layer),
dense attention with precision="fp8" against exact fp32 attention on the same
Q, K, V: relative L2 error and cosine similarity of the output, and the exact
sparsity map's change (sum |count_fp8 - count_exact| / sum count_exact, eta as
MOD-DiT's default). Runs on the CPU backend (the emulation of the GPU's FP8
kernels, which the GPU tests hold to the emulation within the output's bf16
rounding), or on CUDA with --device cuda.

    python3 scripts/fp8_accuracy.py trajectory.safetensors
    python3 scripts/fp8_accuracy.py --synthetic          # the procedural demo trajectory
"""
import argparse
import json
import os

import numpy as np

import moddit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trajectory", nargs="?", help="a moddit trajectory file (moddit.diffusers.record)")
    ap.add_argument("--synthetic", action="store_true", help="the default synthetic trajectory instead")
    ap.add_argument("--steps", default="", help="comma-separated steps (default: every recorded step)")
    ap.add_argument("--eta", type=float, default=1e-4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if args.synthetic:
        src, label = moddit.make_synthetic(moddit.SyntheticSpec()), "synthetic (default spec)"
    else:
        src, label = moddit.open_trajectory(args.trajectory), args.trajectory
    info = src.info
    steps = [int(s) for s in args.steps.split(",")] if args.steps else list(info.steps)
    print(f"trajectory: {label}: {info}")
    print(f"{'step':>4} {'layer':>5} {'rel_l2':>8} {'cosine':>9} {'map_rel':>8} {'lse_max':>8}")
    rows = []
    for step in steps:
        for layer in info.layers:
            q, k, v = src.load(step, layer)
            if args.device != "cpu":
                import torch
                q, k, v = (torch.from_numpy(x).to(args.device, torch.bfloat16) for x in (q, k, v))
            res = {}
            for prec in ("exact", "fp8"):
                out, lse, counts = moddit.attention(q, k, v, info.tokens, return_lse=True, return_map=True,
                                                    eta=args.eta, precision=prec)
                if args.device != "cpu":
                    out, lse, counts = out.float().cpu().numpy(), lse.cpu().numpy(), counts.cpu().numpy()
                res[prec] = (np.asarray(out, np.float64), np.asarray(lse), np.asarray(counts))
            (o8, l8, c8), (ox, lx, cx) = res["fp8"], res["exact"]
            rel = float(np.linalg.norm(o8 - ox) / np.linalg.norm(ox))
            cos = float((o8 * ox).sum() / np.sqrt((o8 * o8).sum() * (ox * ox).sum()))
            live = cx >= 0
            map_rel = float(np.abs(c8[live] - cx[live]).sum() / max(cx[live].sum(), 1))
            fin = np.isfinite(lx)
            lse_max = float(np.abs(l8[fin] - lx[fin]).max())
            print(f"{step:4d} {layer:5d} {rel:8.4f} {cos:9.6f} {map_rel:8.4f} {lse_max:8.4f}", flush=True)
            rows.append(dict(step=step, layer=layer, rel_l2=rel, cosine=cos, map_rel=map_rel, lse_max=lse_max))
    rel = np.array([r["rel_l2"] for r in rows])
    cos = np.array([r["cosine"] for r in rows])
    mp = np.array([r["map_rel"] for r in rows])
    print(f"over {len(rows)} calls: rel_l2 median {np.median(rel):.4f} max {rel.max():.4f}; cosine median "
          f"{np.median(cos):.6f} min {cos.min():.6f}; map change median {np.median(mp):.4f} max {mp.max():.4f}")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(trajectory=label, info=str(info), device=args.device, rows=rows), f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
