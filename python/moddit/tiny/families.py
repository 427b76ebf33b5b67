"""The scene families of moddit-tiny's training videos: one "prompt" each.

A family fixes the image and the kind of motion; the seed of a video varies
everything else (speeds, start, scale, sprite paths, cut times, brightness). The
prompt of a family is a fixed random embedding (PROMPT_TOKENS x text_dim, drawn
from PROMPT_SEED), stored with the model; the null prompt (classifier-free
guidance) is all zeros.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch

PROMPT_TOKENS = 16
PROMPT_SEED = 20261124


@dataclass(frozen=True)
class Family:
    name: str
    image: str                    # skimage.data function
    description: str
    motion: str                   # "pan", "zoom", "tilt", "rotate_zoom", "drift"
    pan_dir: Tuple[float, float]  # (x, y) unit direction; (0, 0) = random per seed
    speed: Tuple[float, float]    # view half-widths per frame (pan) or log-scale per frame (zoom)
    sprites: Tuple[int, int]      # (min, max) sprites; max 2
    sprite_prob: float            # chance of min+1.. sprites when min == 0
    cuts: Tuple[int, int]         # (min, max) scene cuts; max 2
    cut_prob: float               # chance of a cut when min == 0
    ramp: float                   # brightness ramp amplitude over the clip (+-)
    flicker: float                # brightness flicker amplitude


FAMILIES: Tuple[Family, ...] = (
    Family("astronaut_pan_right", "astronaut", "astronaut portrait, camera pans right",
           "pan", (1.0, 0.0), (0.03, 0.07), (0, 1), 0.25, (0, 1), 0.15, 0.10, 0.0),
    Family("coffee_zoom_in", "coffee", "coffee cup from above, slow zoom in",
           "zoom", (0.0, 0.0), (0.02, 0.045), (0, 1), 0.25, (0, 1), 0.15, 0.10, 0.0),
    Family("cat_pan_left_sprite", "chelsea", "cat close-up, pan left, a cut-out crosses",
           "pan", (-1.0, 0.0), (0.02, 0.05), (1, 2), 1.0, (0, 1), 0.15, 0.10, 0.0),
    Family("rocket_tilt_up_dusk", "rocket", "rocket on the pad, tilt up, the light changes",
           "tilt", (0.0, -1.0), (0.03, 0.06), (0, 1), 0.25, (0, 1), 0.15, 0.45, 0.0),
    Family("coins_zoom_out_rotate", "coins", "coins on a table, zoom out while rotating",
           "rotate_zoom", (0.0, 0.0), (0.02, 0.04), (0, 1), 0.25, (0, 1), 0.15, 0.10, 0.0),
    Family("cameraman_cuts", "camera", "cameraman, pans with scene cuts",
           "pan", (0.0, 0.0), (0.03, 0.07), (0, 1), 0.25, (1, 2), 1.0, 0.10, 0.0),
    Family("deep_field_drift_twinkle", "hubble_deep_field", "galaxies, slow drift, twinkling",
           "drift", (0.0, 0.0), (0.01, 0.03), (0, 1), 0.25, (0, 1), 0.15, 0.05, 0.25),
    Family("tissue_fast_pan_sprites", "immunohistochemistry",
           "stained tissue, fast pan, two cut-outs bounce", "pan", (0.0, 0.0), (0.06, 0.10),
           (2, 2), 1.0, (0, 1), 0.15, 0.10, 0.0),
)

NUM_FAMILIES = len(FAMILIES)


def prompt_table(text_dim: int, tokens: int = PROMPT_TOKENS,
                 seed: int = PROMPT_SEED) -> torch.Tensor:
    """[NUM_FAMILIES, tokens, text_dim] float32: the fixed prompt embeddings."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(NUM_FAMILIES, tokens, text_dim, generator=g)


def family_index(prompt) -> int:
    """A family's index from its index or name (a clear error otherwise)."""
    if isinstance(prompt, str):
        for i, fam in enumerate(FAMILIES):
            if fam.name == prompt:
                return i
        raise ValueError(f"moddit.tiny: unknown prompt {prompt!r} (known: "
                         f"{', '.join(f.name for f in FAMILIES)})")
    i = int(prompt)
    if not 0 <= i < NUM_FAMILIES:
        raise ValueError(f"moddit.tiny: prompt id {i} out of range 0..{NUM_FAMILIES - 1}")
    return i
