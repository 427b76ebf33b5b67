"""moddit-tiny's latent space: a fixed linear transform of the pixels (no VAE).

encode, per 4x4 pixel patch of every frame:
  1. pixels in [0, 1] -> [-1, 1];
  2. an orthonormal colour transform: luma (R+G+B)/sqrt3 and two chroma axes
     (R-B)/sqrt2, (R-2G+B)/sqrt6;
  3. an orthonormal 2D DCT-II of each 4x4 patch of each colour plane
     (48 coefficients per patch);
  4. keep the 16 lowest frequencies: luma (u, v) with u + v <= 3 (10), each chroma
     (0,0), (0,1), (1,0) (3 + 3); u is the vertical, v the horizontal frequency;
  5. per channel, subtract a fixed mean and divide by a fixed scale (measured once
     on the training videos, CHANNEL_MEAN / CHANNEL_STD below) to about zero mean
     and unit variance.
Pixels [B, 3, F, H, W] -> latents [B, 16, F, H/4, W/4]: no temporal compression.

decode is the exact inverse with the 32 dropped coefficients set to zero, so
decode(encode(x)) is the orthogonal projection of x onto the kept subspace (exact
for x inside it). Steps 2-4 are one matrix with orthonormal rows, BASIS [16, 48].
"""
from __future__ import annotations

import math
from typing import List, Tuple

import torch

PATCH = 4          # pixels per latent pixel, each way
CHANNELS = 16      # latent channels

# (colour plane, u, v) of each kept coefficient, in channel order.
KEPT: List[Tuple[int, int, int]] = (
    [(0, u, v) for s in range(4) for u in range(s + 1) for v in range(s + 1) if u + v == s]
    + [(c, u, v) for c in (1, 2) for (u, v) in ((0, 0), (0, 1), (1, 0))]
)

# Measured once by stats() on 256 training videos (16 x 192 x 256; seeds 0..31 of
# every family): part of the model's definition, never re-measured.
CHANNEL_MEAN = [-1.6843, -0.0026, 0.0038, 0.0001, -0.0000, 0.0001, -0.0002, -0.0000, 0.0000,
                0.0003, 0.6330, 0.0007, -0.0005, 0.1482, 0.0003, -0.0006]
CHANNEL_STD = [3.4682, 0.4544, 0.4334, 0.1831, 0.1983, 0.1634, 0.0820, 0.1050, 0.1012,
               0.0694, 1.2553, 0.1071, 0.0980, 0.3749, 0.0469, 0.0457]


def _colour() -> torch.Tensor:
    """[3, 3] orthonormal: rows luma, chroma1, chroma2 of RGB."""
    return torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0]],
                        dtype=torch.float64) / torch.tensor(
        [[math.sqrt(3.0)], [math.sqrt(2.0)], [math.sqrt(6.0)]], dtype=torch.float64)


def _dct(n: int = PATCH) -> torch.Tensor:
    """[n, n] orthonormal DCT-II: row k is frequency k."""
    i = torch.arange(n, dtype=torch.float64)
    k = i[:, None]
    d = torch.cos(math.pi * (2 * i[None, :] + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


def basis() -> torch.Tensor:
    """[16, 48] float64 with orthonormal rows: kept coefficient <- (colour, i, j)
    of a 4x4 RGB patch flattened as c * 16 + i * 4 + j (i row, j column)."""
    colour, dct = _colour(), _dct()
    rows = []
    for plane, u, v in KEPT:
        # coefficient = sum_{c,i,j} colour[plane, c] dct[u, i] dct[v, j] x[c, i, j]
        rows.append(torch.einsum("c,i,j->cij", colour[plane], dct[u], dct[v]).reshape(-1))
    return torch.stack(rows)


BASIS = basis()


_CONSTS = {}


def _consts(like: torch.Tensor):
    """(basis, mean, std) as float32 on like's device (made once per device: a
    copy per call would make the training loop wait for the GPU)."""
    key = str(like.device)
    if key not in _CONSTS:
        dev = like.device
        _CONSTS[key] = (BASIS.to(device=dev, dtype=torch.float32),
                        torch.tensor(CHANNEL_MEAN, device=dev).view(1, CHANNELS, 1, 1, 1),
                        torch.tensor(CHANNEL_STD, device=dev).view(1, CHANNELS, 1, 1, 1))
    return _CONSTS[key]


def _check(x: torch.Tensor, channels: int, what: str) -> None:
    if x.ndim != 5 or x.shape[1] != channels:
        raise ValueError(f"moddit.tiny.latent: {what} must be [B, {channels}, F, H, W], got "
                         f"{tuple(x.shape)}")


def coefficients(pixels: torch.Tensor) -> torch.Tensor:
    """The unscaled kept coefficients [B, 16, F, H/4, W/4] of pixels [B, 3, F, H, W]."""
    _check(pixels, 3, "pixels")
    B, _, F, H, W = pixels.shape
    if H % PATCH or W % PATCH:
        raise ValueError(f"moddit.tiny.latent: pixel height and width must be multiples of "
                         f"{PATCH}, got {H}x{W}")
    b, _, _ = _consts(pixels)
    x = pixels.float() * 2.0 - 1.0
    x = x.reshape(B, 3, F, H // PATCH, PATCH, W // PATCH, PATCH)
    x = x.permute(0, 2, 3, 5, 1, 4, 6).reshape(B, F, H // PATCH, W // PATCH, 3 * PATCH * PATCH)
    z = x @ b.t()                                      # [B, F, h, w, 16]
    return z.permute(0, 4, 1, 2, 3).contiguous()


def encode(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels [B, 3, F, H, W] in [0, 1] -> latents [B, 16, F, H/4, W/4] (float32)."""
    _, mean, std = _consts(pixels)
    return (coefficients(pixels) - mean) / std


def decode(latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Latents [B, 16, F, h, w] -> pixels [B, 3, F, 4h, 4w] (float32; clamped to [0, 1]
    unless clamp=False)."""
    _check(latents, CHANNELS, "latents")
    B, _, F, h, w = latents.shape
    b, mean, std = _consts(latents)
    z = latents.float() * std + mean
    x = z.permute(0, 2, 3, 4, 1) @ b                   # [B, F, h, w, 48]
    x = x.reshape(B, F, h, w, 3, PATCH, PATCH).permute(0, 4, 1, 2, 5, 3, 6)
    x = x.reshape(B, 3, F, h * PATCH, w * PATCH) * 0.5 + 0.5
    return x.clamp(0.0, 1.0) if clamp else x


def stats(pixels: torch.Tensor) -> Tuple[List[float], List[float]]:
    """Per-channel mean and standard deviation of the unscaled coefficients (how
    CHANNEL_MEAN and CHANNEL_STD were measured)."""
    z = coefficients(pixels).double().transpose(0, 1).reshape(CHANNELS, -1)
    return z.mean(1).tolist(), z.std(1).tolist()
