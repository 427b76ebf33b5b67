"""The generated-video evaluation's baselines as Session policies
(moddit.PythonPolicy), so that they run through moddit.diffusers.enable and
moddit's kernels exactly like MOD-DiT: dense before `warmup` (MOD-DiT's
warm-up, so that every policy is sparse on the same steps), then a block layout
per call. The masks come from moddit's own builders (the C++ ones `moddit eval`
uses: window, radial, SVG's spatial and temporal masks) or from the call's own
Q/K (the oracle, and SVG's choice between its two masks).

Policies that need the call's tensors read them from a CallInputs, which the
quality hook (hooks.py) fills before each call.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

import moddit
from moddit import _moddit as _C

from . import attention as att


class CallInputs:
    """Q, K, V of the attention call being planned (set by the hook)."""

    def __init__(self):
        self.layer = -1
        self.q = self.k = self.v = None
        self.mass: Optional[torch.Tensor] = None   # [B, H, n, n] when a policy computed it

    def set(self, layer: int, q, k, v) -> None:
        self.layer, self.q, self.k, self.v, self.mass = layer, q, k, v, None

    def clear(self) -> None:
        self.set(-1, None, None, None)

    def get(self, call, who: str):
        if self.q is None or self.layer != call.layer or int(self.q.shape[0]) != call.batch:
            raise _C.Error(f"{who}: no Q/K/V for layer {call.layer} (batch {call.batch}); the "
                           "quality hook must be attached (moddit.quality.hooks.attach)")
        return self.q, self.k, self.v


class MaskPolicy(moddit.PythonPolicy):
    """Dense before `warmup`, then one head group whose layout comes from
    video_masks(call) -> [B, H, n, n] bool; the last masks are kept for the
    shadow metrics."""

    kind = "mask"

    def __init__(self, target_density: float, warmup: int, block_size: int):
        super().__init__()
        if not 0.0 < target_density <= 1.0:
            raise _C.Error(f"{self.kind}: target density must be in (0, 1], got {target_density}")
        if warmup < 0:
            raise _C.Error(f"{self.kind}: warmup must be >= 0, got {warmup}")
        self.target = float(target_density)
        self.warmup = int(warmup)
        self.block_size = int(block_size)
        self.last_masks: Optional[torch.Tensor] = None

    def name(self) -> str:
        return self.kind

    def video_masks(self, call) -> torch.Tensor:
        raise NotImplementedError

    def plan(self, call):
        if call.step < self.warmup:
            self.last_masks = None
            return moddit.dense_plan(call.num_heads)
        if call.tokens.text_tokens:
            raise _C.Error(f"{self.kind}: the quality baselines handle video tokens only "
                           f"(this call has {call.tokens.text_tokens} text tokens)")
        masks = self.video_masks(call)
        self.last_masks = masks
        plan = moddit.Plan()
        plan.kind = moddit.CallKind.SPARSE
        plan.groups = [moddit.HeadGroup(list(range(call.num_heads)),
                                        self._layout(masks, call), self.kind)]
        return plan

    def _layout(self, masks: torch.Tensor, call):
        return att.layout_of(masks, call.grid)


class StaticPolicy(MaskPolicy):
    """moddit eval's window (3D sliding tile) or radial mask, every head and call."""

    def __init__(self, kind: str, target_density: float, warmup: int, block_size: int):
        if kind not in ("window", "radial"):
            raise _C.Error(f"static policy: kind must be 'window' or 'radial', got {kind!r}")
        self.kind = kind
        super().__init__(target_density, warmup, block_size)
        self._mask: Dict[Tuple, torch.Tensor] = {}
        self._layouts: Dict[Tuple, object] = {}

    def video_masks(self, call) -> torch.Tensor:
        t = call.tokens
        key = (t.frames, t.height, t.width)
        if key not in self._mask:
            m = _C.static_video_mask(self.kind, t, call.grid, self.target)
            self._mask[key] = torch.from_numpy(m.copy()).bool()
        return self._mask[key][None, None].expand(call.batch, call.num_heads, -1, -1)

    def _layout(self, masks, call):
        t = call.tokens
        key = (t.frames, t.height, t.width, call.batch, call.num_heads)
        if key not in self._layouts:  # one layout object per shape: uploaded once
            self._layouts[key] = att.layout_of(masks, call.grid)
        return self._layouts[key]


