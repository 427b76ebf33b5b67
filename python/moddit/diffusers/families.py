"""What moddit needs to know about each supported diffusers model family: its
self-attention modules in layer order, where text sits, and the latent token
grid of a forward call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple


@dataclass
class Family:
    name: str                 # "wan", "hunyuan_video", "cogvideox"
    text_position: str        # "none", "after", "before"
    # (module, processor class) of each self-attention in layer order.
    attention_modules: Callable[[Any], List[Any]]
    # (frames, height, width) of the latent token grid for a forward's latents.
    token_grid: Callable[[Any, Tuple[int, ...]], Tuple[int, int, int]]
    # The forward argument holding the text mask [B, T] (1 = real token), if any.
    text_mask_arg: Optional[str] = None


def _patch3(model) -> Tuple[int, int, int]:
    cfg = model.config
    if cfg.get("patch_size_t", None) is not None or isinstance(cfg.patch_size, int):
        p = int(cfg.patch_size)
        pt = cfg.get("patch_size_t", None)
        return (int(pt) if pt else 1, p, p)
    p_t, p_h, p_w = cfg.patch_size
    return int(p_t), int(p_h), int(p_w)


def _grid_bcfhw(model, shape):  # latents [B, C, F, H, W] (Wan, HunyuanVideo)
    p_t, p_h, p_w = _patch3(model)
    _, _, f, h, w = shape
    return f // p_t, h // p_h, w // p_w


def _grid_cogvideox(model, shape):  # latents [B, F, C, H, W]
    cfg = model.config
    p = int(cfg.patch_size)
    p_t = cfg.get("patch_size_t", None)
    _, f, _, h, w = shape
    frames = f if not p_t else (f + int(p_t) - 1) // int(p_t)
    return frames, h // p, w // p


def _wan_modules(model):
    return [blk.attn1 for blk in model.blocks]


def _hunyuan_modules(model):
    return [blk.attn for blk in model.transformer_blocks] + [
        blk.attn for blk in model.single_transformer_blocks]


def _cogvideox_modules(model):
    return [blk.attn1 for blk in model.transformer_blocks]


FAMILIES = {
    "WanTransformer3DModel": Family("wan", "none", _wan_modules, _grid_bcfhw),
    "HunyuanVideoTransformer3DModel": Family(
        "hunyuan_video", "after", _hunyuan_modules, _grid_bcfhw,
        text_mask_arg="encoder_attention_mask"),
    "CogVideoXTransformer3DModel": Family("cogvideox", "before", _cogvideox_modules,
                                          _grid_cogvideox),
}


def family_of(model) -> Family:
    for cls in type(model).__mro__:
        fam = FAMILIES.get(cls.__name__)
        if fam is not None:
            return fam
    raise TypeError(
        f"moddit.diffusers: {type(model).__name__} is not supported (supported: "
        f"{', '.join(FAMILIES)})")
