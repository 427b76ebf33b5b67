"""diffusers integration: block-sparse attention in a pipeline in two lines.

    pipe = WanPipeline.from_pretrained(...)
    moddit.diffusers.enable(pipe, policy="moddit", target_density=0.15)
    video = pipe(prompt, num_inference_steps=50).frames[0]
    print(moddit.diffusers.summary(pipe))

Supported transformers: WanTransformer3DModel (also Wan 2.2's transformer_2),
HunyuanVideoTransformer3DModel, CogVideoXTransformer3DModel. enable() replaces
their self-attention processors; disable() restores the originals.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Dict, Iterable, List, Optional

from .controller import Controller
from .parallel import ParallelCalls
from .parallel import detect as detect_parallel
from .families import FAMILIES, family_of
from .processors import PROCESSORS
from .recorder import Recorder
from .steps import StepTracker
from .summary import Summary

__all__ = ["enable", "disable", "record", "summary", "set_step", "step_callback", "reset",
           "Summary", "Recorder", "SUPPORTED_MODELS"]

SUPPORTED_MODELS = tuple(FAMILIES)
_STATE = "_moddit_state"


class _PipeState:
    def __init__(self, owner, tracker: StepTracker):
        self.owner = owner
        self.tracker = tracker
        self.controllers: List[Controller] = []
        self.originals: List[tuple] = []  # (attention module, original processor)
        self.hooks: List[Any] = []
        self.scheduler = None
        self.recorder: Optional[Recorder] = None


def _transformers(pipe) -> List[Any]:
    """The transformers of a pipeline (or the model itself)."""
    if any(cls.__name__ in FAMILIES for cls in type(pipe).__mro__):
        return [pipe]
    found = []
    for name in ("transformer", "transformer_2"):
        model = getattr(pipe, name, None)
        if model is not None:
            family_of(model)  # raises TypeError naming the class if unsupported
            found.append(model)
    if not found:
        raise TypeError(f"moddit.diffusers: {type(pipe).__name__} has no supported transformer "
                        f"(supported: {', '.join(FAMILIES)})")
    return found


def enable(pipe, policy: Any = "moddit", *, config: Any = None, num_steps: Optional[int] = None,
           report: Any = False, parallel: Any = "auto", **config_kw: Any):
    """Replaces the self-attention processors of the pipeline's transformer(s).

    policy: "moddit" (config / keyword overrides: target_density, top_k,
    warmup_steps, interval, tau_e, ridge_lambda, refresh, dense_layers,
    block_size, eta), "sparse_vdit" (config= a searched VditConfig or its file),
    "dense" (moddit's dense kernels: the reference), "sdpa" (diffusers' own
    attention, through moddit's processors: for timing and recording), or a
    moddit.Policy object. dense_calls: where the calls the policy would compute
    as plain dense attention (MOD-DiT's warm-up steps, dense layers) run: "auto"
    (default) the faster of the two on the device (moddit's dense kernel on
    Hopper at head dim 128 with 128-token blocks, SDPA otherwise), "sdpa" the
    model's own attention (cuDNN / FlashAttention), "moddit" moddit's dense kernel.
    precision / warmup_precision: "exact" (default) or "fp8" (e4m3 attention on
    Hopper, docs/CONFIG.md): with "moddit", precision covers the record, sparse
    and refresh steps and warmup_precision the dense warm-up calls (those then
    run on moddit's FP8 kernel, never SDPA); other policies take precision for
    every call. num_steps: the schedule length when `pipe` is a bare
    transformer (a pipeline's scheduler tells it otherwise). report: True prints
    the summary after every pipeline call (to stderr); a callable receives it.
    parallel: sequence parallelism (docs/PARALLEL.md). "auto" (default) follows
    the transformer: an xDiT (xfuser) transformer, or diffusers' context
    parallelism (transformer.enable_parallelism, before or after this call),
    makes every attention call a moddit.parallel one on the framework's process
    groups; "xdit" / "diffusers" insist on one; False: one device only.
    Returns the pipeline (or model) for chaining.
    """
    if getattr(pipe, _STATE, None) is not None:
        disable(pipe)
    tracker = StepTracker(num_steps)
    state = _PipeState(pipe, tracker)
    for model in _transformers(pipe):
        fam = family_of(model)
        ctl = Controller(model, fam, tracker, policy, config, config_kw)
        if not parallel and detect_parallel(model) is not None:
            raise ValueError(f"moddit.diffusers: {type(model).__name__} runs sequence-parallel "
                             f"({detect_parallel(model)}); parallel=False would attend to this "
                             "rank's tokens only")
        if parallel:
            ctl.parallel = ParallelCalls(ctl, parallel)
            state.hooks.append(model.register_forward_pre_hook(ctl.parallel.pre_forward,
                                                               with_kwargs=True))
        proc_cls = PROCESSORS[fam.name]
        for layer, module in enumerate(ctl.modules):
            original = module.processor
            state.originals.append((module, original))
            module.set_processor(proc_cls(ctl, layer, original))
        state.hooks.append(model.register_forward_pre_hook(ctl.pre_forward, with_kwargs=True))
        state.hooks.append(model.register_forward_hook(ctl.post_forward, with_kwargs=True))
        state.controllers.append(ctl)
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is not None and hasattr(scheduler, "set_timesteps"):
        original_set = scheduler.set_timesteps

        # wraps(): pipelines inspect set_timesteps' signature (sigmas=, timesteps=).
        @functools.wraps(original_set)
        def set_timesteps(*args, **kwargs):
            result = original_set(*args, **kwargs)
            tracker.on_set_timesteps(scheduler.timesteps)
            return result

        scheduler.set_timesteps = set_timesteps
        state.scheduler = scheduler
    if report and hasattr(pipe, "progress_bar"):
        _report_after_each_run(pipe, state, report)
    setattr(pipe, _STATE, state)
    return pipe


def _report_after_each_run(pipe, state: _PipeState, report: Any) -> None:
    """Pipelines run their denoising loop inside `with self.progress_bar(...)`:
    its exit is the end of the run."""
    original_bar = pipe.progress_bar

    @functools.wraps(original_bar)
    def progress_bar(*args, **kwargs):
        return _ReportOnExit(original_bar(*args, **kwargs), state, report)

    pipe.progress_bar = progress_bar
    state.patched_progress_bar = True


class _ReportOnExit:
    def __init__(self, bar, state: _PipeState, report: Any):
        self.bar, self.state, self.report = bar, state, report

    def __enter__(self):
        return self.bar.__enter__()

    def __exit__(self, *exc):
        result = self.bar.__exit__(*exc)
        if exc[0] is None:
            s = Summary.from_controllers(self.state.controllers)
            if callable(self.report):
                self.report(s)
            else:
                print(s, file=sys.stderr)
        return result

    def __getattr__(self, name):
        return getattr(self.bar, name)


def disable(pipe) -> None:
    """Restores the original processors, removes the hooks and ends a recording."""
    state = getattr(pipe, _STATE, None)
    if state is None:
        return
    if state.recorder is not None and not state.recorder.closed:
        state.recorder.close(_disable=False)
    for module, original in state.originals:
        module.set_processor(original)
    for hook in state.hooks:
        hook.remove()
    if state.scheduler is not None and "set_timesteps" in vars(state.scheduler):
        del state.scheduler.set_timesteps
    if getattr(state, "patched_progress_bar", False) and "progress_bar" in vars(pipe):
        del pipe.progress_bar
    setattr(pipe, _STATE, None)


def _state(pipe) -> _PipeState:
    state = getattr(pipe, _STATE, None)
    if state is None:
        raise RuntimeError("moddit.diffusers: not enabled on this pipeline (call enable first)")
    return state


def set_step(pipe, step: int) -> None:
    """Sets the current denoising step explicitly (overrides the timestep)."""
    _state(pipe).tracker.set_step(step)


def reset(pipe, num_steps: Optional[int] = None) -> None:
    """Starts a new generation (policy state, sessions and statistics cleared)."""
    tracker = _state(pipe).tracker
    if num_steps is not None:
        tracker.num_steps = tracker.default_num_steps = int(num_steps)
    tracker.timesteps = None
    tracker.reset()


def step_callback(pipe, chain=None):
    """A callback_on_step_end for the pipeline that tells moddit the step
    explicitly; `chain` is another callback to call after it."""
    tracker = _state(pipe).tracker

    def callback(p, i, t, callback_kwargs: Dict[str, Any]):
        tracker.on_step_end(int(i))
        if chain is not None:
            return chain(p, i, t, callback_kwargs)
        return {}

    return callback


def summary(pipe) -> Summary:
    """Density per layer, time in attention and the estimated speedup of the last
    generation (print it, or read its fields)."""
    return Summary.from_controllers(_state(pipe).controllers)


def record(pipe, path: str, layers: Optional[Iterable[int]] = None,
           steps: Optional[Iterable[int]] = None, slots: Optional[Iterable[int]] = None,
           dtype: Optional[str] = None, source: Optional[str] = None) -> Recorder:
    """Dumps Q/K/V of the chosen layers and steps as a moddit trajectory file
    (safetensors, read by `moddit eval` and `moddit search`).

    If moddit is not enabled on the pipeline yet, it is enabled with policy
    "sdpa" (diffusers' own dense attention, so the run is the original model's).
    slots: which batch items / CFG branches to keep (default all; they must share
    one text length). dtype: "f32", "bf16" or "f16" (default: the model's).
    Use as a context manager, or call .close() after the run to write the file.
    """
    state = getattr(pipe, _STATE, None)
    enabled_here = state is None
    if enabled_here:
        enable(pipe, policy="sdpa")
        state = _state(pipe)
    rec = Recorder(path, layers=layers, steps=steps, slots=slots, dtype=dtype, source=source,
                   tracker=state.tracker, on_close=(lambda: disable(pipe)) if enabled_here else None)
    for ctl in state.controllers:
        ctl.recorder = rec
    state.recorder = rec
    return rec
