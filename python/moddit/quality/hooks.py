"""The quality evaluation's attention hook: it wraps the attention entry of
moddit.diffusers' controllers on one pipeline (the processors call
controller.attention), so that around every call it can

- hand the call's Q/K/V to the policies that need them (oracle, SVG),
- run the warm-up steps of policies without a warm-up of their own through the
  model's own attention (the dense reference's path, so that every policy's
  warm-up is the reference's bit for bit),
- measure shadow metrics of sparse calls: recall and rel_l2 against dense
  attention on the same Q/K/V, on the first `items` videos of each call,
- collect the dense run's attention statistics (stats.DenseStats).

It lives in the quality package: the production adapter is unchanged.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

import moddit
from moddit import _moddit as _C

from . import attention as att


class Shadow:
    """Per-call shadow metrics of one run (sparse and refresh calls only)."""

    def __init__(self, items: int, block: int, tokens, grid):
        self.items = int(items)
        self.block = int(block)
        self.tokens, self.grid = tokens, grid
        self.rows: List[Dict] = []     # one per (call, head): step, layer, branch, head, ...
        self._pending: List = []

    @torch.no_grad()
    def observe(self, step: int, layer: int, branch: int, q, k, v, out, masks: torch.Tensor,
                mass: Optional[torch.Tensor] = None) -> None:
        S = min(self.items, int(q.shape[0]))
        qs, ks, vs = q[:S], k[:S], v[:S]
        if mass is None:
            mass = att.block_mass(qs, ks, self.block)
        else:
            mass = mass[:S]
        masks = masks[:S].to(mass.device)
        ref = att.sdpa_nhd(qs, ks, vs)
        recall = att.recall_of(masks, mass)
        err = att.rel_l2(out[:S], ref)
        dens = att.mask_density(masks)
        # The oracle at this call's own mean density (the equal-density bound).
        d_call = float(dens.mean())
        oracle = att.global_oracle_recall(mass, [max(d_call, 1e-6)])[0]    # [S, H]
        oracle = (oracle * mass.sum((2, 3))).sum(0) / mass.sum((0, 2, 3))
        self._pending.append((step, layer, branch, torch.stack([recall, err, dens, oracle])))

    def finish(self) -> None:
        for step, layer, branch, t in self._pending:
            vals = t.cpu().numpy()
            for h in range(vals.shape[1]):
                self.rows.append(dict(step=step, layer=layer, branch=branch, head=h,
                                      recall=float(vals[0, h]), rel_l2=float(vals[1, h]),
                                      density=float(vals[2, h]),
                                      oracle_recall=float(vals[3, h])))
        self._pending = []

    def summary(self) -> Dict:
        self.finish()
        if not self.rows:
            return {"calls": 0}
        def mean(key, rows):
            return float(np.mean([r[key] for r in rows]))
        by_step = defaultdict(list)
        by_layer = defaultdict(list)
        for r in self.rows:
            by_step[r["step"]].append(r)
            by_layer[r["layer"]].append(r)
        keys = ("recall", "rel_l2", "density", "oracle_recall")
        return {
            "calls": len({(r["step"], r["layer"], r["branch"]) for r in self.rows}),
            "items": self.items,
            **{k: mean(k, self.rows) for k in keys},
            "recall_share_of_oracle": mean("recall", self.rows) / max(mean("oracle_recall",
                                                                           self.rows), 1e-30),
            "per_step": {str(s): {k: mean(k, rs) for k in keys} for s, rs in sorted(by_step.items())},
            "per_layer": {str(l): {k: mean(k, rs) for k in keys}
                          for l, rs in sorted(by_layer.items())},
        }


class Hook:
    """Attached to every controller of a pipeline on which moddit.diffusers is
    enabled. `masks_of(step, layer, branch, batch)` gives the masks of the call
    just run ([B, H, n, n] bool) for the shadow metrics."""

    def __init__(self, pipe, *, inputs=None, shadow: Optional[Shadow] = None,
                 dense_before: int = 0, masks_of: Optional[Callable] = None, stats=None):
        state = getattr(pipe, "_moddit_state", None)
        if state is None:
            raise _C.Error("moddit.quality: enable moddit.diffusers on the pipeline first")
        self.inputs = inputs
        self.shadow = shadow
        self.stats = stats
        self.dense_before = int(dense_before)
        self.masks_of = masks_of
        self._calls: Dict = defaultdict(int)
        # A failing measurement is reported and switched off; the run goes on.
        self.stats_error: Optional[str] = None
        self.shadow_error: Optional[str] = None
        self._wrapped = []
        for ctl in state.controllers:
            original = ctl.attention
            ctl.attention = self._wrap(ctl, original)
            self._wrapped.append((ctl, original))

    def detach(self) -> None:
        for ctl, _ in self._wrapped:
            if "attention" in vars(ctl):
                del ctl.attention
        self._wrapped = []

    def _wrap(self, ctl, original):
        def attention(layer, q, k, v, *, text_tokens, dense, key_mask=None, qkv_layout="NHD"):
            if qkv_layout != "NHD" or text_tokens:
                raise _C.Error("moddit.quality: the hook handles NHD calls of video tokens only")
            step = max(ctl.tracker.step, 0)
            branch = self._calls[(step, layer)]
            self._calls[(step, layer)] += 1
            if step < self.dense_before:
                out = dense()
                self._stats(step, layer, branch, q, k, v, out)
                return out
            if self.inputs is not None:
                self.inputs.set(layer, q, k, v)
            before = len(ctl.calls)
            try:
                out = original(layer, q, k, v, text_tokens=text_tokens, dense=dense,
                               key_mask=key_mask, qkv_layout=qkv_layout)
            finally:
                mass = self.inputs.mass if self.inputs is not None else None
                if self.inputs is not None:
                    self.inputs.clear()
            self._stats(step, layer, branch, q, k, v, out)
            stat = ctl.calls[-1] if len(ctl.calls) > before else None
            if (self.shadow is not None and stat is not None and self.masks_of is not None
                    and stat.kind in ("sparse", "refresh")):
                try:
                    masks = self.masks_of(step, layer, branch, int(q.shape[0]))
                    self.shadow.observe(step, layer, branch, q, k, v, out, masks, mass)
                except Exception as e:
                    self.shadow_error = f"step {step} layer {layer}: {type(e).__name__}: {e}"
                    self.shadow = None
            return out

        return attention

    def _stats(self, step, layer, branch, q, k, v, out) -> None:
        if self.stats is None:
            return
        try:
            self.stats.observe(step, layer, branch, q, k, v, out)
        except Exception as e:
            self.stats_error = f"step {step} layer {layer}: {type(e).__name__}: {e}"
            self.stats = None


# --- where the masks of a call come from -----------------------------------------------

def python_policy_masks(policy) -> Callable:
    """The masks a quality baseline (baselines.MaskPolicy) planned last."""
    def masks_of(step, layer, branch, batch):
        if policy.last_masks is None:
            raise _C.Error(f"{policy.kind}: no masks for a sparse call at step {step}")
        return policy.last_masks
    return masks_of


def moddit_policy_masks(pipe, items: int) -> Callable:
    """MOD-DiT's masks of the call (ModditPolicy.video_mask of each slot)."""
    def masks_of(step, layer, branch, batch):
        ctl = pipe._moddit_state.controllers[0]
        policy = ctl.policy
        heads = ctl.num_heads
        out = []
        for i in range(min(items, batch)):
            slot = branch * batch + i
            rows = []
            for h in range(heads):
                m = policy.video_mask(layer, slot, h)
                if m.size == 0:
                    raise _C.Error(f"moddit: no video mask for layer {layer} slot {slot}")
                n = int(round(m.size ** 0.5))
                rows.append(torch.from_numpy(m.reshape(n, n).copy()))
            out.append(torch.stack(rows))
        return torch.stack(out).bool()
    return masks_of


def vdit_policy_masks(config, tokens, grid) -> Callable:
    """Sparse-vDiT's masks of the call, from the searched config's choices."""
    cache: Dict = {}

    def masks_of(step, layer, branch, batch):
        choices = config.layer_choices(step, layer)
        key = (tuple((int(c.mode.value), c.window, tuple(c.stripes)) for c in choices))
        if key not in cache:
            cache[key] = torch.stack([torch.from_numpy(
                _C.vdit_video_mask(c, tokens, grid).copy()) for c in choices]).bool()
        return cache[key][None].expand(batch, -1, -1, -1)
    return masks_of
