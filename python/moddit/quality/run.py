"""The quality evaluation of moddit-tiny: dense reference, every policy at equal
measured density, the sweeps, the attention statistics, within a time budget.

Work is done in priority order (plan.py) and the results file is rewritten
(atomically) after every run, so a kill still leaves results. Each run's cost
is estimated from the runs before it; a run that would not fit in the budget is
skipped and listed with the reason.
"""
from __future__ import annotations

import datetime
import faulthandler
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

import moddit
import moddit.diffusers as md
import moddit.tiny
from moddit.tiny import FAMILIES, NUM_FAMILIES, load_tiny
from moddit import _moddit as _C

from . import attention as att
from . import metrics
from . import plan as planmod
from .baselines import CallInputs, OraclePolicy, StaticPolicy, SvgPolicy
from .calibration import CalibrationSearch, record_calibration
from .hooks import Hook, Shadow, moddit_policy_masks, python_policy_masks, vdit_policy_masks
from .stats import DenseStats


STALL_SECONDS = 60.0   # one denoising step of a full batch takes well under a second on the GPU


@dataclass
class Settings:
    model: str
    out_dir: str
    device: str = "cuda"
    dtype: str = "bf16"
    size: Sequence[int] = (16, 48, 64)      # latent frames, height, width
    steps: int = 50
    guidance: float = 5.0
    pairs: int = 16
    block: int = 128
    warmup: int = 12                        # the baselines' warm-up (MOD-DiT's m)
    densities: Sequence[float] = (0.15, 0.20)
    extra_densities: Sequence[float] = (0.10, 0.30)
    sweep_density: float = 0.15
    sweep_warmups: Sequence[int] = (6, 2, 4, 8)
    sweep_intervals: Sequence[int] = (5, 20)
    sweep_etas: Sequence[float] = (1e-3, 1e-5)
    sweep_tau_es: Sequence[float] = (1.0, -1e9)
    second_density: float = 0.20
    second_warmups: Sequence[int] = (6, 2)
    # sparse_warmup_steps (the static radial mask at its default density 0.30 on
    # the first steps of the warm-up): its quality cost, at the sweep density.
    sweep_sparse_warmups: Sequence[int] = (4, 8, 10)
    sweep_pairs: int = 8                    # the sweeps' videos (the first ones; >= pairs: all)
    calib_pairs: int = 2
    calib_steps: Sequence[int] = (12, 30)
    calib_seed0: int = 1000
    shadow_items: int = 2
    stats_items: int = 2
    frame_pairs: Sequence[int] = (0, 5, 7)
    budget_seconds: float = 330.0
    reserve_seconds: float = 12.0
    extras: bool = True
    smoke: bool = False
    command: str = ""
    scratch: str = "/tmp"                   # the calibration trajectory (not kept)
    cpu_threads: int = 0                    # torch and moddit CPU threads (0: leave as is)
    started: float = 0.0                    # time.perf_counter() the budget counts from (0: now)


def smoke_settings(model: str, out_dir: str, **kw) -> Settings:
    """The whole path at the CPU test size (4 x 8 x 8 = 256 tokens, blocks of
    64), few pairs and steps."""
    # n = 4 video blocks per side: the diagonal alone is density 0.25, so the
    # smoke compares policies at 0.5 (8 of 16 blocks).
    base = dict(model=model, out_dir=out_dir, device="cpu", dtype="f32", size=(4, 16, 16),
                steps=6, pairs=2, block=64, warmup=3, densities=(0.5,), extra_densities=(),
                sweep_density=0.5, sweep_warmups=(2,), sweep_intervals=(), sweep_etas=(),
                sweep_tau_es=(), second_density=0.75, second_warmups=(), sweep_sparse_warmups=(1,),
                calib_pairs=1, calib_steps=(3, 4), shadow_items=1, stats_items=1, frame_pairs=(0, 1),
                sweep_pairs=1, budget_seconds=1e9, reserve_seconds=0.0,
                extras=False,
                cpu_threads=1, smoke=True)
    base.update(kw)
    return Settings(**base)


def eval_pairs(n: int):
    """(family, seed) of the evaluated videos: every family in turn, seed = index."""
    return [(i % NUM_FAMILIES, i) for i in range(n)]


def calibration_pairs(n: int, seed0: int):
    """Held out: seeds the evaluation never uses, families from the other end."""
    nf = NUM_FAMILIES
    return [((nf - 1 - 3 * i) % nf, seed0 + i) for i in range(n)]


