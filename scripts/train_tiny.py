#!/usr/bin/env python3
"""Trains moddit-tiny (a 20M-parameter WanTransformer3DModel) on procedural videos,
saves it as a diffusers model folder and shows what it generates.

    python3 scripts/train_tiny.py --out runs/tiny --minutes 8.75        # GPU, full size
    python3 scripts/train_tiny.py --out /tmp/tiny-smoke --smoke         # CPU, seconds

Writes into --out: train_log.jsonl (one line per 25 steps and per evaluation),
settings.json (every setting, the seed, versions, device, results), loss.png,
samples.png (per prompt: generated frames above frames of a training video of
the same family and seed) and samples.gif (the generated videos); and the model folder --model-dir
(default OUT/moddit-tiny): config.json, bf16 safetensors shards < 15 MiB and
their index, prompt_embeds.safetensors, README.md. The budget --minutes covers
the whole script: training stops early enough for saving and sampling
(--reserve-seconds) to finish inside it. A NaN loss stops the run (exit 3).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

T0 = time.time()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_tiny():
    """moddit.tiny, also where moddit's native module is not built (the GPU
    training machine runs the sources): moddit/__init__ imports the extension
    eagerly, so the package is then entered without running its __init__."""
    try:
        import moddit.tiny
        return moddit.tiny
    except ImportError as e:
        if "_moddit" not in str(e):
            raise
    import importlib
    import importlib.util
    import types

    for name in [m for m in sys.modules if m == "moddit" or m.startswith("moddit.")]:
        del sys.modules[name]
    spec = importlib.util.find_spec("moddit")
    pkg = types.ModuleType("moddit")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__file__ = spec.origin
    sys.modules["moddit"] = pkg
    return importlib.import_module("moddit.tiny")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "moddit-tiny"),
                   help="run folder: log, settings, pictures")
    p.add_argument("--model-dir", default=None, help="model folder (default OUT/moddit-tiny)")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="wall-clock budget of the whole script (0: none; train --steps)")
    p.add_argument("--reserve-seconds", type=float, default=45.0,
                   help="of the budget, kept for saving and sampling after training")
    p.add_argument("--steps", type=int, default=4000, help="the most training steps")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="data, noise and t (the model's init: --model-seed)")
    p.add_argument("--model-seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--size", choices=("full", "small"), default="full",
                   help="full: 16 x 192 x 256 pixels (12 288 tokens); small: 4 x 64 x 64 (256)")
    p.add_argument("--heads", type=int, default=None, help="model override (default 3)")
    p.add_argument("--head-dim", type=int, default=None, help="model override (default 128)")
    p.add_argument("--layers", type=int, default=None, help="model override (default 8)")
    p.add_argument("--ffn", type=int, default=None, help="model override (default 1536)")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--sample-steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--sample-seed", type=int, default=1000,
                   help="samples use seeds sample_seed + prompt id")
    p.add_argument("--smoke", action="store_true",
                   help="a few steps at the small size with a few sampling steps (CPU, seconds)")
    return p.parse_args(argv)


def model_overrides(args):
    keys = {"heads": "num_attention_heads", "head_dim": "attention_head_dim",
            "layers": "num_layers", "ffn": "ffn_dim"}
    return {cfg: getattr(args, a) for a, cfg in keys.items() if getattr(args, a) is not None}


def environment(torch, device):
    import diffusers

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "diffusers": diffusers.__version__, "host": platform.node(), "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    try:
        import skimage
        env["scikit-image"] = skimage.__version__
    except ImportError:
        pass
    return env


def model_card(tiny, result, settings, env, args, files_mb):
    from moddit.tiny.model import CONFIG, SHIFT, num_parameters

    cfg = result.model.config
    fams = "\n".join(f"| {i} | `{f.name}` | {f.description} |" for i, f in enumerate(tiny.FAMILIES))
    final = [h for h in result.history if h.get("event") == "eval"]
    return f"""# moddit-tiny

A small video diffusion transformer trained by moddit's `scripts/train_tiny.py`
on procedural videos (camera motion over scikit-image's sample photographs,
sprites, scene cuts, brightness changes): the project's reference model for
measuring attention sparsity and the quality of sparse attention. A test
harness, not a model of real video: quality numbers measured on it say what
they were measured on.

