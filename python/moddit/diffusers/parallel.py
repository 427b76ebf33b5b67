"""moddit's attention inside a sequence-parallel transformer: diffusers' context
parallelism (transformer.enable_parallelism) or an xDiT (xfuser) pipeline.

The framework splits the sequence and computes each rank's Q/K/V rows (moddit's
processors compute them exactly like diffusers'); here every attention call of
those processors becomes a moddit.parallel.ParallelSession call: Ulysses (and
ring) attention with moddit's kernels, on the framework's own process groups.
How each framework splits the sequence is in `sharding_for`; the token grid
comes from the full latents the transformer's forward receives (the split
happens inside it)."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch

from .. import _moddit as _C
from ..parallel import Groups, ParallelSession, Sharding
from ..parallel.session import Layout, make_local_policy, policy_kind
from .controller import _runs, dense_calls_on_sdpa

MODES = ("auto", "diffusers", "xdit")


def detect(model) -> Optional[str]:
    """"xdit" for xfuser's transformer wrappers, "diffusers" when diffusers'
    context parallelism is enabled on the model, else None."""
    if any(cls.__name__.startswith("xFuser") for cls in type(model).__mro__):
        return "xdit"
    cfg = getattr(model, "_parallel_config", None)
    if cfg is not None and getattr(cfg, "context_parallel_config", None) is not None:
        return "diffusers"
    return None


def groups_for(model, framework: str) -> Groups:
    if framework == "xdit":
        return Groups.from_xdit()
    cfg = getattr(model, "_parallel_config", None)
    if cfg is None or getattr(cfg, "context_parallel_config", None) is None:
        raise _C.Error("moddit.diffusers: parallel='diffusers' but the transformer has no context "
                       "parallelism (call transformer.enable_parallelism(config=...) first)")
    return Groups.from_diffusers(cfg)


def sharding_for(framework: str, family: str, video: int, text: int, text_local: int,
                 world: int) -> Tuple[Sharding, int]:
    """The framework's split of a [video; text] sequence and the canonical text
    length: xDiT pads Wan's sequence to a multiple of the rank count and splits
    HunyuanVideo's text only when its length divides (else every rank holds it
    whole); diffusers cuts the sequence in equal chunks."""
    if family == "wan":
        if text:
            raise _C.Error("moddit.diffusers: Wan self-attention with text tokens")
        s = Sharding.padded(video, world) if framework == "xdit" else Sharding.chunked(video, world)
        return s, 0
    if family == "hunyuan_video" and framework == "xdit":
        if text % world == 0 and text_local * world == text:
            split = True
        elif text_local == text:
            split = False
        else:
            raise _C.Error(f"moddit.diffusers: this rank holds {text_local} text tokens, the "
                           f"forward's text has {text} (neither split over {world} ranks nor whole)")
        return Sharding.video_and_text(video, text, world, "after", split), text
    raise _C.Error(f"moddit.diffusers: sequence parallelism for {family} under {framework} is not "
                   "supported (Wan under diffusers or xDiT, HunyuanVideo under xDiT)")


class ParallelCalls:
    """The parallel path of one Controller: sessions per token layout, one policy
    for this rank's heads (shared by them, as the Controller's is)."""

    def __init__(self, controller, mode: str):
        if mode not in MODES:
            raise ValueError(f"parallel must be one of {MODES} or False, got {mode!r}")
        self.controller = controller
        self.mode = mode
        self.framework: Optional[str] = None
        self.groups: Optional[Groups] = None
        self.policy = None
        self.layout: Optional[Layout] = None
        self.sessions: Dict[Tuple, Tuple[ParallelSession, list]] = {}
        self.text_total: Optional[int] = None

    @property
    def active(self) -> bool:
        return self.groups is not None

    def on_forward(self, model, text_total: Optional[int]) -> None:
        """At each forward of the transformer: finds the groups the first time
        (diffusers' enable_parallelism may come after moddit's enable), and the
        forward's whole text length (before the framework splits it)."""
        if self.groups is None:
            fw = detect(model) if self.mode == "auto" else self.mode
            if fw is None:
                return
            self.framework = fw
            self.groups = groups_for(model, fw)
            if not self.controller.use_moddit:
                raise _C.Error("moddit.diffusers: policy 'sdpa' under sequence parallelism: the "
                               "framework's own processors already run its dense attention "
                               "(disable moddit instead)")
        self.text_total = text_total

    def pre_forward(self, module, args, kwargs):
        """Forward pre-hook of the transformer (registered by enable)."""
        try:
            bound = self.controller._signature.bind_partial(*args, **kwargs).arguments
        except TypeError:
            bound = dict(kwargs)
        text_total = None
        enc = bound.get("encoder_hidden_states")
        mask = bound.get(self.controller.family.text_mask_arg or "", None)
        if enc is not None:
            text_total = int(enc.shape[1])
            if mask is not None and self.framework_guess(module) == "xdit":
                # xDiT keeps the text tokens any batch item uses (mask.any(0)).
                text_total = int(mask.to(torch.bool).reshape(mask.shape[0], -1).any(0).sum())
        self.on_forward(module, text_total)
        return None

    def framework_guess(self, model) -> Optional[str]:
        return self.framework or (detect(model) if self.mode == "auto" else self.mode)

    def reset(self) -> None:
        self.sessions = {}
        self.policy = None

    def _policy(self):
        if self.policy is None:
            ctl = self.controller
            policy, config, kw = ctl.policy_spec
            kw = {k: v for k, v in kw.items() if k not in ("num_steps",)}
            kind = policy_kind(policy)
            self.layout = Layout(self.groups, ctl.num_heads, kind)
            if kind == "moddit" and isinstance(policy, str):
                kw.setdefault("block_size", ctl.block_size)
            self.policy = make_local_policy(policy, self.layout, ctl.num_layers, ctl.num_heads,
                                            config, **kw)
            if isinstance(self.policy, (_C.ModditPolicy, _C.SparseVditPolicy)):
                ctl.block_size = self.policy.config.block_size
        return self.policy

    def attention(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                  text_tokens: int, key_mask: Optional[torch.Tensor], qkv_layout: str,
                  step: int, slot_begin: int, make_stat: Callable) -> torch.Tensor:
        ctl = self.controller
        if qkv_layout == "HND":
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        B = int(q.shape[0])
        frames, height, width = ctl._grid or (0, 0, 0)
        if ctl._grid is None:
            raise _C.Error("moddit.diffusers: attention called before the transformer's forward "
                           "(the token grid is unknown); call the model, not its blocks")
        video = frames * height * width
        text = text_tokens
        if text_tokens:
            text = self.text_total if self.text_total is not None else text_tokens
        sharding, text = sharding_for(self.framework, ctl.family.name, video, text, text_tokens,
                                      self.groups.P)
        text_valid = ctl._text_valid_for(B, video + text, text, None) if text else [0] * B
        position = ctl.family.text_position if text > 0 else "none"
        policy = self._policy()
        sdpa = dense_calls_on_sdpa(ctl.dense_calls, q.device, ctl.head_dim, ctl.block_size)
        out = torch.empty_like(q)
        b0 = 0
        for b1, valid in _runs(text_valid):
            tokens = _C.TokenLayout(frames=frames, height=height, width=width, text_tokens=text,
                                    text_valid=valid, text_position=position)
            sess = self._session(tokens, sharding, q.device, policy, sdpa, step)
            before = len(sess.calls)
            out[b0:b1] = sess.attention(layer, q[b0:b1], k[b0:b1], v[b0:b1],
                                        slot_begin=slot_begin + b0)
            for c in sess.calls[before:]:
                make_stat(c["kind"], c["density"], b1 - b0)
            b0 = b1
        return out.transpose(1, 2) if qkv_layout == "HND" else out

    def _session(self, tokens, sharding, device, policy, sdpa, step) -> ParallelSession:
        key = (tokens.frames, tokens.height, tokens.width, tokens.text_tokens, tokens.text_valid,
               tokens.text_position, sharding, device.type, device.index)
        entry = self.sessions.get(key)
        ctl = self.controller
        if entry is None:
            sess = ParallelSession(
                tokens, sharding, self.groups, policy,
                device=str(device) if device.type == "cuda" else "cpu",
                num_steps=ctl.tracker.schedule_length(), num_layers=ctl.num_layers,
                num_heads=ctl.num_heads, head_dim=ctl.head_dim, block_size=ctl.block_size,
                dense_calls_sdpa=sdpa)
            entry = (sess, [-1])
            self.sessions[key] = entry
        sess, last = entry
        if last[0] != step:
            sess.begin_step(step)
            last[0] = step
        return sess
