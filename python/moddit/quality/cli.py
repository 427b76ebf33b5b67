"""Command line of the quality evaluation (scripts/quality.py,
`python -m moddit.quality`)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional


def _floats(text: str) -> List[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> List[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moddit-quality",
        description="PSNR / SSIM of moddit-tiny's videos with every block-sparse policy against "
                    "dense attention, at equal measured density, plus the sweeps that set "
                    "MOD-DiT's defaults and the model's attention statistics.")
    p.add_argument("--model", default="models/moddit-tiny", help="moddit-tiny model folder")
    p.add_argument("--out-dir", default="reports/quality", help="results, statistics, PNGs, log")
    p.add_argument("--budget-seconds", type=float, default=330.0,
                   help="wall time for everything; runs that would not fit are skipped")
    p.add_argument("--smoke", action="store_true",
                   help="the whole path on the CPU at the small size (4 x 8 x 8 tokens, block "
                        "64), 3 pairs, 8 steps")
    p.add_argument("--device", default=None, help="cuda (default) or cpu")
    p.add_argument("--pairs", type=int, default=None, help="evaluated (prompt, seed) pairs")
    p.add_argument("--steps", type=int, default=None, help="denoising steps")
    p.add_argument("--densities", type=_floats, default=None, help="main table, e.g. 0.15,0.2")
    p.add_argument("--extra-densities", type=_floats, default=None, help="e.g. 0.1,0.3")
    p.add_argument("--sweep-warmups", type=_ints, default=None, help="e.g. 6,2,4,8")
    p.add_argument("--sweep-sparse-warmups", type=_ints, default=None,
                   help="sparse_warmup_steps values swept at the sweep density, e.g. 4,8,10 "
                        "(the default); empty: none")
    p.add_argument("--calib-pairs", type=int, default=None)
    p.add_argument("--calib-steps", type=_ints, default=None, help="recorded steps, e.g. 12,30")
    p.add_argument("--shadow-items", type=int, default=None,
                   help="videos per call measured for recall / rel_l2")
    p.add_argument("--scratch", default=None, help="folder for the calibration trajectory")
    p.add_argument("--no-extras", action="store_true", help="skip the dense-kernel floor run")
    p.add_argument("--no-summary", action="store_true", help="no summary table at the end")
    p.add_argument("--print-summary", metavar="RESULTS_JSON",
                   help="only print the summary table of a results file")
    return p


def summary_lines(results: dict) -> List[str]:
    """The short summary: one line per run, grouped by target density."""
    runs = results.get("runs", {})
    meta = results.get("meta", {})
    lines = [f"quality: {meta.get('what', '')[:60]}... on {meta.get('device')}, "
             f"{meta.get('tokens')}, {len(meta.get('pairs', []))} pairs"]
    lines.append(f"{'run':<44} {'density':>8} {'PSNR dB':>8} {'SSIM':>7} {'recall':>7} "
                 f"{'rel_l2':>7}")
    for name, r in runs.items():
        if name == "dense":
            continue
        if "psnr_mean" not in r:   # a dense reference of a subset (the sweeps')
            lines.append(f"{name:<44} {1.0:>8.3f} {r.get('psnr_vs_full_batch_mean', float('nan')):>8.2f}"
                         "  (dense, against the same videos in the full batch)")
            continue
        sh = r.get("shadow", {})
        dens = r.get("achieved_density")
        lines.append(f"{name:<44} {dens if dens is not None else float('nan'):>8.3f} "
                     f"{r['psnr_mean']:>8.2f} {r['ssim_mean']:>7.4f} "
                     f"{sh.get('recall', float('nan')):>7.3f} {sh.get('rel_l2', float('nan')):>7.3f}")
    if results.get("skipped"):
        lines.append(f"skipped {len(results['skipped'])}: " + ", ".join(
            s["name"] for s in results["skipped"]))
    for k, v in results.get("errors", {}).items():
        lines.append(f"error {k}: {str(v).splitlines()[0]}")
    lines.append(f"elapsed {results.get('elapsed_seconds')} s")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    import time

    started = time.perf_counter()   # the budget includes importing torch and diffusers
    args = parser().parse_args(argv)
    if args.print_summary:
        with open(args.print_summary) as f:
            print("\n".join(summary_lines(json.load(f))))
        return 0
    from .run import Settings, evaluate, smoke_settings

    kw = {"command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]), "started": started}
    for name in ("device", "pairs", "steps", "densities", "extra_densities", "sweep_warmups",
                 "sweep_sparse_warmups", "calib_pairs", "calib_steps", "shadow_items", "scratch"):
        value = getattr(args, name)
        if value is not None:
            kw[name] = tuple(value) if isinstance(value, list) else value
    if args.no_extras:
        kw["extras"] = False
    if args.smoke:
        kw.setdefault("budget_seconds", 1e9)
        settings = smoke_settings(args.model, args.out_dir, **kw)
        if args.budget_seconds != 330.0:
            settings.budget_seconds = args.budget_seconds
    else:
        settings = Settings(model=args.model, out_dir=args.out_dir,
                            budget_seconds=args.budget_seconds, **kw)
    if not os.path.isfile(os.path.join(settings.model, "config.json")):
        print(f"moddit-quality: {settings.model} is not a moddit-tiny model folder (no "
              "config.json)", file=sys.stderr)
        return 2
    results = evaluate(settings)
    if not args.no_summary:
        print("\n".join(summary_lines(results)))
    return 0