- **Architecture**: diffusers `WanTransformer3DModel`, {num_parameters(result.model):,} parameters,
  {cfg.num_layers} layers, {cfg.num_attention_heads} heads x {cfg.attention_head_dim}, ffn {cfg.ffn_dim},
  patch {tuple(cfg.patch_size)}, text_dim {cfg.text_dim}, qk_norm {cfg.qk_norm}, Wan's 3D RoPE.
  Weights: bf16 safetensors shards under 15 MiB ({files_mb:.1f} MB in all).
- **Latent**: no VAE; `moddit.tiny.latent`: 4x4 pixel patches, orthonormal colour
  transform and DCT, the 16 lowest frequencies scaled to unit variance.
  16 x 192 x 256 pixels = latent [16, 16, 48, 64] = 16 x 24 x 32 = 12 288 tokens.
- **Prompts**: {len(tiny.FAMILIES)} scene families, one fixed random embedding each
  (16 tokens x {cfg.text_dim}, `prompt_embeds.safetensors`); the null prompt is zeros.

| id | family | scene |
| --- | --- | --- |
{fams}

- **Training**: flow matching as Wan (x_t = (1-t) x0 + t eps, target eps - x0,
  t shifted by {SHIFT}), prompt dropped with p = {settings.cond_drop}; {result.steps_done} steps
  of batch {settings.batch} ({'stopped by the time budget' if result.stopped_by == 'deadline' else 'as planned'}),
  AdamW lr {settings.lr} (warm-up {settings.warmup}, cosine to {settings.min_lr_ratio}x){', bf16 autocast' if env['device'].startswith('cuda') else ', float32'},
  seed {settings.seed}, {result.seconds / 60:.1f} min on {env.get('gpu', env['device'])}, {datetime.date.today()}.
  Validation loss {final[0]['val_loss']:.4f} at step 0 -> {final[-1]['val_loss']:.4f} at the end.
  Command: `{' '.join(sys.argv)}` ({env['torch']} / diffusers {env['diffusers']}).
- **Sampling**: `moddit.tiny.load_tiny(path, device, dtype)` or
  `TinyPipeline.from_pretrained(path, torch_dtype=...)`; `pipe(prompt_ids, seeds)`:
  UniPC (flow prediction, shift {SHIFT}), 50 steps, CFG 5 (two transformer calls per step).
