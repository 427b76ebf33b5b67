"""Training moddit-tiny: Wan's flow-matching objective on procedural videos.

x_t = (1 - t) x0 + t eps, the model predicts eps - x0 (the "flow", what
diffusers' flow-match schedulers take), t = shift u / (1 + (shift - 1) u) with
u ~ U(0, 1): the same shifted density of t as the 50 inference steps. The
prompt is dropped (zeros) with probability cond_drop for classifier-free
guidance. bf16 autocast on CUDA, (fused) AdamW, linear warm-up then cosine decay.

With a wall-clock budget the step count is planned once, early (plan_at steps),
from the measured speed, so the learning-rate schedule still ends where the run
ends; a hard stop at the deadline guards against a slower tail.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from . import data, latent
from .families import NUM_FAMILIES, prompt_table
from .model import FULL, SHIFT, make_model, num_parameters


@dataclass
class Settings:
    seed: int = 0
    steps: int = 4000              # the most steps (fewer if the budget says so)
    batch: int = 4
    lr: float = 3e-4
    warmup: int = 200
    min_lr_ratio: float = 0.05     # cosine decays to lr * this
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.99)
    grad_clip: float = 1.0
    cond_drop: float = 0.1
    shift: float = SHIFT
    frames: int = FULL[0]          # latent size; pixels are 4x height and width
    height: int = FULL[1]
    width: int = FULL[2]
    model: Dict[str, Any] = field(default_factory=dict)   # config overrides
    model_seed: int = 0
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    autocast: bool = True          # bf16 autocast (CUDA only)
    deadline: float = 0.0          # time.time() to stop training by (0: none)
    plan_at: int = 30              # steps after which the step count is planned
    log_every: int = 25            # JSONL lines
    print_seconds: float = 15.0    # progress lines at most this often
    eval_every: int = 250
    eval_videos: int = 8


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class Result:
    model: Any
    prompts: torch.Tensor
    steps_done: int
    planned_steps: int
    history: List[Dict[str, Any]]
    seconds: float
    stopped_by: str                # "steps" or "deadline"


def lr_at(step: int, s: Settings, total: int) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    span = max(1, total - s.warmup)
    progress = min(1.0, (step - s.warmup) / span)
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def shifted(u: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * u / (1 + (shift - 1) * u)


def _pixels(s: Settings):
    return s.frames, s.height * latent.PATCH, s.width * latent.PATCH


def _batch_latents(s: Settings, families, seeds) -> torch.Tensor:
    return latent.encode(data.videos(families, seeds, *_pixels(s), device=s.device))


class _Evaluator:
    """A fixed validation set: eval_videos videos (every family in turn, seeds
    out of the training draw), each at 4 fixed t with fixed noise."""

    TS = (0.2, 0.4, 0.6, 0.8)

    def __init__(self, s: Settings, prompts: torch.Tensor):
        self.s = s
        fams = [i % NUM_FAMILIES for i in range(s.eval_videos)]
        seeds = [2 ** 31 + i for i in range(s.eval_videos)]
        self.items = []   # (x0, emb, t, eps) batches
        g = torch.Generator().manual_seed(1234)
        x0 = torch.cat([_batch_latents(s, fams[i:i + s.batch], seeds[i:i + s.batch])
                        for i in range(0, len(fams), s.batch)])
        emb = prompts[fams]
        rows = []
        for t in self.TS:
            eps = torch.randn(x0.shape, generator=g).to(s.device)
            rows.append((x0, emb, torch.full((len(fams),), t, device=s.device), eps))
        for x, e, t, n in rows:
            for i in range(0, len(fams), s.batch):
                self.items.append((x[i:i + s.batch], e[i:i + s.batch], t[i:i + s.batch],
                                   n[i:i + s.batch]))

    @torch.no_grad()
    def __call__(self, model) -> float:
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for x0, emb, t, eps in self.items:
            loss = _loss(model, self.s, x0, emb, t, eps)
            total += float(loss) * x0.shape[0]
            count += x0.shape[0]
        model.train(was_training)
        return total / count


def _loss(model, s: Settings, x0, emb, t, eps) -> torch.Tensor:
    xt = (1 - t.view(-1, 1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1, 1) * eps
    use_autocast = s.autocast and str(s.device).startswith("cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_autocast):
        pred = model(hidden_states=xt, timestep=t * 1000.0, encoder_hidden_states=emb,
                     return_dict=False)[0]
    return F.mse_loss(pred.float(), eps - x0)


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def train(s: Settings, log_file: Optional[str] = None,
          say: Callable[[str], None] = print) -> Result:
    """Trains a fresh moddit-tiny under settings `s`. Progress to `say`, one JSON
    line per log_every steps (and per evaluation) to `log_file`."""
    if s.batch < 1 or s.steps < 1:
        raise ValueError(f"moddit.tiny.train: batch and steps must be >= 1 ({s.batch}, {s.steps})")
    if s.plan_at <= 10:
        raise ValueError(f"moddit.tiny.train: plan_at must be > 10 (the speed is measured from "
                         f"step 10), got {s.plan_at}")
    device = torch.device(s.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    t_start = time.time()
    model = make_model(s.model_seed, **s.model).to(device).train()
    text_dim = int(model.config.text_dim)
    prompts_cpu = prompt_table(text_dim)
    prompts = prompts_cpu.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "scale_shift" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "scale_shift" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=s.lr,
                            betas=tuple(s.betas), fused=device.type == "cuda")
    gen = torch.Generator(device=device).manual_seed(s.seed)
    evaluate = _Evaluator(s, prompts)
    log = open(log_file, "a") if log_file else None
    history: List[Dict[str, Any]] = []

    def record(entry: Dict[str, Any]) -> None:
        history.append(entry)
        if log is not None:
            log.write(json.dumps(entry) + "\n")
            log.flush()

    record({"event": "start", "parameters": num_parameters(model),
            "tokens_per_video": s.frames * s.height * s.width // 4, "settings": asdict(s)})
    planned = s.steps
    loss_sum = torch.zeros((), device=device)
    gnorm_sum = torch.zeros((), device=device)
    interval_start, interval_step = time.time(), 0
    last_print = 0.0
    t_plan0 = None
    stopped_by = "steps"
    step = 0
    try:
        val = evaluate(model)
        record({"event": "eval", "step": 0, "val_loss": val, "time": time.time() - t_start})
        say(f"step 0  val loss {val:.4f}  ({num_parameters(model) / 1e6:.2f}M parameters, "
            f"{s.frames * s.height * s.width // 4} tokens per video, batch {s.batch})")
        while step < planned:
            if s.deadline and time.time() >= s.deadline:
                stopped_by = "deadline"
                say(f"budget reached at step {step} of {planned}: stopping")
                break
            lr = lr_at(step, s, planned)
            for group in opt.param_groups:
                group["lr"] = lr
            fams, seeds, drops = data.training_draw(s.seed, step, s.batch, s.cond_drop)
            x0 = _batch_latents(s, fams, seeds)
            keep = (~torch.tensor(drops)).float().view(-1, 1, 1)
            emb = data.to_device(prompts_cpu[fams] * keep, device)
            t = shifted(torch.rand(s.batch, device=device, generator=gen), s.shift)
            eps = torch.randn(x0.shape, device=device, generator=gen)
            loss = _loss(model, s, x0, emb, t, eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
            opt.step()
            loss_sum += loss.detach()
            gnorm_sum += gnorm.detach()
            step += 1

            if step == 10:
                t_plan0 = time.time()
            if s.deadline and step == s.plan_at and t_plan0 is not None:
                per_step = (time.time() - t_plan0) / (s.plan_at - 10)
                evals_left = (planned - step) // max(1, s.eval_every)
                eval_cost = per_step * len(evaluate.items) / 3  # a forward ~ 1/3 of a step
                left = s.deadline - time.time() - evals_left * eval_cost
                planned = max(step + 1, min(s.steps, step + int(0.97 * left / per_step)))
                record({"event": "plan", "step": step, "seconds_per_step": per_step,
                        "planned_steps": planned})
                say(f"planned {planned} steps ({per_step * 1000:.0f} ms/step measured over "
                    f"steps 10-{s.plan_at})")

            if step % s.log_every == 0 or step == planned:
                n = step - interval_step
                mean_loss = float(loss_sum) / n
                mean_gnorm = float(gnorm_sum) / n
                if not math.isfinite(mean_loss) or not math.isfinite(mean_gnorm):
                    raise TrainingDiverged(
                        f"moddit.tiny.train: the loss is {mean_loss} (grad norm {mean_gnorm}) in "
                        f"steps {interval_step + 1}-{step} at lr {lr:.2e}: training diverged; "
                        f"stopping with no model saved (lower --lr or raise --warmup)")
                now = time.time()
                rate = n / max(now - interval_start, 1e-9)
                record({"event": "train", "step": step, "loss": mean_loss, "grad_norm": mean_gnorm,
                        "lr": lr, "it_per_s": rate, "time": now - t_start})
                loss_sum.zero_()
                gnorm_sum.zero_()
                interval_start, interval_step = now, step
                if now - last_print >= s.print_seconds or step == planned:
                    last_print = now
                    eta = (planned - step) / max(rate, 1e-9)
                    say(f"step {step}/{planned}  loss {mean_loss:.4f}  lr {lr:.2e}  "
                        f"{rate:.2f} it/s  elapsed {_fmt_time(now - t_start)}  "
                        f"ETA {_fmt_time(eta)}")
            if step % s.eval_every == 0 and step < planned:
                val = evaluate(model)
                record({"event": "eval", "step": step, "val_loss": val,
                        "time": time.time() - t_start})
                say(f"step {step}  val loss {val:.4f}")
        val = evaluate(model)
        if not math.isfinite(val):
            raise TrainingDiverged(f"moddit.tiny.train: the validation loss is {val} after "
                                   f"{step} steps: stopping with no model saved")
        record({"event": "eval", "step": step, "val_loss": val, "time": time.time() - t_start})
        say(f"step {step}  val loss {val:.4f}  (final)")
        seconds = time.time() - t_start
        record({"event": "end", "steps": step, "planned_steps": planned,
                "stopped_by": stopped_by, "seconds": seconds})
    finally:
        if log is not None:
            log.close()
    model.eval()
    return Result(model, prompts.cpu(), step, planned, history, seconds, stopped_by)
