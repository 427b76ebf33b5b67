#!/usr/bin/env python3
"""The headline benchmark: whole denoising runs (every step, every CFG branch,
the scheduler step included) of a video DiT in its diffusers pipeline, timed end
to end, dense (diffusers' SDPA) against moddit's modes, in one process.

    python scripts/e2e_timing.py --model wan-480p --blocks 12           # eager
    python scripts/e2e_timing.py --model wan-480p --blocks 12 --compile on
    python scripts/e2e_timing.py --model hunyuan-720p --blocks 6 --modes dense,paper
    python scripts/e2e_timing.py --smoke                                # CPU, tiny, seconds

Models (diffusers configs of the released checkpoints, RANDOM weights: the
numbers are speed only, the output is not a video; MOD-DiT's target_density
fixes the sparse steps' density whatever the weights):
  wan-480p      Wan 2.1 T2V 14B, 480x832x81 -> 32760 tokens, UniPC flow shift 3.0, CFG 2 calls
  wan-720p      Wan 2.1 T2V 14B, 720x1280x81 -> 75600 tokens, UniPC flow shift 5.0, CFG 2 calls
  hunyuan-720p  HunyuanVideo 13B, 720x1280x129 -> 118800 + 256 text tokens, flow-match
                Euler shift 7.0, embedded guidance (1 call per step)
  cogvideox-1.5 CogVideoX 1.5 5B, 768x1360x81 -> 44880 + 226 text tokens, CogVideoX DPM,
                CFG as batch 2
The pipeline runs without its VAE and text encoders (random prompt embeddings,
output_type="latent"). --blocks N builds the first N transformer blocks (all
when 0): the 10-minute limit of one GPU call does not fit every block of every
mode; the dense/moddit ratio is what the run measures. Steps are never cut.

Modes (--modes, run in this order, reversed on every other --repeats):
  dense   diffusers' own attention processors, SDPA with cuDNN first in priority
  paper   moddit, MOD-DiT's schedule (warm-up 12, interval 10, --density 0.22)
  best    moddit with --best-warmup / --best-interval / --best-density (skipped unless given)
  fp8     moddit with precision="fp8" (and --fp8-warmup-precision), the best schedule
          when given, else the paper's; skipped with a note where the module refuses it
--compile off | on | both: on = torch.compile on the transformer (regional: each
repeated block, as diffusers' compile_repeated_blocks; --compile-scope full: the
whole transformer). Every run is preceded by an untimed warm-up run of
--warmup-run-steps steps (compilation, cuDNN plans, allocator).

Writes --out (JSON: every run, every step's time and kind, attention time per
step, per-kind sums) and the same name with .md (a table) after every run.
--budget S skips runs that would end after S seconds from the start.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

# --- models --------------------------------------------------------------------------

WAN_14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128,
               in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824,
               num_layers=40, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
WAN_TINY = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=64,
                in_channels=4, out_channels=4, text_dim=16, freq_dim=16, ffn_dim=64, num_layers=2,
                cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
HUNYUAN_13B = dict(in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128,
                   num_layers=20, num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0,
                   patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
                   text_embed_dim=4096, pooled_projection_dim=768, rope_theta=256.0,
                   rope_axes_dim=(16, 56, 56))
HUNYUAN_TINY = dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=64,
                    num_layers=1, num_single_layers=2, num_refiner_layers=1, mlp_ratio=2.0,
                    patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
                    text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(16, 24, 24))
COGVIDEOX_15 = dict(num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16,
                    time_embed_dim=512, text_embed_dim=4096, num_layers=42, sample_width=300,
                    sample_height=300, sample_frames=81, patch_size=2, patch_size_t=2,
                    patch_bias=False, max_text_seq_length=226, temporal_compression_ratio=4,
                    use_rotary_positional_embeddings=True,
                    use_learned_positional_embeddings=False)
COGVIDEOX_TINY = dict(num_attention_heads=2, attention_head_dim=64, in_channels=4, out_channels=4,
                      time_embed_dim=8, text_embed_dim=16, num_layers=2, sample_width=16,
                      sample_height=16, sample_frames=17, patch_size=2, patch_size_t=2,
                      patch_bias=False, max_text_seq_length=13, temporal_compression_ratio=4,
                      use_rotary_positional_embeddings=True,
                      use_learned_positional_embeddings=False)

UNIPC_WAN = dict(beta_end=0.02, beta_schedule="linear", beta_start=0.0001, final_sigmas_type="zero",
                 lower_order_final=True, num_train_timesteps=1000, predict_x0=True,
                 prediction_type="flow_prediction", solver_order=2, solver_type="bh2",
                 timestep_spacing="linspace", use_flow_sigmas=True)
COGVIDEOX_DPM = dict(beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085,
                     clip_sample=False, num_train_timesteps=1000, prediction_type="v_prediction",
                     rescale_betas_zero_snr=True, set_alpha_to_one=True, snr_shift_scale=1.0,
                     steps_offset=0, timestep_spacing="trailing")

# name: family, transformer class, config, tiny config, pipeline class, scheduler
# (class, config), (height, width, frames), tiny (height, width, frames), text tokens,
# guidance scale, the blocks' classes for regional compilation.
MODELS: Dict[str, Dict[str, Any]] = {
    "wan-480p": dict(family="wan", cls="WanTransformer3DModel", config=WAN_14B, tiny=WAN_TINY,
                     pipeline="WanPipeline",
                     scheduler=("UniPCMultistepScheduler", dict(UNIPC_WAN, flow_shift=3.0)),
                     shape=(480, 832, 81), tiny_shape=(128, 128, 17), text=512, tiny_text=7,
                     guidance=5.0, blocks=("WanTransformerBlock",),
                     name="Wan 2.1 T2V 14B config"),
    "wan-720p": dict(family="wan", cls="WanTransformer3DModel", config=WAN_14B, tiny=WAN_TINY,
                     pipeline="WanPipeline",
                     scheduler=("UniPCMultistepScheduler", dict(UNIPC_WAN, flow_shift=5.0)),
                     shape=(720, 1280, 81), tiny_shape=(128, 192, 17), text=512, tiny_text=7,
                     guidance=5.0, blocks=("WanTransformerBlock",),
                     name="Wan 2.1 T2V 14B config"),
    "hunyuan-720p": dict(family="hunyuan_video", cls="HunyuanVideoTransformer3DModel",
                         config=HUNYUAN_13B, tiny=HUNYUAN_TINY, pipeline="HunyuanVideoPipeline",
                         scheduler=("FlowMatchEulerDiscreteScheduler", dict(shift=7.0)),
                         shape=(720, 1280, 129), tiny_shape=(128, 128, 17), text=256, tiny_text=20,
                         guidance=6.0,
                         blocks=("HunyuanVideoTransformerBlock", "HunyuanVideoSingleTransformerBlock"),
                         name="HunyuanVideo 13B config"),
    "cogvideox-1.5": dict(family="cogvideox", cls="CogVideoXTransformer3DModel", config=COGVIDEOX_15,
                          tiny=COGVIDEOX_TINY, pipeline="CogVideoXPipeline",
                          scheduler=("CogVideoXDPMScheduler", COGVIDEOX_DPM),
                          shape=(768, 1360, 81), tiny_shape=(128, 128, 17), text=226, tiny_text=13,
                          guidance=6.0, blocks=("CogVideoXBlock",),
                          name="CogVideoX 1.5 5B config"),
}

MODES = ("dense", "paper", "best", "fp8")
PAPER = dict(warmup_steps=12, interval=10)
# --smoke: 8 steps with every step kind (dense warm-up, record, sparse, refresh).
SMOKE_PAPER = dict(warmup_steps=3, interval=2)
SMOKE_BEST = dict(warmup_steps=2, interval=3, target_density=0.4)
KIND_ORDER = ("dense", "record", "sparse", "refresh")
# --budget: what a compiling warm-up run is assumed to take before one was seen.
COMPILE_ALLOWANCE_S = 120.0


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--model", choices=sorted(MODELS), default="wan-480p")
    p.add_argument("--blocks", type=int, default=0,
                   help="transformer blocks to build (0: all). HunyuanVideo keeps its ratio of "
                        "dual-stream to single-stream blocks (1:2)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {MODES}")
    p.add_argument("--compile", choices=("off", "on", "both"), default="off")
    p.add_argument("--compile-scope", choices=("regional", "full"), default="regional")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode (default, max-autotune-no-cudagraphs, "
                        "reduce-overhead: CUDA graphs around moddit's calls)")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--density", type=float, default=0.22,
                   help="paper mode's target density (MOD-DiT on Wan 2.1: 78%% sparsity)")
    p.add_argument("--best-warmup", type=int, default=None)
    p.add_argument("--best-interval", type=int, default=None)
    p.add_argument("--best-density", type=float, default=None)
    p.add_argument("--best-set", action="append", default=[], metavar="KEY=VALUE",
                   help="another MOD-DiT config key of the best schedule (repeatable)")
    p.add_argument("--fp8-warmup-precision", choices=("fp8", "exact"), default="fp8")
    p.add_argument("--fp8-schedule", choices=("auto", "paper", "best"), default="auto",
                   help="auto: best when given, else paper")
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--text-valid", type=int, default=0,
                   help="HunyuanVideo: real prompt tokens of the 256 (0: all; the rest is padding)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per mode (alternating order)")
    p.add_argument("--warmup-run-steps", type=int, default=2,
                   help="steps of the untimed run before each mode's timed runs")
    p.add_argument("--budget", type=float, default=0.0,
                   help="seconds from the start: a run predicted to end later is skipped (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="", help="JSON path (default e2e_<model>_<compile>.json)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny config on the CPU, 8 steps: checks the script, times nothing")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in MODES]
    if bad:
        p.error(f"--modes: unknown {bad} (choose from {', '.join(MODES)})")
    if args.smoke:
        args.device = "cpu"
        if args.steps == 50:
            args.steps = 8
        if args.block_size == 128:
            args.block_size = 64
    if args.steps < 2:
        p.error("--steps must be at least 2")
    if not args.out:
        args.out = f"e2e_{args.model}_{args.compile}{'_smoke' if args.smoke else ''}.json"
    return args


# --- small helpers ----------------------------------------------------------------------

def log(msg: str) -> None:
    print(msg, flush=True)


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Clock:
    """Timestamps on the device's stream (CUDA events) or the host (CPU)."""

    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device.type == "cuda"

    def mark(self):
        if self.cuda:
            e = self.torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def seconds(self, a, b) -> float:
        if self.cuda:
            b.synchronize()
            return a.elapsed_time(b) / 1000.0
        return b - a


