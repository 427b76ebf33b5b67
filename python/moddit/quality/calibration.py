"""Sparse-vDiT's calibration for the quality evaluation: dense Q/K/V recorded
from the model on calibration (prompt, seed) pairs that are not evaluated
(moddit.diffusers.record), then moddit's search on them (measure once, decide
per target density), on the backend of the evaluation's device: on the GPU the
measurement takes seconds, so it runs before the policies, never beside them
(a CPU search running beside the GPU runs once took longer than the budget and
left the evaluation without progress).
"""
from __future__ import annotations

import os
import time
from typing import Dict, Optional, Sequence

import moddit
import moddit.diffusers as md
from moddit import _moddit as _C


def record_calibration(pipe, path: str, prompts: Sequence[int], seeds: Sequence[int],
                       steps: Sequence[int], run_kwargs: Dict) -> str:
    """Records every layer at `steps` of the conditional branch of a dense run
    of the calibration pairs; returns the trajectory file."""
    import torch

    with torch.no_grad():
        with md.record(pipe, path, steps=list(steps), slots=list(range(len(prompts))),
                       source="moddit-tiny calibration pairs (dense run, conditional branch)"):
            pipe(list(prompts), list(seeds), **run_kwargs)
    if not os.path.exists(path):
        raise _C.Error(f"calibration: nothing was recorded into {path}")
    return path


class CalibrationSearch:
    """measure_vdit on `backend` (moddit.get_backend of the evaluation's device);
    config(density) afterwards. Runs to the end in the constructor."""

    def __init__(self, trajectory: str, block_size: int, backend,
                 options: Optional[moddit.VditSearchOptions] = None, delete: bool = True):
        self.trajectory = trajectory
        self.options = options or moddit.VditSearchOptions()
        self.options.block_size = int(block_size)
        self.backend = backend
        self.delete = delete            # the trajectory file once measured
        self.table = None
        self.error: Optional[str] = None
        self.seconds: Optional[float] = None
        self._configs: Dict[float, object] = {}
        t0 = time.perf_counter()
        try:
            source = moddit.open_trajectory(self.trajectory)
            self.table = _C.measure_vdit([source], backend, self.options)
        except Exception as e:  # reported in the results, the other policies go on
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.seconds = time.perf_counter() - t0
            if self.delete and os.path.exists(self.trajectory):
                os.remove(self.trajectory)

    def config(self, density: float):
        if self.table is None:
            raise _C.Error(f"Sparse-vDiT search failed: {self.error}")
        if density not in self._configs:
            self._configs[density] = _C.decide_vdit(self.table, float(density))
        return self._configs[density]

    def describe(self) -> Dict:
        o = self.options
        return {"trajectory": os.path.basename(self.trajectory), "seconds": self.seconds,
                "error": self.error, "backend": self.backend.name,
                "steps": list(self.table.steps) if self.table is not None else None,
                "candidates": {"modes": [str(m).split(".")[-1].lower() for m in o.modes],
                               "diagonal_windows": list(o.diagonal_windows),
                               "multi_diagonal_windows": list(o.multi_diagonal_windows),
                               "stripe_counts": list(o.stripe_counts),
                               "stripe_sample_rows": o.stripe_sample_rows}}