"""


def preflight() -> None:
    """Everything the run needs after training, checked before it: a missing
    package fails in seconds, not after the budget."""
    import accelerate  # noqa: F401  (diffusers loads the saved folder through it)
    import matplotlib  # noqa: F401
    import PIL  # noqa: F401
    from moddit.tiny import data

    data.textures()


def main(argv=None) -> int:
    args = parse_args(argv)
    tiny = import_tiny()
    import torch
    from moddit.tiny import data, latent, pictures
    from moddit.tiny.files import write_text
    from moddit.tiny.model import FULL, SMALL, num_parameters, save_model
    from moddit.tiny.pipeline import load_tiny
    from moddit.tiny.train import Settings, TrainingDiverged, train

    preflight()
    if args.smoke:
        args.size = "small"
        args.steps, args.warmup, args.eval_every = min(args.steps, 12), 4, 6
        args.sample_steps = min(args.sample_steps, 4)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.smoke and device.type == "cpu":
        # Tensors this small gain nothing from threads, and on a busy machine
        # OpenMP's spinning threads make a step many times slower.
        torch.set_num_threads(1)
    frames, height, width = FULL if args.size == "full" else SMALL
    deadline = T0 + args.minutes * 60 - args.reserve_seconds if args.minutes > 0 else 0.0
    settings = Settings(seed=args.seed, steps=args.steps, batch=args.batch, lr=args.lr,
                        warmup=args.warmup, frames=frames, height=height, width=width,
                        model=model_overrides(args), model_seed=args.model_seed,
                        device=str(device), deadline=deadline, eval_every=args.eval_every)
    if args.smoke:
        settings.batch, settings.log_every, settings.eval_videos = min(args.batch, 2), 3, 2
        settings.plan_at = 11
    out = os.path.abspath(args.out)
    model_dir = os.path.abspath(args.model_dir or os.path.join(out, "moddit-tiny"))
    os.makedirs(out, exist_ok=True)
    log_file = os.path.join(out, "train_log.jsonl")
    if os.path.exists(log_file):
        os.remove(log_file)
    env = environment(torch, device)
    record = {"command": sys.argv, "args": vars(args), "environment": env,
              "date": datetime.datetime.now().isoformat(timespec="seconds")}
    write_text(os.path.join(out, "settings.json"), json.dumps(record, indent=2, default=str))
    print(f"== moddit-tiny training on {env.get('gpu', device)}: latent {frames}x{height}x{width}, "
          f"seed {args.seed}, budget {args.minutes or 'none'} min, out {out}", flush=True)

    try:
        result = train(settings, log_file, say=lambda m: print(m, flush=True))
    except TrainingDiverged as e:
        print(f"ERROR: {e}", file=sys.stderr, flush=True)
        return 3

    # The model folder first: it is what the run is for.
    t_save = time.time()
    params = num_parameters(result.model)
    files = save_model(result.model, model_dir, result.prompts)
    files_mb = sum(os.path.getsize(os.path.join(model_dir, f)) for f in files) / 1e6
    write_text(os.path.join(model_dir, "README.md"),
               model_card(tiny, result, settings, env, args, files_mb))
    files = tuple(sorted(os.listdir(model_dir)))
    biggest = max(os.path.getsize(os.path.join(model_dir, f)) for f in files)
    pictures.save_loss_plot(os.path.join(out, "loss.png"), result.history)
    save_seconds = time.time() - t_save

    # Samples from the saved folder (so the folder is what is checked), next to
    # training videos of the same family and seed (through the latent).
    t_sample = time.time()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    pipe = load_tiny(model_dir, device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    ids = list(range(len(tiny.FAMILIES)))
    seeds = [args.sample_seed + i for i in ids]
    gen = pipe(ids, seeds, num_inference_steps=args.sample_steps, guidance_scale=args.guidance,
               frames=frames, height=height, width=width).frames.float().cpu()
    px = data.videos(ids, seeds, frames, height * latent.PATCH, width * latent.PATCH, device=device)
    ref = latent.decode(latent.encode(px)).permute(0, 2, 3, 4, 1).cpu()
    if not torch.isfinite(gen).all():
        print("ERROR: the generated videos hold NaN or inf", file=sys.stderr)
        return 3
    videos, labels = [], []
    for i, fam in enumerate(tiny.FAMILIES):
        videos += [gen[i], ref[i]]
        labels += [f"{i} {fam.name}: generated (seed {seeds[i]}, {args.sample_steps} steps, "
                   f"CFG {args.guidance})", f"{i} {fam.name}: training video (same seed)"]
    # Every third frame (0, 3, .., 15) keeps the PNG under ~7 MB at full size.
    pictures.save_frame_grid(os.path.join(out, "samples.png"), videos, labels,
                             every=3 if frames > 8 else 1)
    pictures.save_gif(os.path.join(out, "samples.gif"), list(gen), columns=4)
    sample_seconds = time.time() - t_sample

    evals = [h for h in result.history if h.get("event") == "eval"]
    trains = [h for h in result.history if h.get("event") == "train"]
    record["results"] = {
        "parameters": params, "steps": result.steps_done, "planned_steps": result.planned_steps,
        "stopped_by": result.stopped_by, "train_seconds": result.seconds,
        "save_seconds": save_seconds, "sample_seconds": sample_seconds,
        "val_loss_start": evals[0]["val_loss"], "val_loss_end": evals[-1]["val_loss"],
        "train_loss_end": trains[-1]["loss"] if trains else None,
        "model_files": list(files), "model_mb": files_mb, "largest_file_bytes": biggest,
        "total_seconds": time.time() - T0}
    write_text(os.path.join(out, "settings.json"), json.dumps(record, indent=2, default=str))
    r = record["results"]
    print(f"== moddit-tiny: {r['steps']} steps ({r['stopped_by']}) in {r['train_seconds'] / 60:.1f} min "
          f"on {env.get('gpu', device)}; {params / 1e6:.2f}M parameters; val loss "
          f"{r['val_loss_start']:.4f} -> {r['val_loss_end']:.4f}; train loss "
          f"{r['train_loss_end'] if r['train_loss_end'] is None else round(r['train_loss_end'], 4)}")
    print(f"   model {model_dir}: {len(files)} files, {files_mb:.1f} MB, largest "
          f"{biggest / 2 ** 20:.2f} MiB; save {save_seconds:.1f} s, samples {sample_seconds:.1f} s, "
          f"total {r['total_seconds']:.0f} s; run files in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