class Log:
    def __init__(self, path: str, t0: float):
        self.t0 = t0
        self.file = open(path, "a")

    def __call__(self, msg: str) -> None:
        line = f"[quality {time.perf_counter() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def _write_json(path: str, data) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, allow_nan=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _git_commit() -> Optional[str]:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except Exception:
        return None


class Evaluation:
    def __init__(self, s: Settings):
        self.s = s
        self.t0 = s.started or time.perf_counter()
        os.makedirs(s.out_dir, exist_ok=True)
        self.log = Log(os.path.join(s.out_dir, "quality_log.txt"), self.t0)
        self.results_path = os.path.join(s.out_dir, "quality_results.json")
        self.stats_path = os.path.join(s.out_dir, "attention_stats.json")
        self.results: Dict = {"runs": {}, "skipped": [], "errors": {}}
        self.costs: Dict[str, List[float]] = {}
        self.kept_frames: Dict[str, torch.Tensor] = {}
        self.search: Optional[CalibrationSearch] = None

    # --- time ------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.s.budget_seconds - self.s.reserve_seconds - self.elapsed()

    def _scale(self, pairs: int) -> float:
        """Cost of a run of `pairs` videos against one of all: a fixed part (per
        call work) and a part that grows with the batch."""
        n = pairs or self.s.pairs
        return 0.25 + 0.75 * n / self.s.pairs

    def estimate(self, cfg: planmod.RunConfig) -> float:
        """Seconds, from the runs so far (costs are kept per run of all videos)."""
        kind = cfg.policy
        if self.costs.get(kind):
            base = float(np.mean(self.costs[kind]))
        else:
            sparse = [c for k, v in self.costs.items() if k not in ("dense_ref",) for c in v]
            base = float(np.mean(sparse)) if sparse else float(np.mean(self.costs["dense_ref"]))
            base *= {"oracle": 1.5, "oracle_row": 1.5, "svg": 1.2}.get(kind, 1.0)
        return base * self._scale(cfg.pairs)

    # --- setup -----------------------------------------------------------------------
    def setup(self) -> None:
        s = self.s
        if s.cpu_threads > 0:
            # Small tensors on a busy CPU: more threads only add OpenMP spinning.
            torch.set_num_threads(s.cpu_threads)
            moddit.set_cpu_threads(s.cpu_threads)
        dtype = {"bf16": torch.bfloat16, "f32": torch.float32, "f16": torch.float16}[s.dtype]
        self.pipe = load_tiny(s.model, device=s.device, dtype=dtype)
        self.pipe.set_progress_bar_config(disable=True)
        f, h, w = s.size
        p_t, p_h, p_w = self.pipe.transformer.config.patch_size
        self.tokens = moddit.TokenLayout(frames=f // p_t, height=h // p_h, width=w // p_w)
        self.grid = moddit.make_block_grid(self.tokens, s.block)
        self.run_kwargs = dict(num_inference_steps=s.steps, guidance_scale=s.guidance, frames=f,
                               height=h, width=w, output_type="pt")
        self.pairs = eval_pairs(s.pairs)
        self.calib = calibration_pairs(s.calib_pairs, s.calib_seed0)
        dev = torch.device(s.device)
        self.results["meta"] = {
            "what": "moddit-tiny (the trained reference model of this repo: a 20M-parameter "
                    "Wan-architecture video DiT trained on procedural videos of photographs; "
                    "not Wan / HunyuanVideo)",
            "model": os.path.abspath(s.model), "date_utc": datetime.datetime.utcnow().isoformat(
                timespec="seconds") + "Z",
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
            or platform.machine(),
            "host_cpus": os.cpu_count(), "command": s.command, "git_commit": _git_commit(),
            "cuda_kernel": os.environ.get("MODDIT_CUDA_KERNEL") or "auto",
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "diffusers": __import__("diffusers").__version__,
                         "moddit": moddit.__version__, "cuda": torch.version.cuda},
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(s).items()},
            "tokens": self.tokens.describe(), "video_blocks": self.grid.num_video_blocks,
            "pairs": [{"family": FAMILIES[fm].name, "prompt_id": fm, "seed": sd}
                      for fm, sd in self.pairs],
            "calibration_pairs": [{"family": FAMILIES[fm].name, "prompt_id": fm,
                                   "seed": sd} for fm, sd in self.calib],
            "shadow": f"recall and rel_l2 at every sparse call on its first {s.shadow_items} "
                      "videos (both CFG branches), against dense attention on the same Q/K/V",
            "density": "achieved density = moddit.diffusers.summary's mean over layers of the "
                       "mean video density of the sparse and refresh calls",
            "psnr": "per video over all frames and pixels in [0, 1] against the dense video of the "
                    f"same (prompt, seed); identical videos count {metrics.PSNR_CAP} dB",
            "ssim": "per video, the mean over frames of skimage's default SSIM (7x7 uniform window,"
                    " channels averaged)",
        }
        self.log(f"model {s.model} on {self.results['meta']['device']}, {self.tokens.describe()}"
                 f", {self.grid.num_video_blocks}x{self.grid.num_video_blocks} blocks of "
                 f"{s.block}, {s.pairs} pairs, {s.steps} steps, budget {s.budget_seconds:.0f} s")
        self.save()

    def save(self) -> None:
        self.results["elapsed_seconds"] = round(self.elapsed(), 2)
        if self.search is not None:
            self.results["sparse_vdit_search"] = self.search.describe()
        _write_json(self.results_path, self.results)

    def _generate(self, prompts, seeds):
        """One pipeline call, with a progress line every 10 steps; if a step takes
        longer than STALL_SECONDS, every thread's Python stack goes to the log
        (faulthandler), so a stall names where it is."""
        steps = self.s.steps
        t = time.perf_counter()

        def progress(pipe, i, ts, kw):
            faulthandler.dump_traceback_later(STALL_SECONDS, repeat=True, file=self.log.file)
            if (i + 1) % 10 == 0 and i + 1 < steps:
                self.log(f"  step {i + 1}/{steps} ({time.perf_counter() - t:.1f} s)")
            return {}

        faulthandler.dump_traceback_later(STALL_SECONDS, repeat=True, file=self.log.file)
        try:
            with torch.no_grad():
                out = self.pipe(list(prompts), list(seeds), callback_on_step_end=progress,
                                **self.run_kwargs)
            if out.frames.is_cuda:
                torch.cuda.synchronize()
        finally:
            faulthandler.cancel_dump_traceback_later()
        return out.frames

    # --- calibration and the dense reference -----------------------------------------
    def calibrate(self) -> None:
        s = self.s
        t = time.perf_counter()
        path = os.path.join(s.scratch, f"quality_calibration_{os.getpid()}.safetensors")
        steps = [st for st in s.calib_steps if st < s.steps]
        try:
            record_calibration(self.pipe, path, [p for p, _ in self.calib],
                               [sd for _, sd in self.calib], steps, self.run_kwargs)
            options = moddit.VditSearchOptions()
            if s.size[1] // 2 * s.size[2] // 2 >= 64:
                # 0 and 16 tokens of spatial index give the same blocks as 64 at this
                # grid's frame width; the duplicate would only cost search time.
                options.multi_diagonal_windows = [0, 16]
            recorded = time.perf_counter() - t
            size_mib = os.path.getsize(path) / 2**20
            self.search = CalibrationSearch(path, s.block, moddit.get_backend(s.device), options)
            if self.search.error:
                raise _C.Error(self.search.error)
            self.log(f"calibration: {len(self.calib)} pairs recorded at steps {steps} in "
                     f"{recorded:.1f} s ({size_mib:.0f} MiB); Sparse-vDiT search on "
                     f"{self.search.backend.name} in {self.search.seconds:.1f} s")
        except Exception as e:
            self.results["errors"]["calibration"] = f"{type(e).__name__}: {e}"
            self.log(f"calibration FAILED: {e}")
        self.save()

    def dense_reference(self) -> None:
        s = self.s
        t = time.perf_counter()
        md.enable(self.pipe, policy="sdpa")
        ref_steps = sorted({m - 1 for m in (*s.sweep_warmups, *s.second_warmups, s.warmup)
                            if m >= 1})
        self.stats = DenseStats(s.stats_items, s.block, self.tokens, self.grid, s.warmup, ref_steps)
        hook = Hook(self.pipe, stats=self.stats)
        try:
            self.ref = self._generate([p for p, _ in self.pairs], [sd for _, sd in self.pairs])
        finally:
            hook.detach()
            md.disable(self.pipe)
        secs = time.perf_counter() - t
        self.costs["dense_ref"] = [secs]
        self.refs = {s.pairs: self.ref}
        self._keep_frames("dense", self.ref)
        self.results["runs"]["dense"] = {"policy": "dense (the model's own attention, SDPA)",
                                         "seconds": round(secs, 2), "achieved_density": 1.0,
                                         "note": "the reference of every PSNR / SSIM"}
        if hook.stats_error:
            self.results["errors"]["stats"] = hook.stats_error
        self.log(f"dense reference: {s.pairs} videos in {secs:.1f} s (with the attention "
                 f"statistics of {s.stats_items} videos per call)")
        self.save()
        self.write_stats()

    def write_stats(self) -> None:
        try:
            stats = self.stats.summary()
            stats["meta"] = {k: self.results["meta"][k] for k in ("what", "device", "date_utc",
                                                                 "tokens", "video_blocks")}
            _write_json(self.stats_path, stats)
        except Exception as e:
            self.results["errors"]["stats_summary"] = f"{type(e).__name__}: {e}"
            self.log(f"attention statistics FAILED: {e}")

    def _keep_frames(self, name: str, frames: torch.Tensor) -> None:
        idx = [i for i in self.s.frame_pairs if i < frames.shape[0]]
        self.kept_frames[name] = (frames[idx].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu()

    # --- one run -----------------------------------------------------------------------
    def _enable(self, cfg: planmod.RunConfig, inputs: CallInputs):
        """Enables the policy; returns (masks_of, dense_before)."""
        s, pipe = self.s, self.pipe
        S = s.shadow_items
        if cfg.policy in ("moddit_default", "moddit_paper"):
            md.enable(pipe, policy="moddit", dense_calls="sdpa", block_size=s.block,
                      target_density=cfg.density, **self._moddit_overrides(cfg))
            return moddit_policy_masks(pipe, S), 0
        if cfg.policy == "sparse_vdit":
            config = self.search.config(cfg.density)
            md.enable(pipe, policy="sparse_vdit", config=config)
            return vdit_policy_masks(config, self.tokens, self.grid), s.warmup
        if cfg.policy == "dense":
            md.enable(pipe, policy="dense")
            return None, 0
        if cfg.policy in ("window", "radial"):
            pol = StaticPolicy(cfg.policy, cfg.density, s.warmup, s.block)
        elif cfg.policy in ("oracle", "oracle_row"):
            pol = OraclePolicy(cfg.density, s.warmup, s.block, inputs,
                               "row" if cfg.policy == "oracle_row" else "global")
        elif cfg.policy == "svg":
            pol = SvgPolicy(cfg.density, s.warmup, s.block, inputs)
        else:
            raise _C.Error(f"unknown policy {cfg.policy!r}")
        md.enable(pipe, policy=pol)
        for ctl in pipe._moddit_state.controllers:
            # A policy object takes no config keys: the Session's block size is
            # the controller's (128 unless told), set before its first call.
            ctl.block_size = s.block
        self._python_policy = pol
        return python_policy_masks(pol), s.warmup

    def _moddit_overrides(self, cfg: planmod.RunConfig) -> Dict:
        """The run's MOD-DiT config keys: the paper's (moddit_paper) or none
        (moddit_default: the build's defaults), the sweep's key on top. A
        shorter (smoke) schedule takes its own warm-up and interval."""
        over = dict(planmod.paper_overrides()) if cfg.policy == "moddit_paper" else {}
        if self.s.smoke:
            over.update(warmup_steps=self.s.warmup, interval=2)
        over.update(cfg.params)
        return over

    def dense_subset(self, cfg: planmod.RunConfig) -> None:
        """The dense reference of the first cfg.pairs videos (the sweeps'), and how
        far it is from the same videos in the full batch (the batch-size floor)."""
        t = time.perf_counter()
        md.enable(self.pipe, policy="sdpa")
        try:
            frames = self._generate([p for p, _ in self.pairs[:cfg.pairs]],
                                    [sd for _, sd in self.pairs[:cfg.pairs]])
        finally:
            md.disable(self.pipe)
        self.refs[cfg.pairs] = frames
        secs = time.perf_counter() - t
        self.costs.setdefault("dense_ref", []).append(secs / self._scale(cfg.pairs))
        p = metrics.psnr(frames, self.ref[:cfg.pairs]).cpu().tolist()
        rec = cfg.describe()
        rec.update({"policy": "dense (SDPA)", "achieved_density": 1.0, "seconds": round(secs, 2),
                    "psnr_vs_full_batch": p, "psnr_vs_full_batch_mean": metrics.mean_finite(p),
                    "note": f"the reference of the sweeps ({cfg.pairs} videos in one call); PSNR "
                            "against the same videos generated in the full batch"})
        self.results["runs"][cfg.name] = rec
        self.log(f"{cfg.name}: dense reference of {cfg.pairs} videos in {secs:.1f} s; against the "
                 f"full batch's: PSNR {rec['psnr_vs_full_batch_mean']:.2f} dB")
        self.save()

    def run(self, cfg: planmod.RunConfig) -> None:
        s = self.s
        if cfg.policy == "dense_ref":
            return self.dense_subset(cfg)
        npairs = cfg.pairs or s.pairs
        ref = self.refs.get(npairs)
        if ref is None:
            raise _C.Error(f"no dense reference of {npairs} videos (its run was skipped)")
        pairs = self.pairs[:npairs]
        t = time.perf_counter()
        inputs = CallInputs()
        self._python_policy = None
        shadow = Shadow(s.shadow_items, s.block, self.tokens, self.grid) if cfg.shadow else None
        hook = None
        try:
            masks_of, dense_before = self._enable(cfg, inputs)
            hook = Hook(self.pipe, inputs=inputs, shadow=shadow if masks_of else None,
                        dense_before=dense_before, masks_of=masks_of)
            frames = self._generate([p for p, _ in pairs], [sd for _, sd in pairs])
            summ = md.summary(self.pipe)
        finally:
            if hook is not None:
                hook.detach()
            md.disable(self.pipe)
        gen_secs = time.perf_counter() - t
        p = metrics.psnr(frames, ref).cpu().tolist()
        q = metrics.ssim(frames, ref).cpu().tolist()
        rec = cfg.describe()
        rec.update({
            "achieved_density": summ.mean_density if cfg.policy != "dense" else 1.0,
            "density_per_layer": [l.sparse_density for l in summ.layers],
            "call_kinds": dict(summ.kinds),
            "psnr_mean": metrics.mean_finite(p), "ssim_mean": metrics.mean_finite(q),
            "psnr": p, "ssim": q,
            "attention_seconds": round(summ.attention_seconds, 3),
            "policy_host_seconds": round(summ.overhead_seconds, 3),
        })
        if cfg.policy in ("moddit_default", "moddit_paper"):
            rec["config"] = json.loads(self.pipe_config_json(cfg))
        if cfg.policy == "sparse_vdit":
            config = self.search.config(cfg.density)
            rec["vdit_config_mean_density"] = config.mean_density()
            rec["vdit_summary"] = config.summary_table()
        if isinstance(self._python_policy, SvgPolicy) and self._python_policy.temporal_share:
            rec["svg_temporal_head_share"] = float(np.mean(self._python_policy.temporal_share))
        if shadow is not None and masks_of is not None:
            rec["shadow"] = shadow.summary()
        if hook is not None and hook.shadow_error:
            rec["shadow_error"] = hook.shadow_error
        rec["seconds"] = round(time.perf_counter() - t, 2)
        self.costs.setdefault(cfg.policy, []).append(gen_secs / self._scale(cfg.pairs))
        self.results["runs"][cfg.name] = rec
        if abs(cfg.density - s.sweep_density) < 1e-9 and cfg.group in ("main", "extra"):
            self._keep_frames(cfg.name, frames)
        sh = rec.get("shadow", {})
        self.log(f"{cfg.name}: density {rec['achieved_density'] if rec['achieved_density'] is not None else float('nan'):.3f}"
                 f"  PSNR {rec['psnr_mean']:.2f} dB  SSIM {rec['ssim_mean']:.4f}"
                 + (f"  recall {sh['recall']:.3f} rel_l2 {sh['rel_l2']:.3f}" if sh.get("calls")
                    else "") + f"  ({rec['seconds']:.1f} s)")
        self.save()

    def pipe_config_json(self, cfg) -> str:
        return moddit.moddit_config(block_size=self.s.block, target_density=cfg.density,
                                    **self._moddit_overrides(cfg)).to_json()

    # --- the plan --------------------------------------------------------------------
    def configs(self) -> List[planmod.RunConfig]:
        s = self.s
        extra_keys = {}
        keys = moddit.ModditConfig().to_json()
        if '"map_signal"' in keys:
            extra_keys["map_signal"] = ["eq2"]
        if '"prediction"' in keys:
            extra_keys["prediction"] = ["linear"]
        if s.sweep_sparse_warmups:
            extra_keys["sparse_warmup_steps"] = [int(m) for m in s.sweep_sparse_warmups]
        out = planmod.main_table(s.densities, planmod.MAIN)
        out += planmod.main_table(s.extra_densities, planmod.MAIN_EXTRA)
        out += planmod.sweeps(s.sweep_density, s.sweep_warmups, s.sweep_intervals, s.sweep_etas,
                              s.sweep_tau_es, s.second_density, s.second_warmups, extra_keys,
                              pairs=s.sweep_pairs if s.sweep_pairs < s.pairs else 0)
        if s.extras:
            out += planmod.extras(s.sweep_density)
        return out

    def execute(self) -> None:
        """Every planned run in priority order: Sparse-vDiT runs without a search
        table and runs that would not fit in the budget are skipped with the reason."""
        plan = self.configs()
        self.results["plan"] = [c.name for c in plan]
        for cfg in plan:
            if cfg.policy == "sparse_vdit" and (self.search is None or self.search.table is None):
                why = (self.results["errors"].get("calibration")
                       or (self.search.error if self.search else None) or "no calibration")
                self._skip(cfg, f"Sparse-vDiT search unavailable: {why}")
                continue
            est = self.estimate(cfg)
            if est > self.left():
                self._skip(cfg, f"estimated {est:.1f} s, {max(0.0, self.left()):.1f} s left")
                continue
            try:
                self.run(cfg)
            except Exception as e:
                self.results["errors"][cfg.name] = (f"{type(e).__name__}: {e}\n"
                                                    + traceback.format_exc()[-1500:])
                self.log(f"{cfg.name} FAILED: {type(e).__name__}: {e}")
                self.save()

    def _skip(self, cfg, why: str) -> None:
        self.results["skipped"].append({"name": cfg.name, "why": why})
        self.log(f"skipped {cfg.name}: {why}")
        self.save()

    # --- pictures and the end -----------------------------------------------------------
    def write_frames(self) -> None:
        from moddit.tiny import pictures

        s = self.s
        d = f"{s.sweep_density:.2f}"
        runs = self.results["runs"]
        baselines = [n for n in runs if n.endswith("@" + d) and runs[n]["policy"] in
                     ("window", "radial", "svg", "sparse_vdit") and n in self.kept_frames]
        best = max(baselines, key=lambda n: runs[n]["psnr_mean"], default=None)
        rows = [("dense", "dense")]
        for name in (f"moddit_default@{d}", f"moddit_paper@{d}", best, f"oracle@{d}"):
            if name and name in self.kept_frames:
                rows.append((name, name))
        self.results["frames"] = []
        for j, pair in enumerate([i for i in s.frame_pairs if i < s.pairs]):
            fam, seed = self.pairs[pair]
            labels = []
            videos = []
            for name, _ in rows:
                videos.append(self.kept_frames[name][j].float() / 255.0)
                lab = name
                if name != "dense":
                    r = runs[name]
                    lab += (f"  density {r['achieved_density']:.3f}  PSNR {r['psnr'][pair]:.2f} dB"
                            f"  SSIM {r['ssim'][pair]:.3f}")
                labels.append(lab)
            path = os.path.join(s.out_dir, f"frames_pair{pair}_{FAMILIES[fam].name}"
                                           f"_seed{seed}.png")
            pictures.save_frame_grid(path, videos, labels, every=max(1, s.size[0] // 4))
            self.results["frames"].append({"file": os.path.basename(path), "pair": pair,
                                           "rows": [n for n, _ in rows]})
        self.save()

    def finish(self) -> None:
        try:
            self.write_frames()
        except Exception as e:
            self.results["errors"]["frames"] = f"{type(e).__name__}: {e}"
        self.log(f"done: {len(self.results['runs'])} runs, {len(self.results['skipped'])} "
                 f"skipped, {len(self.results['errors'])} errors, in {self.elapsed():.1f} s")
        self.save()


def evaluate(s: Settings) -> Dict:
    ev = Evaluation(s)
    ev.setup()
    ev.calibrate()
    ev.dense_reference()
    ev.execute()
    ev.finish()
    return ev.results