class OraclePolicy(MaskPolicy):
    """Per call, batch item and head, the key blocks with the most dense mass
    from the call's own Q/K: over the whole grid (rule="global", moddit eval's
    oracle: the upper bound of recall) or per query block row (rule="row")."""

    def __init__(self, target_density: float, warmup: int, block_size: int, inputs: CallInputs,
                 rule: str = "global"):
        if rule not in ("global", "row"):
            raise _C.Error(f"oracle: rule must be 'global' or 'row', got {rule!r}")
        self.kind = "oracle" if rule == "global" else "oracle_row"
        super().__init__(target_density, warmup, block_size)
        self.inputs = inputs
        self.masks_of = att.global_oracle_masks if rule == "global" else att.row_oracle_masks

    def video_masks(self, call) -> torch.Tensor:
        q, k, _ = self.inputs.get(call, "oracle")
        mass = att.block_mass(q, k, self.block_size)
        self.inputs.mass = mass
        return self.masks_of(mass, self.target)


class SvgPolicy(MaskPolicy):
    """The SVG baseline (Sparse VideoGen): per call, each head takes moddit
    eval's spatial or temporal mask, whichever gives the smaller output error
    on a strided sample of query rows (summed over the batch), the rule of
    src/eval/svg_policy.cpp, computed here in torch on the call's device."""

    kind = "svg"

    def __init__(self, target_density: float, warmup: int, block_size: int, inputs: CallInputs,
                 sample_rows: int = 64):
        super().__init__(target_density, warmup, block_size)
        if sample_rows < 1:
            raise _C.Error(f"svg: sample_rows must be >= 1, got {sample_rows}")
        self.inputs = inputs
        self.sample_rows = int(sample_rows)
        self._masks: Dict[Tuple, Tuple[torch.Tensor, torch.Tensor]] = {}
        self.temporal_share = []   # fraction of heads that chose the temporal mask, per call

    def _spatial_temporal(self, call, device):
        t = call.tokens
        key = (t.frames, t.height, t.width, str(device))
        if key not in self._masks:
            s, tm = _C.svg_video_masks(t, call.grid, self.target)
            self._masks[key] = (torch.from_numpy(s.copy()).bool().to(device),
                                torch.from_numpy(tm.copy()).bool().to(device))
        return self._masks[key]

    @torch.no_grad()
    def video_masks(self, call) -> torch.Tensor:
        q, k, v = self.inputs.get(call, "svg")
        B, N, H, D, n = att.check_call(q, self.block_size)
        spatial, temporal = self._spatial_temporal(call, q.device)
        stride = max(1, N // self.sample_rows)
        rows = torch.arange(stride // 2, N, stride, device=q.device)
        qs = q[:, rows].float()                                        # [B, S, H, D]
        scores = torch.einsum("bshd,bnhd->bhsn", qs, k.float()) * D ** -0.5
        p = torch.softmax(scores, dim=-1)                              # [B, H, S, N]
        qb = rows // self.block_size
        kb = torch.arange(N, device=q.device) // self.block_size
        vf = v.float().transpose(1, 2)                                 # [B, H, N, D]
        dense = p @ vf
        errs = []
        for m in (spatial, temporal):
            keep = m[qb][:, kb].to(p.dtype)                            # [S, N]
            pm = p * keep
            om = (pm @ vf) / pm.sum(-1, keepdim=True).clamp_min(1e-30)
            errs.append((om - dense).pow(2).sum((0, 2, 3)))            # [H]
        use_temporal = errs[1] < errs[0]
        self.temporal_share.append(float(use_temporal.float().mean()))
        per_head = torch.where(use_temporal[:, None, None], temporal[None], spatial[None])
        return per_head[None].expand(B, H, n, n)
