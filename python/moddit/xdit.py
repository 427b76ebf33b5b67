"""moddit in an xDiT (xfuser) pipeline: block-sparse attention on the GPUs xDiT
spreads a video over, in one call.

    # xDiT sets up its process groups and builds the pipeline as usual, e.g.
    # with its runner or xfuser.core.distributed.initialize_model_parallel(...)
    # and a transformer from xfuser.model_executor.models.transformers.
    import moddit.xdit
    moddit.xdit.enable(pipe, policy="moddit", target_density=0.22)
    video = pipe(prompt, ...).frames[0]

The pipeline's transformer is xDiT's wrapper of the diffusers model
(xFuserWanTransformer3DWrapper, xFuserHunyuanVideoTransformer3DWrapper): it
splits the sequence over xDiT's sequence-parallel group and moddit's
processors then run every self-attention as moddit Ulysses / ring attention on
xDiT's own Ulysses and ring groups (moddit.parallel), with xDiT's split (Wan:
padded to a multiple of the rank count, the padding excluded as keys;
HunyuanVideo: video chunks, the text split when its length divides, else whole
on every rank). Cross-attention, the MLPs, the VAE and CFG parallelism stay
xDiT's. See docs/PARALLEL.md.
"""
from __future__ import annotations

from typing import Any

from . import diffusers as _md


def enable(pipe, policy: Any = "moddit", **kwargs: Any):
    """moddit.diffusers.enable(pipe, policy, parallel="xdit", **kwargs): every
    option of that call (config=, target_density=, dense_calls=, report=, ...)."""
    kwargs.setdefault("parallel", "xdit")
    return _md.enable(pipe, policy, **kwargs)


disable = _md.disable
summary = _md.summary

__all__ = ["enable", "disable", "summary"]
