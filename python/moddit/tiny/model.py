"""moddit-tiny's transformer: a diffusers WanTransformer3DModel with a small
config, and the model folder it is saved in.

The folder (diffusers' layout of a model, so WanTransformer3DModel.from_pretrained
reads it) holds config.json, the weights in bf16 as safetensors shards under
15 MiB each with their index, PROMPTS_FILE (the prompt embedding table) and a
README.md model card.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any, Dict, Optional, Tuple

import torch

from .families import FAMILIES, PROMPT_TOKENS, prompt_table
from .files import atomic_path, write_text
from . import latent

# Wan's flow-matching time shift, used in training (t's distribution) and in the
# scheduler (the inference timesteps), so both see the same t.
SHIFT = 3.0

# Head dim 128 (the Hopper fast path): 3 heads x 128 = 384 wide, 8 layers.
CONFIG: Dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=3, attention_head_dim=128,
    in_channels=latent.CHANNELS, out_channels=latent.CHANNELS, text_dim=64, freq_dim=256,
    ffn_dim=1536, num_layers=8, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024)

# Latent sizes (frames, height, width): FULL = 16 x 192 x 256 pixels = 16 x 24 x 32
# = 12 288 tokens; SMALL (CPU tests) = 4 x 64 x 64 pixels = 4 x 8 x 8 = 256 tokens.
FULL = (16, 48, 64)
SMALL = (4, 16, 16)

PROMPTS_FILE = "prompt_embeds.safetensors"
SHARD_SIZE = "14MB"       # decimal: 14e6 bytes, under the 15 MiB per file limit


def config(**overrides) -> Dict[str, Any]:
    """CONFIG with overrides (a clear error for a key Wan does not take)."""
    cfg = dict(CONFIG)
    for key, value in overrides.items():
        if key not in cfg:
            raise ValueError(f"moddit.tiny: {key!r} is not a key of the model config (keys: "
                             f"{', '.join(sorted(cfg))})")
        cfg[key] = value
    return cfg


def make_model(seed: int = 0, **overrides):
    """A freshly initialised moddit-tiny transformer (float32, on the CPU)."""
    from diffusers import WanTransformer3DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return WanTransformer3DModel(**config(**overrides))


def num_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model, path: str, prompts: torch.Tensor, card: str = "",
               dtype: torch.dtype = torch.bfloat16) -> Tuple[str, ...]:
    """Writes the model folder; returns the names of the files written."""
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    clone = copy.deepcopy(model).to("cpu")
    # Every tensor in `dtype` (ModelMixin.to would warn about Wan's fp32-kept
    # modules, which from_pretrained(torch_dtype=...) restores on loading).
    for t in list(clone.parameters()) + list(clone.buffers()):
        if t.is_floating_point():
            t.data = t.data.to(dtype)
    clone.save_pretrained(path, safe_serialization=True, max_shard_size=SHARD_SIZE)
    with atomic_path(os.path.join(path, PROMPTS_FILE)) as tmp:
        save_file({"prompt_embeds": prompts.detach().float().cpu().contiguous()}, tmp,
                  metadata={"families": json.dumps([f.name for f in FAMILIES]),
                            "null_prompt": "zeros"})
    if card:
        write_text(os.path.join(path, "README.md"), card)
    return tuple(sorted(os.listdir(path)))


def load_prompts(path: str, text_dim: int) -> torch.Tensor:
    """The prompt table of a model folder (the fixed one if the folder has none)."""
    file = os.path.join(path, PROMPTS_FILE)
    if not os.path.exists(file):
        return prompt_table(text_dim)
    from safetensors.torch import load_file

    table = load_file(file)["prompt_embeds"]
    want = (len(FAMILIES), PROMPT_TOKENS, text_dim)
    if tuple(table.shape) != want:
        raise ValueError(f"moddit.tiny: {file} holds prompt embeddings {tuple(table.shape)}, "
                         f"the model wants {want}")
    return table


def load_model(path: str, device="cpu", dtype: Optional[torch.dtype] = None):
    """(transformer, prompt table) of a model folder."""
    from diffusers import WanTransformer3DModel

    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"moddit.tiny: {path} is not a model folder (no config.json)")
    try:
        import accelerate  # noqa: F401
    except ImportError as e:
        # diffusers loads a model with fp32-kept modules (Wan's norms, time
        # embedder) only with low_cpu_mem_usage, which needs accelerate.
        raise ImportError("moddit.tiny: loading a model folder needs accelerate "
                          "(pip install accelerate): diffusers requires it for Wan") from e
    model = WanTransformer3DModel.from_pretrained(path, torch_dtype=dtype or torch.float32)
    model = model.to(device).eval()
    return model, load_prompts(path, int(model.config.text_dim))
