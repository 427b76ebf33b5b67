"""moddit-tiny: the project's own small video DiT, trained in this repo on
procedural videos, as a reference for measuring attention sparsity and quality.

Pure Python on torch + diffusers (moddit's native module is not used):
  families  the scene families ("prompts") and their embedding table
  data      procedural training videos, made on the fly from a seed
  latent    the fixed pixel <-> latent transform (no VAE)
  model     the WanTransformer3DModel config and its model folder
  pipeline  TinyPipeline (prompt id -> video), load_tiny
  train     the flow-matching training loop
  pictures  PNG frame grids and GIFs
"""
from __future__ import annotations

import importlib

from . import data, families, latent  # noqa: F401  (torch only)
from .families import FAMILIES, NUM_FAMILIES, prompt_table  # noqa: F401

_LAZY = {  # name -> submodule (these import diffusers)
    "TinyPipeline": "pipeline", "TinyPipelineOutput": "pipeline", "load_tiny": "pipeline",
    "make_scheduler": "pipeline", "make_model": "model", "save_model": "model",
    "load_model": "model", "CONFIG": "model", "FULL": "model", "SMALL": "model",
}

__all__ = ["FAMILIES", "NUM_FAMILIES", "prompt_table", "data", "families", "latent", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'moddit.tiny' has no attribute {name!r}")
