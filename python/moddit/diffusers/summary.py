"""The report after a run: density per layer, time in attention, speedup.

The dense baseline is measured in the same run: the warm-up steps are dense, so
each layer's dense time per batch item is known, and the dense-equivalent time
of the whole run is that times the number of calls. The end-to-end estimate
replaces the measured attention time of the transformer's forward passes with
that dense-equivalent time (time outside attention is unchanged by moddit).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class LayerSummary:
    layer: int
    calls: int
    mean_density: float          # over every call (dense calls count 1)
    sparse_density: Optional[float]  # over sparse and refresh calls only
    seconds: float


@dataclass
class Summary:
    policy: str
    steps: int
    layers: List[LayerSummary] = field(default_factory=list)
    kinds: Dict[str, int] = field(default_factory=dict)
    attention_seconds: float = 0.0
    dense_equivalent_seconds: Optional[float] = None
    forward_seconds: float = 0.0
    overhead_seconds: float = 0.0
    fallbacks: Dict[int, str] = field(default_factory=dict)

    @property
    def attention_speedup(self) -> Optional[float]:
        if not self.dense_equivalent_seconds or self.attention_seconds <= 0:
            return None
        return self.dense_equivalent_seconds / self.attention_seconds

    @property
    def attention_share(self) -> Optional[float]:
        return self.attention_seconds / self.forward_seconds if self.forward_seconds > 0 else None

    @property
    def end_to_end_speedup(self) -> Optional[float]:
        """Estimated transformer speedup: dense forward time / measured forward time."""
        if self.dense_equivalent_seconds is None or self.forward_seconds <= 0:
            return None
        dense_forward = self.forward_seconds - self.attention_seconds + self.dense_equivalent_seconds
        return dense_forward / self.forward_seconds

    @property
    def mean_density(self) -> Optional[float]:
        vals = [l.sparse_density for l in self.layers if l.sparse_density is not None]
        return sum(vals) / len(vals) if vals else None

    @classmethod
    def from_controllers(cls, controllers) -> "Summary":
        calls = [c for ctl in controllers for c in ctl.calls]
        for c in calls:
            c.resolve()  # densities the GPU step reported after the call
        forwards = [f for ctl in controllers for f in ctl.forwards]
        policy = ", ".join(sorted({_policy_name(ctl) for ctl in controllers}))
        s = cls(policy=policy, steps=len({c.step for c in calls}))
        for ctl in controllers:
            s.fallbacks.update(ctl.fallbacks)
        per_layer = defaultdict(list)
        for c in calls:
            per_layer[c.layer].append(c)
            s.kinds[c.kind] = s.kinds.get(c.kind, 0) + 1
        dense_per_item: Dict[int, float] = {}
        all_dense = []
        for layer, cs in sorted(per_layer.items()):
            secs = [c.seconds() for c in cs]
            sparse = [c.density for c in cs if c.kind in ("sparse", "refresh")]
            s.layers.append(LayerSummary(
                layer, len(cs), sum(c.density for c in cs) / len(cs),
                sum(sparse) / len(sparse) if sparse else None, sum(secs)))
            dense = [t / c.batch for c, t in zip(cs, secs) if c.kind in ("dense", "sdpa")]
            if not dense:  # warm-up of record steps only: they include the map pass
                dense = [t / c.batch for c, t in zip(cs, secs) if c.kind == "record"]
            if dense:
                # The first call includes one-off setup (allocation, planning caches).
                dense_per_item[layer] = _robust_mean(dense)
                all_dense.extend(dense)
            s.attention_seconds += sum(secs)
            s.overhead_seconds += sum(c.overhead_seconds for c in cs)
        if all_dense:
            fallback = _robust_mean(all_dense)
            s.dense_equivalent_seconds = sum(
                dense_per_item.get(c.layer, fallback) * c.batch for c in calls)
        s.forward_seconds = sum(_seconds(f.timer) for f in forwards)
        return s

    def __str__(self) -> str:
        lines = [f"moddit summary: policy {self.policy}, {self.steps} steps, "
                 f"{sum(l.calls for l in self.layers)} attention calls "
                 f"({', '.join(f'{k} {v}' for k, v in sorted(self.kinds.items()))})"]
        lines.append(f"{'layer':>5} {'calls':>6} {'density':>8} {'sparse-step density':>20} "
                     f"{'time (s)':>10}")
        for l in self.layers:
            sd = f"{l.sparse_density:.3f}" if l.sparse_density is not None else "-"
            lines.append(f"{l.layer:>5} {l.calls:>6} {l.mean_density:>8.3f} {sd:>20} "
                         f"{l.seconds:>10.4f}")
        lines.append(f"time in attention: {self.attention_seconds:.3f} s"
                     + (f" ({100 * self.attention_share:.1f}% of {self.forward_seconds:.3f} s in "
                        "the transformer)" if self.attention_share is not None else ""))
        if self.overhead_seconds:
            lines.append(f"policy host time (plan + observe; with the step on the GPU this "
                         f"includes waiting for launch-queue room): {self.overhead_seconds:.4f} s")
        if self.dense_equivalent_seconds is not None:
            lines.append(f"dense attention, estimated from the warm-up steps: "
                         f"{self.dense_equivalent_seconds:.3f} s -> attention speedup "
                         f"{self.attention_speedup:.2f}x, transformer speedup "
                         f"{self.end_to_end_speedup:.2f}x" if self.end_to_end_speedup else
                         f"{self.dense_equivalent_seconds:.3f} s")
        else:
            lines.append("no dense calls in this run to estimate a speedup from (run once with "
                         "policy='sdpa' or 'dense' for a baseline)")
        if self.fallbacks:
            lines.append("layers run by diffusers (not moddit): " + ", ".join(
                f"{k} ({v})" for k, v in sorted(self.fallbacks.items())))
        return "\n".join(lines)


def _robust_mean(values: List[float]) -> float:
    vals = sorted(values)
    if len(vals) > 2:
        vals = vals[: max(1, (len(vals) * 3) // 4)]  # drop the slowest quarter (warm-up effects)
    return sum(vals) / len(vals)


def _seconds(timer) -> float:
    if isinstance(timer, tuple):
        start, end = timer
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    return float(timer)


def _policy_name(ctl) -> str:
    if not ctl.use_moddit:
        return "sdpa"
    p = ctl.policy_spec[0]
    return p if isinstance(p, str) else p.name()