def parse_value(text: str):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


# --- building ---------------------------------------------------------------------------

def model_config(spec, args) -> Dict[str, Any]:
    cfg = dict(spec["tiny"] if args.smoke else spec["config"])
    if args.blocks > 0:
        if spec["family"] == "hunyuan_video":
            total = cfg["num_layers"] + cfg["num_single_layers"]
            n = min(args.blocks, total)
            dual = min(cfg["num_layers"], max(1, round(n * cfg["num_layers"] / total)))
            cfg["num_layers"], cfg["num_single_layers"] = dual, n - dual
        else:
            cfg["num_layers"] = min(args.blocks, cfg["num_layers"])
    return cfg


def total_blocks(cfg) -> int:
    return cfg["num_layers"] + cfg.get("num_single_layers", 0)


def build_model(torch, diffusers, spec, cfg, device, dtype):
    cls = getattr(diffusers, spec["cls"])
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(**cfg)
    finally:
        torch.set_default_dtype(old)
    # As from_pretrained(torch_dtype=bfloat16) leaves them: some modules in fp32.
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if keep & set(name.split(".")) and t.is_floating_point():
            t.data = t.data.float()
    return model.eval().requires_grad_(False)


def build_pipeline(diffusers, spec, model):
    sched_cls, sched_cfg = spec["scheduler"]
    scheduler = getattr(diffusers, sched_cls)(**sched_cfg)
    cls = getattr(diffusers, spec["pipeline"])
    parts = dict(transformer=model, vae=None, scheduler=scheduler, text_encoder=None, tokenizer=None)
    if spec["family"] == "hunyuan_video":
        parts.update(text_encoder_2=None, tokenizer_2=None)
    pipe = cls(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_inputs(torch, spec, args, model, device, dtype) -> Dict[str, Any]:
    """Everything but the step count and the callback: random prompt embeddings in
    the text encoders' shapes."""
    height, width, frames = spec["tiny_shape"] if args.smoke else spec["shape"]
    text = spec["tiny_text"] if args.smoke else spec["text"]
    cfg = model.config
    g = torch.Generator(device="cpu").manual_seed(args.seed + 1)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    kw = dict(height=height, width=width, num_frames=frames, guidance_scale=spec["guidance"],
              output_type="latent", return_dict=False)
    if spec["family"] == "hunyuan_video":
        valid = args.text_valid if 0 < args.text_valid <= text else text
        mask = torch.zeros(1, text, dtype=torch.long)
        mask[:, :valid] = 1
        kw.update(prompt_embeds=randn(1, text, cfg.text_embed_dim),
                  pooled_prompt_embeds=randn(1, cfg.pooled_projection_dim),
                  prompt_attention_mask=mask.to(device))
    else:
        dim = cfg.text_dim if spec["family"] == "wan" else cfg.text_embed_dim
        kw.update(prompt_embeds=randn(1, text, dim), negative_prompt_embeds=randn(1, text, dim))
    return kw


def token_count(spec, args, cfg) -> Dict[str, int]:
    height, width, frames = spec["tiny_shape"] if args.smoke else spec["shape"]
    f = (frames - 1) // 4 + 1
    h, w = height // 8, width // 8
    if spec["family"] == "wan":
        pt, ph, pw = cfg["patch_size"]
    else:
        pt, ph, pw = cfg.get("patch_size_t") or 1, cfg["patch_size"], cfg["patch_size"]
    frames_t = -(-f // pt)  # CogVideoX 1.5 pads the latent frames to a multiple of patch_size_t
    video = frames_t * (h // ph) * (w // pw)
    text = 0 if spec["family"] == "wan" else (spec["tiny_text"] if args.smoke else spec["text"])
    return dict(video_tokens=video, text_tokens=text, tokens=video + text,
                latent=[f, h, w], token_grid=[frames_t, h // ph, w // pw])


def forwards_per_step(spec) -> int:
    """Transformer forwards per denoising step: Wan runs CFG as two calls,
    CogVideoX as batch 2, HunyuanVideo embeds its guidance."""
    return 2 if spec["family"] == "wan" else 1


def sdpa_setup(torch, device) -> Optional[str]:
    """Puts cuDNN first among SDPA's backends for the whole run (flash, efficient
    and math stay allowed as fallbacks). Returns the entered context's name."""
    if device.type != "cuda":
        return None
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
             SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    sdpa_kernel(order, set_priority=True).__enter__()  # held until the process ends
    return "cudnn > flash > efficient > math"


def sdpa_backend_used(torch, spec, model, device) -> str:
    """Which SDPA backend the model's self-attention gets: the first of the
    priority order that accepts a call of its head count, head dim and mask
    (HunyuanVideo passes a boolean key mask)."""
    if device.type != "cuda":
        return "cpu"
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    heads, dim = model.config.num_attention_heads, model.config.attention_head_dim
    q = torch.randn(1, heads, 1024, dim, device=device, dtype=torch.bfloat16)
    mask = None
    if spec["family"] == "hunyuan_video":
        mask = torch.ones(1, 1, 1, 1024, device=device, dtype=torch.bool)
        mask[..., -100:] = False
    for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
                     ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("math", SDPBackend.MATH)):
        try:
            with sdpa_kernel([be]):
                F.scaled_dot_product_attention(q, q, q, attn_mask=mask)
            return name
        except RuntimeError:
            continue
    return "none"


# --- modes ------------------------------------------------------------------------------

def mode_settings(mode: str, args, moddit) -> Dict[str, Any]:
    """enable() keywords of a mode (None: dense, diffusers' processors), or the
    reason it is skipped."""
    paper = dict(SMOKE_PAPER if args.smoke else PAPER,
                 target_density=0.5 if args.smoke else args.density)
    best = dict(SMOKE_BEST) if args.smoke else {}
    for key, val in (("warmup_steps", args.best_warmup), ("interval", args.best_interval),
                     ("target_density", args.best_density)):
        if val is not None:
            best[key] = val
    for item in args.best_set:
        key, _, val = item.partition("=")
        if not key or not _:
            raise SystemExit(f"e2e_timing: --best-set takes KEY=VALUE, got {item!r}")
        best[key.strip()] = parse_value(val.strip())
    has_best = {"warmup_steps", "interval", "target_density"} <= set(best)
    common = dict(policy="moddit", block_size=args.block_size)
    if mode == "dense":
        return dict(enable=None, schedule="dense (SDPA)")
    if mode == "paper":
        return dict(enable=dict(common, **paper), schedule=_schedule_name(paper))
    if mode == "best":
        if not has_best:
            return dict(skip="no best schedule given (--best-warmup, --best-interval, "
                             "--best-density)")
        return dict(enable=dict(common, **best), schedule=_schedule_name(best))
    # fp8
    use_best = args.fp8_schedule == "best" or (args.fp8_schedule == "auto" and has_best)
    if args.fp8_schedule == "best" and not has_best:
        return dict(skip="--fp8-schedule best without a best schedule")
    sched = best if use_best else paper
    precision = dict(precision="fp8", warmup_precision=args.fp8_warmup_precision)
    try:  # the installed module's MOD-DiT config must know the keys
        moddit.make_policy("moddit", 1, 1, None, **dict(sched, **precision))
    except Exception as e:  # noqa: BLE001  (any refusal: the mode is skipped, with why)
        return dict(skip=f"the installed moddit refuses precision='fp8' "
                         f"(warmup_precision={args.fp8_warmup_precision!r}): {e}")
    return dict(enable=dict(common, **sched, **precision),
                schedule=_schedule_name(sched) + f", fp8 (warm-up {args.fp8_warmup_precision})")


def _schedule_name(s: Dict[str, Any]) -> str:
    extra = {k: v for k, v in s.items() if k not in ("warmup_steps", "interval", "target_density")}
    name = f"m={s['warmup_steps']}, dt={s['interval']}, density {s['target_density']}"
    return name + "".join(f", {k}={v}" for k, v in sorted(extra.items()))


# --- compilation ----------------------------------------------------------------------------

def compile_transformer(torch, spec, model, args) -> int:
    """torch.compile in place (hooks and processors stay the model's, so enable()
    and disable() keep working); returns the number of compiled modules."""
    kw = dict(backend=args.compile_backend)
    if args.compile_mode:
        kw["mode"] = args.compile_mode
    if args.compile_scope == "full":
        model.compile(**kw)
        return 1
    n = 0
    for sub in model.modules():
        if type(sub).__name__ in spec["blocks"]:
            sub.compile(**kw)
            n += 1
    return n


def dynamo_counts(torch) -> Dict[str, int]:
    from torch._dynamo.utils import counters

    return dict(graph_breaks=sum(counters["graph_break"].values()),
                graphs=int(counters["stats"]["unique_graphs"]),
                cudagraph_skips=int(counters["inductor"]["cudagraph_skips"]))


# --- one run ------------------------------------------------------------------------------

def step_kinds(calls, steps: int) -> List[str]:
    """The kind of each denoising step from moddit's calls in it: record or
    refresh if any call was one, else sparse if any was, else dense."""
    seen: List[set] = [set() for _ in range(steps)]
    for c in calls:
        if 0 <= c.step < steps:
            seen[c.step].add(c.kind)
    out = []
    for s in seen:
        out.append(next((k for k in ("record", "refresh", "sparse") if k in s), "dense"))
    return out


def run_pipeline(torch, pipe, inputs, steps, clock, progress=None):
    """One pipeline call; returns (total seconds, per-step seconds, latents).
    Per-step times are between the stream marks taken at each step's end (the
    callback), so they hold the scheduler step, nothing is synchronised, and the
    first step also holds the pipeline's preparation (timesteps, initial noise,
    rotary embeddings)."""
    marks = []
    t_host = time.perf_counter()

    def on_step_end(_pipe, i, _t, _kw):
        marks.append(clock.mark())
        if progress is not None:
            progress(i, time.perf_counter() - t_host)
        return {}

    start = clock.mark()
    latents = pipe(num_inference_steps=steps, callback_on_step_end=on_step_end, **inputs)[0]
    end = clock.mark()
    total = clock.seconds(start, end)
    step_s = [clock.seconds(a, b) for a, b in zip([start] + marks[:-1], marks)]
    return total, step_s, latents


def latents_device(pipe):
    return next(pipe.transformer.parameters()).device


def timed_run(torch, md, pipe, inputs, args, mode, compiled, settings, clock):
    steps = args.steps
    state = getattr(pipe, "_moddit_state", None)
    label = f"{mode}/{'compiled' if compiled else 'eager'}"
    every = max(1, steps // 10)

    def progress(i, elapsed):
        if i == 0 or (i + 1) % every == 0 or i + 1 == steps:
            kind = ""
            if state is not None:
                kinds = {c.kind for c in state.controllers[0].calls if c.step == i}
                kind = f" ({', '.join(sorted(kinds))})" if kinds else ""
            log(f"  [{label}] step {i + 1}/{steps}{kind}, {elapsed:.1f} s (host)")

    before = dynamo_counts(torch)
    cuda = latents_device(pipe).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        total, step_s, latents = run_pipeline(torch, pipe, inputs, steps, clock, progress)
    after = dynamo_counts(torch)
    rec = dict(mode=mode, compiled=compiled, schedule=settings["schedule"], steps=steps,
               total_seconds=total, step_seconds=step_s,
               after_last_step_seconds=total - sum(step_s),
               peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
               finite=bool(torch.isfinite(latents.float()).all()),
               graphs_compiled_during_run=after["graphs"] - before["graphs"],
               graph_breaks_during_run=after["graph_breaks"] - before["graph_breaks"])
    if state is not None:
        s = md.summary(pipe)  # resolves the densities the GPU step reported
        calls = [c for ctl in state.controllers for c in ctl.calls]
        kinds = step_kinds(calls, steps)
        attn = [0.0] * steps
        host = [0.0] * steps
        for c in calls:
            if 0 <= c.step < steps:
                attn[c.step] += c.seconds()
                host[c.step] += c.overhead_seconds
        rec.update(step_kinds=kinds, step_attention_seconds=attn, step_policy_host_seconds=host,
                   mean_density=s.mean_density, call_kinds=dict(s.kinds),
                   attention_seconds=s.attention_seconds, fallbacks=dict(s.fallbacks))
    else:
        kinds = ["dense"] * steps
        rec.update(step_kinds=kinds)
    by_kind = {}
    for k in KIND_ORDER:
        idx = [i for i, kk in enumerate(kinds) if kk == k]
        if not idx:
            continue
        entry = dict(steps=len(idx), seconds=sum(step_s[i] for i in idx))
        entry["mean_step_seconds"] = entry["seconds"] / len(idx)
        if "step_attention_seconds" in rec:
            entry["attention_seconds"] = sum(rec["step_attention_seconds"][i] for i in idx)
            entry["mean_attention_seconds"] = entry["attention_seconds"] / len(idx)
        by_kind[k] = entry
    rec["by_kind"] = by_kind
    return rec


# --- reporting ------------------------------------------------------------------------------

def speedups(runs) -> None:
    """Adds each run's speedup over the dense runs of the same compile setting
    and over eager dense (medians over repeats)."""
    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2] if xs else None

    dense = {c: med([r["total_seconds"] for r in runs if r["mode"] == "dense" and r["compiled"] == c])
             for c in (False, True)}
    for r in runs:
        d = dense[r["compiled"]]
        r["speedup_vs_dense"] = d / r["total_seconds"] if d else None
        r["speedup_vs_eager_dense"] = dense[False] / r["total_seconds"] if dense[False] else None


def markdown(result) -> str:
    m, sh = result["model"], result["shape"]
    lines = [f"# End-to-end denoising runs: {m['name']} ({result['model_key']})", "",
             f"- {m['blocks']} of {m['blocks_full']} transformer blocks, {m['parameters'] / 1e9:.2f}B "
             f"parameters, **random weights (speed only)**, {result['dtype']}",
             f"- {sh['height']}x{sh['width']}x{sh['frames']} -> {sh['video_tokens']} video + "
             f"{sh['text_tokens']} text tokens; {result['steps']} steps x "
             f"{result['forwards_per_step']} transformer forward(s); scheduler "
             f"{result['scheduler']['class']}",
             f"- device {result['device']}, torch {result['torch']}, diffusers {result['diffusers']}; "
             f"SDPA: {result['sdpa_backend']}; {result['date']}",
             f"- command: `{result['command']}`", "",
             "Steps by kind: count x mean step seconds (mean attention seconds in the step, "
             "moddit's CUDA events); the first step also holds the pipeline's preparation.", "",
             "| compile | mode | schedule | total (s) | vs dense | vs eager dense | "
             + " | ".join(f"{k} steps" for k in KIND_ORDER) + " | density | peak GiB |",
             "|" + "---|" * (8 + len(KIND_ORDER))]
    for r in result["runs"]:
        cells = []
        for k in KIND_ORDER:
            e = r["by_kind"].get(k)
            if e is None:
                cells.append("-")
            else:
                attn = f" ({e['mean_attention_seconds']:.3f})" if "mean_attention_seconds" in e else ""
                cells.append(f"{e['steps']} x {e['mean_step_seconds']:.3f}{attn}")
        sp = f"{r['speedup_vs_dense']:.2f}x" if r.get("speedup_vs_dense") else "-"
        se = f"{r['speedup_vs_eager_dense']:.2f}x" if r.get("speedup_vs_eager_dense") else "-"
        dens = f"{r['mean_density']:.3f}" if r.get("mean_density") is not None else "-"
        mem = f"{r['peak_memory_gib']:.1f}" if r.get("peak_memory_gib") is not None else "-"
        lines.append(f"| {'on' if r['compiled'] else 'off'} | {r['mode']} | {r['schedule']} | "
                     f"{r['total_seconds']:.2f} | {sp} | {se} | " + " | ".join(cells)
                     + f" | {dens} | {mem} |")
    notes = [f"- compiled warm-up run of {w['mode']}: {w['seconds']:.1f} s, {w['graphs']} graph(s), "
             f"{w['graph_breaks']} graph break(s), {w['cudagraph_skips']} CUDA-graph skip(s)"
             for w in result["warmups"] if w["compiled"]]
    notes += [f"- skipped {s['mode']} ({'compiled' if s['compiled'] else 'eager'}): {s['why']}"
              for s in result["skipped"]]
    if notes:
        lines += [""] + notes
    lines.append("")
    return "\n".join(lines)


def save(result, path) -> None:
    speedups(result["runs"])
    write_atomic(path, json.dumps(result, indent=1))
    write_atomic(os.path.splitext(path)[0] + ".md", markdown(result))


# --- main -------------------------------------------------------------------------------------

class Bench:
    """The runs of one invocation: budget checks, the warm-up and timed run of a
    mode, progress lines, and the results written after every run."""

    def __init__(self, torch, md, pipe, inputs, args, clock, result, t_start, planned):
        self.torch, self.md, self.pipe, self.inputs = torch, md, pipe, inputs
        self.args, self.clock, self.result, self.t_start = args, clock, result, t_start
        self.planned = planned
        self.step_estimate: Optional[float] = None  # seconds per step, from the first warm-up

    def predicted(self, mode: str, compiled: bool) -> float:
        """Seconds the warm-up and timed run of a mode will take (0: unknown)."""
        runs, args = self.result["runs"], self.args
        same = [r["total_seconds"] for r in runs if r["mode"] == mode]
        dense = [r["total_seconds"] for r in runs if r["mode"] == "dense" and r["compiled"] == compiled]
        run = max(same or dense or [(self.step_estimate or 0.0) * args.steps])
        need = run * (1 + args.warmup_run_steps / args.steps)
        if compiled:  # the warm-up run may compile; moddit's modes share one graph
            warm = [w for w in self.result["warmups"] if w["compiled"]]
            moddit_warm = [w["seconds"] for w in warm if w["mode"] != "dense"]
            if mode != "dense" and moddit_warm:
                need += moddit_warm[-1]
            else:
                need += max([w["seconds"] for w in warm] or [COMPILE_ALLOWANCE_S])
        return need

    def skip(self, mode: str, compiled: bool, why: str) -> None:
        log(f"SKIP {mode} ({'compiled' if compiled else 'eager'}): {why}")
        self.result["skipped"].append(dict(mode=mode, compiled=compiled, why=why))
        save(self.result, self.args.out)

    def run(self, mode: str, compiled: bool, settings: Dict[str, Any], rep: int) -> None:
        args, torch, md, pipe = self.args, self.torch, self.md, self.pipe
        if args.budget > 0:
            end = time.time() - self.t_start + self.predicted(mode, compiled)
            if end > args.budget:
                return self.skip(mode, compiled,
                                 f"predicted to end at {end:.0f} s > --budget {args.budget:.0f} s")
        if settings["enable"] is None:
            md.disable(pipe)
        else:
            md.enable(pipe, **settings["enable"])
        label = f"{mode}/{'compiled' if compiled else 'eager'}"
        try:
            self.warm_up(mode, compiled, label)
            log(f"[{label}] timed run {rep + 1}/{args.repeats}: {args.steps} steps, "
                f"{settings['schedule']}")
            rec = timed_run(torch, md, pipe, self.inputs, args, mode, compiled, settings, self.clock)
        except Exception as e:  # noqa: BLE001  (a mode the device refuses must not lose the rest)
            md.disable(pipe)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # after an out-of-memory error
            text = str(e).splitlines()[0] if str(e) else ""
            return self.skip(mode, compiled, f"failed: {type(e).__name__}: {text}")
        self.result["runs"].append(rec)
        kinds = ", ".join(f"{k} {e['steps']} x {e['mean_step_seconds']:.3f} s"
                          for k, e in rec["by_kind"].items())
        log(f"[{label}] {rec['total_seconds']:.2f} s total ({kinds})"
            + (f", density {rec['mean_density']:.3f}" if rec.get("mean_density") else "")
            + ("" if rec["finite"] else ", output NOT finite (random weights)"))
        if rec["graphs_compiled_during_run"]:
            log(f"  warning: {rec['graphs_compiled_during_run']} graph(s) compiled inside the "
                "timed run (its time includes compilation)")
        save(self.result, args.out)

    def warm_up(self, mode: str, compiled: bool, label: str) -> None:
        """An untimed run of a few steps (compilation, cuDNN plans, allocations);
        the first one also gives the time estimate."""
        args, torch = self.args, self.torch
        before = dynamo_counts(torch)
        with torch.no_grad():
            seconds, steps, _ = run_pipeline(torch, self.pipe, self.inputs, args.warmup_run_steps,
                                             self.clock)
        after = dynamo_counts(torch)
        w = dict(mode=mode, compiled=compiled, seconds=seconds, step_seconds=steps,
                 **{k: after[k] - before[k] for k in after})
        self.result["warmups"].append(w)
        log(f"[{label}] warm-up run ({args.warmup_run_steps} steps): {seconds:.1f} s"
            + (f" with compilation: {w['graphs']} graph(s), {w['graph_breaks']} graph break(s)"
               if compiled else ""))
        if self.step_estimate is None:
            self.step_estimate = min(steps)
            total = self.planned * (args.steps + args.warmup_run_steps) * self.step_estimate
            log(f"estimate: one step {self.step_estimate:.2f} s -> about "
                f"{args.steps * self.step_estimate:.0f} s per run; at most {total:.0f} s for "
                f"{self.planned} run(s) and their warm-ups (moddit's runs are faster than dense"
                + ("; the step compiled, so this is an upper bound" if compiled
                   else "; compilation comes on top") + ")")


def main(argv=None):
    t_start = time.time()
    args = parse(argv)
    if args.smoke:  # 2 shared cores: no thread pools fighting each other
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    import torch
    import diffusers
    import moddit
    import moddit.diffusers as md

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("e2e_timing: no CUDA device (use --smoke for the CPU check)")
        if not moddit.cuda_available():
            sys.exit("e2e_timing: moddit was built without CUDA")
    if args.smoke:
        moddit.set_cpu_threads(1)
    dtype = torch.bfloat16
    spec = MODELS[args.model]
    cfg = model_config(spec, args)
    full_cfg = spec["tiny"] if args.smoke else spec["config"]
    tokens = token_count(spec, args, cfg)
    groups = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    settings = {m: mode_settings(m, args, moddit) for m in args.modes}
    height, width, frames = spec["tiny_shape"] if args.smoke else spec["shape"]
    log(f"e2e_timing: {spec['name']}{' (tiny, --smoke)' if args.smoke else ''}, "
        f"{total_blocks(cfg)} of {total_blocks(full_cfg)} blocks, {height}x{width}x{frames} -> "
        f"{tokens['video_tokens']} video + {tokens['text_tokens']} text tokens, {args.steps} steps "
        f"x {forwards_per_step(spec)} forward(s), random weights (speed only)")
    for m in args.modes:
        s = settings[m]
        log(f"  mode {m}: {s.get('schedule') or 'SKIPPED: ' + s['skip']}")
    runnable = [m for m in args.modes if "skip" not in settings[m]]
    log(f"  {len(runnable)} mode(s) x {len(groups)} compile setting(s) x {args.repeats} repeat(s), "
        f"each after a {args.warmup_run_steps}-step warm-up run")

    sdpa = sdpa_setup(torch, device)
    t0 = time.time()
    model = build_model(torch, diffusers, spec, cfg, device, dtype)
    pipe = build_pipeline(diffusers, spec, model)
    inputs = pipeline_inputs(torch, spec, args, model, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    log(f"  built in {time.time() - t0:.1f} s: {params / 1e9:.3f}B parameters on {device}")
    clock = Clock(torch, device)
    result = dict(
        script="scripts/e2e_timing.py", command=" ".join(["python", "scripts/e2e_timing.py"]
                                                         + (sys.argv[1:] if argv is None else list(argv))),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        torch=torch.__version__, diffusers=diffusers.__version__,
        moddit=getattr(moddit, "__version__", "?"), model_key=args.model, dtype=str(dtype),
        model=dict(name=spec["name"], cls=spec["cls"], config=cfg, blocks=total_blocks(cfg),
                   blocks_full=total_blocks(full_cfg), parameters=params, random_weights=True),
        shape=dict(height=height, width=width, frames=frames, **tokens),
        steps=args.steps, forwards_per_step=forwards_per_step(spec),
        scheduler=dict(**{"class": spec["scheduler"][0]}, config=spec["scheduler"][1]),
        sdpa_priority=sdpa, sdpa_backend=sdpa_backend_used(torch, spec, model, device),
        compile=dict(setting=args.compile, scope=args.compile_scope, mode=args.compile_mode,
                     backend=args.compile_backend),
        modes={m: settings[m] for m in args.modes}, runs=[], warmups=[], skipped=[])
    for m in args.modes:
        if "skip" in settings[m]:
            for c in groups:
                result["skipped"].append(dict(mode=m, compiled=c, why=settings[m]["skip"]))
    log(f"  SDPA backend of the dense attention: {result['sdpa_backend']}")

    bench = Bench(torch, md, pipe, inputs, args, clock, result, t_start,
                  planned=len(runnable) * len(groups) * args.repeats)
    for compiled in groups:
        if compiled:
            n = compile_transformer(torch, spec, model, args)
            log(f"torch.compile ({args.compile_scope}, backend {args.compile_backend}, mode "
                f"{args.compile_mode or 'default'}): {n} module(s)")
        for rep in range(args.repeats):
            for mode in (runnable if rep % 2 == 0 else runnable[::-1]):
                bench.run(mode, compiled, settings[mode], rep)
    md.disable(pipe)
    save(result, args.out)
    log("")
    log(markdown(result))
    log(f"wrote {args.out} and {os.path.splitext(args.out)[0]}.md "
        f"({time.time() - t_start:.0f} s in all)")
    return result


if __name__ == "__main__":
    main()
