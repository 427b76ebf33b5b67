"""Following the denoising step of a diffusers pipeline.

Sources, strongest first: an explicit step (``set_step`` or the pipeline's
``callback_on_step_end``), the index of the call's timestep in the scheduler's
timesteps (the scheduler's ``set_timesteps`` is wrapped, which also marks the
start of a new generation), and, for a bare transformer, a change of timestep
(CFG as two calls shares one step because both calls carry the same timestep).
"""
from __future__ import annotations

from typing import Any, List, Optional


def timestep_value(timestep: Any) -> Optional[float]:
    """The call's timestep as a float (the largest entry: Wan 2.2 TI2V passes one
    per token, zero for the conditioning frame)."""
    if timestep is None:
        return None
    if hasattr(timestep, "detach"):
        t = timestep.detach()
        return float(t.max()) if t.numel() > 0 else None
    try:
        return float(max(timestep))  # sequences
    except TypeError:
        return float(timestep)


class StepTracker:
    """The current step of one pipeline, shared by all its transformers (Wan 2.2
    has two: both see one step sequence)."""

    def __init__(self, num_steps: Optional[int] = None):
        self.default_num_steps = num_steps
        self.num_steps: Optional[int] = num_steps
        self.timesteps: Optional[List[float]] = None
        self.step = -1
        self.generation = 0
        self._last_t: Optional[float] = None
        self._explicit: Optional[int] = None

    # A new generation: the scheduler was given its timesteps.
    def on_set_timesteps(self, timesteps: Any) -> None:
        ts = [float(t) for t in (timesteps.tolist() if hasattr(timesteps, "tolist") else timesteps)]
        self.timesteps = ts or None
        self.num_steps = len(ts) if ts else self.default_num_steps
        self.reset()

    def reset(self) -> None:
        self.step = -1
        self._last_t = None
        self._explicit = None
        self.generation += 1

    def set_step(self, step: int) -> None:
        self._explicit = int(step)
        self.step = int(step)

    def on_step_end(self, index: int) -> None:
        """From callback_on_step_end(pipe, i, t, kwargs): the next step is i + 1."""
        self.set_step(index + 1)

    def on_forward(self, t: Optional[float]) -> int:
        """Called at the start of every transformer forward; returns the step."""
        if self._explicit is not None:
            self.step = self._explicit
        elif t is None:
            self.step = max(self.step, 0)
        elif self.timesteps:
            self.step = min(range(len(self.timesteps)), key=lambda i: abs(self.timesteps[i] - t))
        else:
            if self._last_t is not None and t > self._last_t + 1e-6:
                self.reset()  # timesteps only decrease within a generation
            if self._last_t is None or abs(t - self._last_t) > 1e-6:
                self.step += 1
        self._last_t = t
        return self.step

    def schedule_length(self) -> int:
        n = self.num_steps or self.default_num_steps or 50
        return max(int(n), self.step + 1)
