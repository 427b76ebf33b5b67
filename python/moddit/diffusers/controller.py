"""The controller behind moddit.diffusers.enable(): one per transformer. It owns
the moddit Sessions of the current generation, counts state slots per layer and
step (CFG as batch 2 or as two calls), times every attention call and collects
what the summary reports."""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .. import _api
from .. import _handles
from .. import _moddit as _C
from .. import _torch_ops  # noqa: F401  (registers torch.ops.moddit)
from .families import Family
from .steps import StepTracker, timestep_value


@dataclass
class CallStat:
    step: int
    layer: int
    batch: int
    kind: str           # "dense", "record", "sparse", "refresh", "sdpa"
    density: float
    launches: int
    timer: Any          # (start_event, end_event) on CUDA, seconds on the CPU
    overhead_seconds: float = 0.0
    # (session, first record, records) per session of the call while the density
    # is still on the GPU (NaN).
    pending: Optional[List[Tuple[Any, int, int]]] = None

    def resolve(self) -> None:
        """Fills a density the GPU step reported after the call (waits for it)."""
        if self.pending is None:
            return
        recs = [r for session, first, count in self.pending
                for r in session.history_since(first)[:count]]
        self.density = sum(r.density * r.batch for r in recs) / max(1, sum(r.batch for r in recs))
        self.pending = None

    def seconds(self) -> float:
        if isinstance(self.timer, tuple):
            start, end = self.timer
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        return float(self.timer)


def dense_calls_on_sdpa(mode: str, device: torch.device, head_dim: int, block_size: int) -> bool:
    """Whether plain dense calls (no map) run the model's own attention (SDPA)
    rather than moddit's dense kernel. "auto" takes the faster one as measured
    (docs/BENCHMARKS.md, "cuDNN for dense steps without a map"): moddit's Hopper
    kernel at D = 128 with 128-token blocks, SDPA's cuDNN otherwise (it is the
    faster one at D = 64; off Hopper moddit runs its portable kernel)."""
    if mode != "auto":
        return mode == "sdpa"
    hopper = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9
    return not (hopper and head_dim == 128 and block_size == 128)


@dataclass
class ForwardStat:
    step: int
    timer: Any


class Controller:
    def __init__(self, model, family: Family, tracker: StepTracker, policy: Any,
                 config: Any, config_kw: Dict[str, Any]):
        self.model = model
        self.family = family
        self.tracker = tracker
        config_kw = dict(config_kw)
        # Calls the policy runs as plain dense attention (MOD-DiT's warm-up) take
        # the faster dense path ("auto": dense_calls_on_sdpa), the model's own
        # attention ("sdpa": cuDNN / FlashAttention) or moddit's dense kernel.
        self.dense_calls = str(config_kw.pop("dense_calls", "auto"))
        if self.dense_calls not in ("auto", "sdpa", "moddit"):
            raise ValueError(f"dense_calls must be 'auto', 'sdpa' or 'moddit', got {self.dense_calls!r}")
        # precision / warmup_precision are MOD-DiT config keys for "moddit"; other
        # policies take precision as the Session's.
        self.precision = None
        if not (isinstance(policy, str) and policy.lower().replace("-", "_") in ("moddit", "mod_dit")):
            self.precision = config_kw.pop("precision", None)
            if "warmup_precision" in config_kw:
                raise ValueError("warmup_precision applies to policy 'moddit' (its dense warm-up "
                                 "calls); use precision= with other policies")
            if policy == "sdpa" and self.precision not in (None, "exact"):
                raise ValueError("policy 'sdpa' runs diffusers' own attention: precision does not apply")
        self.policy_spec = (policy, config, config_kw)
        self.modules = family.attention_modules(model)
        self.num_layers = len(self.modules)
        first = self.modules[0]
        self.num_heads = int(first.heads)
        self.head_dim = int(first.to_q.out_features) // self.num_heads
        self.block_size = int(config_kw.get("block_size", 128))

        # Dense-equivalent runs (policy "sdpa") use diffusers' own attention.
        self.use_moddit = not (isinstance(policy, str) and policy == "sdpa")
        self.recorder = None
        self.fallbacks: Dict[int, str] = {}
        self._grid: Optional[Tuple[int, int, int]] = None
        self._text_valid: Optional[List[int]] = None
        self._generation = -1
        self._forward_timer = None
        self._signature = inspect.signature(model.forward)
        self._param_names = list(self._signature.parameters)
        # Sequence parallelism (parallel.py), set by enable(parallel=...).
        self.parallel = None
        # Names this controller in the torch.compile operators (moddit._torch_ops).
        self._handle = _handles.register(self)
        self.reset()

    # --- generation state ------------------------------------------------------
    def reset(self) -> None:
        self.sessions: Dict[Tuple, Tuple[_api.Session, List[int]]] = {}
        self.policy = None
        self.calls: List[CallStat] = []
        self.forwards: List[ForwardStat] = []
        self._slot_step = -1
        self._slots: Dict[int, int] = {}
        self._generation = self.tracker.generation
        if self.parallel is not None:
            self.parallel.reset()

    def _policy(self):
        if self.policy is None:
            policy, config, kw = self.policy_spec
            kw = {k: v for k, v in kw.items() if k not in ("num_steps",)}
            self.policy = _api.make_policy(policy, self.num_layers, self.num_heads, config, **kw)
            if isinstance(self.policy, (_C.ModditPolicy, _C.SparseVditPolicy)):
                self.block_size = self.policy.config.block_size
        return self.policy

    def _session(self, tokens: _C.TokenLayout, device: torch.device):
        key = (tokens.frames, tokens.height, tokens.width, tokens.text_tokens, tokens.text_valid,
               tokens.text_position, device.type, device.index)
        entry = self.sessions.get(key)
        if entry is None:
            policy = self._policy()
            session = _api.Session(
                tokens, policy, device=str(device) if device.type == "cuda" else "cpu",
                num_steps=self.tracker.schedule_length(), num_layers=self.num_layers,
                num_heads=self.num_heads, head_dim=self.head_dim, block_size=self.block_size,
                precision=self.precision)
            entry = (session, [-1])
            self.sessions[key] = entry
        return entry

    # --- hooks ---------------------------------------------------------------------
    # The hooks run inside the transformer's forward, so torch.compile traces them:
    # they only pick the arguments out and call moddit's operators, which do the
    # host work (reading the timestep's value, the text mask) at run time.
    def pre_forward(self, module, args, kwargs):
        # Positional arguments by the forward's parameter names: the order differs
        # per family (CogVideoX passes encoder_hidden_states second).
        bound = dict(zip(self._param_names, args))
        bound.update(kwargs)
        hidden = bound.get("hidden_states")
        timestep = bound.get("timestep")
        mask = bound.get(self.family.text_mask_arg) if self.family.text_mask_arg else None
        if not isinstance(hidden, torch.Tensor):
            return None
        if timestep is not None and not isinstance(timestep, torch.Tensor):
            timestep = torch.tensor(timestep_value(timestep), dtype=torch.float32)
        torch.ops.moddit.diffusers_begin_forward(
            hidden, timestep, mask if isinstance(mask, torch.Tensor) else None, self._handle)
        return None

    def post_forward(self, module, args, kwargs, output):
        out = output[0] if isinstance(output, (tuple, list)) else getattr(output, "sample", None)
        if isinstance(out, torch.Tensor):
            torch.ops.moddit.diffusers_end_forward(out, self._handle)
        return None

    def begin_forward(self, hidden: torch.Tensor, timestep: Optional[torch.Tensor],
                      text_mask: Optional[torch.Tensor]) -> None:
        """The body of the forward pre-hook (torch.ops.moddit.diffusers_begin_forward)."""
        if hidden.ndim == 5:
            self._grid = self.family.token_grid(self.model, tuple(hidden.shape))
        self._text_valid = None
        if text_mask is not None:
            self._text_valid = [int(x) for x in
                                text_mask.reshape(text_mask.shape[0], -1).sum(1).tolist()]
        step = self.tracker.on_forward(timestep_value(timestep))
        if self._generation != self.tracker.generation:
            self.reset()
        if step != self._slot_step:
            self._slot_step = step
            self._slots = {}
        self._forward_timer = _Timer(hidden)

    def end_forward(self) -> None:
        """The body of the forward hook (torch.ops.moddit.diffusers_end_forward)."""
        if self._forward_timer is not None:
            self.forwards.append(ForwardStat(self.tracker.step, self._forward_timer.stop()))
            self._forward_timer = None

    def note_fallback(self, layer: int, why: str) -> None:
        self.fallbacks[layer] = why

    # --- the attention call --------------------------------------------------------
    def tokens_for(self, n_total: int, text_tokens: int) -> Tuple[int, int, int]:
        video = n_total - text_tokens
        if self._grid is None:
            raise _C.Error("moddit.diffusers: attention called before the transformer's forward "
                           "(the token grid is unknown); call the model, not its blocks")
        f, h, w = self._grid
        if f * h * w != video:
            if h * w > 0 and video % (h * w) == 0:
                f = video // (h * w)  # temporal patching rounded differently
            else:
                raise _C.Error(
                    f"moddit.diffusers: {video} video tokens do not fit the latent grid "
                    f"{f}x{h}x{w} of this forward")
        return f, h, w

    def attention(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                  text_tokens: int, dense: Callable[[], torch.Tensor],
                  key_mask: Optional[torch.Tensor] = None, qkv_layout: str = "NHD"):
        n_axis = 1 if qkv_layout == "NHD" else 2
        B, N = int(q.shape[0]), int(q.shape[n_axis])
        if self.parallel is not None and self.parallel.active:  # this rank's rows only
            return self._parallel_attention(layer, q, k, v, text_tokens, key_mask, qkv_layout)
        frames, height, width = self.tokens_for(N, text_tokens)
        step, slot_begin = self._next_slots(layer, B)
        text_valid = self._text_valid_for(B, N, text_tokens, key_mask)

        if self.recorder is not None:
            self.recorder.capture(self, step, layer, slot_begin, q, k, v, qkv_layout,
                                  (frames, height, width), text_tokens, text_valid)

        timer = _Timer(q)
        if not self.use_moddit:
            out = dense()
            self.calls.append(CallStat(step, layer, B, "sdpa", 1.0, 1, timer.stop()))
            return out

        # One session per run of batch items with the same text length, at this step.
        position = self.family.text_position if text_tokens > 0 else "none"
        parts = []
        b0 = 0
        for b1, valid in _runs(text_valid):
            tokens = self._tokens(frames, height, width, text_tokens, valid, position)
            parts.append((b0, b1, self._session_at(tokens, q.device, step)))
            b0 = b1
        if dense_calls_on_sdpa(self.dense_calls, q.device, self.head_dim, self.block_size) and all(
                session.plain_dense(layer, b1 - b0, slot_begin + b0) for b0, b1, session in parts):
            out = dense()
            self.calls.append(CallStat(step, layer, B, "dense", 1.0, 0, timer.stop()))
            return out

        out = torch.empty_like(q)
        kind, density, launches, overhead = "dense", 0.0, 0, 0.0
        pending = []
        for b0, b1, session in parts:
            before = session.history_size
            session.attention(layer, q[b0:b1], k[b0:b1], v[b0:b1], out[b0:b1],
                              slot_begin=slot_begin + b0, qkv_layout=qkv_layout)
            # No wait here: a density the GPU step computes arrives with the next sync.
            recs = session.history_since(before, wait=False)
            for rec in recs:
                kind = _C_kind(rec.kind)
                density += rec.density * rec.batch
                launches += rec.launches
                overhead += rec.overhead_seconds
            pending.append((session, before, len(recs)))
        stat = CallStat(step, layer, B, kind, density / B, launches, timer.stop(), overhead)
        if density != density:  # NaN: resolved when the summary is made
            stat.pending = pending
        self.calls.append(stat)
        return out

    def _next_slots(self, layer: int, batch: int) -> Tuple[int, int]:
        """The step, and the first state slot of this call's batch items."""
        step = max(self.tracker.step, 0)
        if step != self._slot_step:  # processors called without the model's forward hook
            self._slot_step, self._slots = step, {}
        slot_begin = self._slots.get(layer, 0)
        self._slots[layer] = slot_begin + batch
        return step, slot_begin

    def _parallel_attention(self, layer, q, k, v, text_tokens, key_mask, qkv_layout):
        if self.recorder is not None:
            raise _C.Error("moddit.diffusers: recording a trajectory under sequence parallelism "
                           "is not supported (each rank holds part of the sequence): record on "
                           "one GPU")
        B = int(q.shape[0])
        step, slot_begin = self._next_slots(layer, B)
        timer = _Timer(q)
        parts = []
        out = self.parallel.attention(
            layer, q, k, v, text_tokens=text_tokens, key_mask=key_mask, qkv_layout=qkv_layout,
            step=step, slot_begin=slot_begin,
            make_stat=lambda kind, density, batch: parts.append((kind, density, batch)))
        kind = parts[-1][0] if parts else "dense"
        density = sum(d * b for _, d, b in parts) / max(1, sum(b for _, _, b in parts))
        self.calls.append(CallStat(step, layer, B, kind, density, len(parts), timer.stop()))
        return out

    def _session_at(self, tokens: _C.TokenLayout, device: torch.device, step: int):
        """The session of this token layout, told the current step."""
        session, last_step = self._session(tokens, device)
        if last_step[0] != step:
            session.begin_step(step)
            last_step[0] = step
        return session

    @staticmethod
    def _tokens(frames: int, height: int, width: int, text_tokens: int, valid: int,
                position: str) -> _C.TokenLayout:
        return _C.TokenLayout(frames=frames, height=height, width=width, text_tokens=text_tokens,
                              text_valid=valid, text_position=position)

    def _text_valid_for(self, B: int, N: int, text_tokens: int,
                        key_mask: Optional[torch.Tensor]) -> List[int]:
        if text_tokens == 0:
            return [0] * B
        if self._text_valid is not None and len(self._text_valid) == B:
            return [min(int(x), text_tokens) for x in self._text_valid]
        if key_mask is not None:
            m = key_mask.reshape(key_mask.shape[0], -1)
            if m.shape[-1] == N:
                if self.family.text_position == "after":
                    text = m[:, N - text_tokens:]
                else:
                    text = m[:, :text_tokens]
                counts = text.to(torch.int32).sum(1).tolist()
                return [int(c) for c in (counts if len(counts) == B else counts * B)]
        return [text_tokens] * B


def _runs(values: List[int]):
    """(end, value) of each run of equal consecutive values."""
    i = 0
    while i < len(values):
        j = i + 1
        while j < len(values) and values[j] == values[i]:
            j += 1
        yield j, values[i]
        i = j


def _C_kind(kind) -> str:
    return {_C.CallKind.DENSE: "dense", _C.CallKind.RECORD: "record",
            _C.CallKind.SPARSE: "sparse", _C.CallKind.REFRESH: "refresh"}.get(kind, str(kind))


class _Timer:
    """CUDA events on the caller's stream for CUDA tensors (no synchronisation
    until the summary), wall time on the CPU."""

    def __init__(self, like: Any):
        self.cuda = like is not None and hasattr(like, "is_cuda") and like.is_cuda
        if self.cuda:
            self.start = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self):
        if self.cuda:
            self.end.record()
            return (self.start, self.end)
        return time.perf_counter() - self.t0
