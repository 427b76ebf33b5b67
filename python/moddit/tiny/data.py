"""Procedural training videos for moddit-tiny, made on the fly in torch.

A video of family f and seed s is a camera moving over one of scikit-image's
sample photographs (pans, tilts, zooms, rotations; one or two scene cuts in
some), with up to two sprites (soft round cut-outs of other photographs) moving
and spinning in screen space, and brightness ramps or flicker. Every random
choice is drawn by NumPy from SeedSequence([f, s]), so a (family, seed) pair is
the same video on any device (up to float round-off of the sampling); the
device only runs three grid_samples per batch.

Coordinates: grid_sample's normalised [-1, 1]; "physical" units are the
half-height of the image (x scaled by the aspect ratio), so rotations and
speeds do not depend on the aspect.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .families import FAMILIES, Family, family_index

TEXTURE_SIZE = (384, 512)   # (H, W) of every base photograph, aspect 4:3
SPRITE_SIZE = 128
MAX_SPRITES = 2

# Sprite cut-outs: (image, centre row, centre column, half size) in the
# photograph's own pixels.
SPRITE_SOURCES: Tuple[Tuple[str, int, int, int], ...] = (
    ("astronaut", 110, 230, 100),
    ("chelsea", 170, 245, 125),
    ("coffee", 190, 300, 185),
    ("coins", 44, 333, 30),
    ("colorwheel", 185, 185, 184),
    ("logo", 250, 250, 249),
)


def _photo(name: str) -> torch.Tensor:
    """A scikit-image sample image as float32 [3, H, W] in [0, 1]."""
    try:
        import skimage.data
    except ImportError as e:
        raise ImportError("moddit.tiny.data needs scikit-image (pip install scikit-image)") from e
    try:
        img = getattr(skimage.data, name)()
    except Exception as e:  # a version without the file, or one that wants a download
        raise RuntimeError(f"moddit.tiny.data: scikit-image sample image {name!r} is not "
                           f"available ({type(e).__name__}: {e})") from e
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.float32)
    elif img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    else:
        img = img.astype(np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1)


def _resize(img: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return F.interpolate(img[None], size=size, mode="bilinear", align_corners=False,
                         antialias=True)[0].clamp(0.0, 1.0)


def _base_texture(name: str) -> torch.Tensor:
    """The photograph centre-cropped to 4:3 and resized to TEXTURE_SIZE."""
    img = _photo(name)
    _, h, w = img.shape
    th, tw = TEXTURE_SIZE
    if w * th > h * tw:   # too wide
        cw = h * tw // th
        img = img[:, :, (w - cw) // 2:(w - cw) // 2 + cw]
    else:
        ch = w * th // tw
        img = img[:, (h - ch) // 2:(h - ch) // 2 + ch]
    return _resize(img, TEXTURE_SIZE)


def _sprite_texture(name: str, cy: int, cx: int, half: int) -> torch.Tensor:
    """RGBA [4, S, S]: a square crop with a soft round alpha (radius 1 in the
    sprite's own [-1, 1] coordinates)."""
    img = _photo(name)
    _, h, w = img.shape
    y0, y1 = max(0, cy - half), min(h, cy + half)
    x0, x1 = max(0, cx - half), min(w, cx + half)
    rgb = _resize(img[:, y0:y1, x0:x1], (SPRITE_SIZE, SPRITE_SIZE))
    c = (torch.arange(SPRITE_SIZE, dtype=torch.float32) + 0.5) / SPRITE_SIZE * 2 - 1
    rho = torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2)
    alpha = ((1.0 - rho) / 0.08).clamp(0.0, 1.0)
    return torch.cat([rgb, alpha[None]], 0)


@functools.lru_cache(maxsize=None)
def _textures_cpu() -> Tuple[torch.Tensor, torch.Tensor]:
    bases = torch.stack([_base_texture(f.image) for f in FAMILIES])
    sprites = torch.stack([_sprite_texture(*s) for s in SPRITE_SOURCES])
    return bases, sprites


_DEVICE_TEXTURES: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}


def textures(device="cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """(bases [families, 3, 384, 512], sprites [sources, 4, 128, 128]) on `device`."""
    key = str(torch.device(device))
    if key not in _DEVICE_TEXTURES:
        bases, sprites = _textures_cpu()
        _DEVICE_TEXTURES[key] = (bases.to(device), sprites.to(device))
    return _DEVICE_TEXTURES[key]


# --- the random choices of one video ---------------------------------------------------

@dataclass
class VideoPlan:
    """Everything random about one video, per frame (NumPy, float64)."""
    family: int
    seed: int
    base: np.ndarray          # [F, 2, 3] output -> texture affine
    sprite: np.ndarray        # [MAX_SPRITES, F, 2, 3] output -> sprite affine
    sprite_on: np.ndarray     # [MAX_SPRITES] 0/1
    sprite_src: np.ndarray    # [MAX_SPRITES] index into SPRITE_SOURCES
    gain: np.ndarray          # [F] brightness
    cuts: List[int]           # frames where a new shot starts


def _rot(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def _shot(fam: Family, rng: np.random.Generator, frames: int, a_out: float,
          a_tex: float) -> np.ndarray:
    """[frames, 2, 3] base affines of one shot (local time 0..frames-1)."""
    lo, hi = fam.speed
    speed = rng.uniform(lo, hi)
    tau = np.arange(frames, dtype=np.float64)
    zoom, omega, theta0 = rng.uniform(-0.004, 0.004), 0.0, 0.0
    direction = np.zeros(2)
    if fam.motion in ("pan", "tilt", "drift"):
        if fam.pan_dir == (0.0, 0.0):
            angle = rng.uniform(0, 2 * np.pi)
            direction = np.array([np.cos(angle), np.sin(angle)])
        else:
            direction = np.array(fam.pan_dir, dtype=np.float64)
            direction = direction + rng.normal(0, 0.1, 2)  # a little off-axis
        s0 = rng.uniform(0.42, 0.6)
    elif fam.motion == "zoom":        # zoom in (the view shrinks), a slow drift
        zoom, speed = -speed, rng.uniform(0.0, 0.01)
        s0 = rng.uniform(0.65, 0.85)
        direction = rng.normal(0, 1, 2)
    elif fam.motion == "rotate_zoom":  # zoom out while rotating
        zoom, speed = speed, 0.0
        s0 = rng.uniform(0.3, 0.42)
        omega = rng.choice([-1.0, 1.0]) * rng.uniform(0.01, 0.025)
        theta0 = rng.uniform(-0.2, 0.2)
    else:
        raise ValueError(f"moddit.tiny.data: unknown motion {fam.motion!r}")
    scale = s0 * np.exp(zoom * tau)
    theta = theta0 + omega * tau
    # The view's half extents in physical units (x scaled by a_tex) and the room
    # its centre has inside the texture, the worst frame of the shot.
    ex = scale * (np.abs(np.cos(theta)) * a_out + np.abs(np.sin(theta)))
    ey = scale * (np.abs(np.sin(theta)) * a_out + np.abs(np.cos(theta)))
    room = np.array([a_tex - ex.max(), 1.0 - ey.max()]).clip(0.0, None)
    norm = np.linalg.norm(direction)
    step = direction / norm * speed * s0 if norm > 0 else np.zeros(2)
    travel = step * (frames - 1)
    fit = np.min(np.where(np.abs(travel) > 1e-12, 2 * room / np.maximum(np.abs(travel), 1e-12),
                          np.inf))
    if fit < 1.0:
        step, travel = step * fit, travel * fit
    # |travel| <= 2 room now: the start interval is never empty.
    start = np.array([rng.uniform(-room[i] - min(0.0, travel[i]), room[i] - max(0.0, travel[i]))
                      for i in range(2)])
    centre = start[None, :] + step[None, :] * tau[:, None]          # physical
    out = np.zeros((frames, 2, 3))
    for f in range(frames):
        # texture physical = centre + scale R(theta) [a_out x, y]; x_t = X / a_tex.
        m = scale[f] * _rot(theta[f]) @ np.diag([a_out, 1.0])
        m[0] /= a_tex
        out[f, :, :2] = m
        out[f, :, 2] = [centre[f, 0] / a_tex, centre[f, 1]]
    return out


def _triangle(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """x folded back and forth into [lo, hi] (a bounce)."""
    span = hi - lo
    u = np.mod((x - lo) / span, 2.0)
    return lo + span * (1.0 - np.abs(u - 1.0))


def plan(family, seed: int, frames: int, height: int, width: int) -> VideoPlan:
    """The random choices of video (family, seed) at a pixel size (the size only
    sets the aspect ratio: the same seed gives the same motion at any size)."""
    fi = family_index(family)
    fam = FAMILIES[fi]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([fi, int(seed)])))
    a_out = width / height
    a_tex = TEXTURE_SIZE[1] / TEXTURE_SIZE[0]

    def count(bounds, prob):
        lo, hi = bounds
        if lo == hi:
            return lo
        if lo == 0:
            return int(rng.integers(1, hi + 1)) if rng.random() < prob else 0
        return int(rng.integers(lo, hi + 1))

    n_cuts = count(fam.cuts, fam.cut_prob) if frames >= 4 else 0
    cuts = sorted(rng.choice(np.arange(2, frames - 1), size=min(n_cuts, frames - 3),
                             replace=False).tolist()) if n_cuts else []
    bounds = [0] + cuts + [frames]
    base = np.concatenate([_shot(fam, rng, bounds[i + 1] - bounds[i], a_out, a_tex)
                           for i in range(len(bounds) - 1)], 0)

    n_sprites = count(fam.sprites, fam.sprite_prob)
    sprite = np.zeros((MAX_SPRITES, frames, 2, 3))
    sprite[:, :, 0, 0] = sprite[:, :, 1, 1] = 1e3  # inactive: sampled far outside
    sprite_on = np.zeros(MAX_SPRITES)
    sprite_src = np.zeros(MAX_SPRITES, dtype=np.int64)
    others = [i for i, s in enumerate(SPRITE_SOURCES) if s[0] != fam.image]
    tau = np.arange(frames, dtype=np.float64)
    for k in range(n_sprites):
        sprite_on[k] = 1.0
        sprite_src[k] = others[int(rng.integers(len(others)))]
        r = rng.uniform(0.2, 0.38)
        p0 = np.array([rng.uniform(-a_out + r, a_out - r), rng.uniform(-1 + r, 1 - r)])
        angle = rng.uniform(0, 2 * np.pi)
        if fam.name.startswith("cat_"):  # crosses the frame sideways
            angle = rng.choice([0.0, np.pi]) + rng.normal(0, 0.2)
        vel = rng.uniform(0.04, 0.1) * np.array([np.cos(angle), np.sin(angle)])
        phi = rng.uniform(0, 2 * np.pi) + rng.uniform(-0.06, 0.06) * tau
        px = _triangle(p0[0] + vel[0] * tau, -a_out, a_out)
        py = _triangle(p0[1] + vel[1] * tau, -1.0, 1.0)
        for f in range(frames):
            # sprite coords u = R(-phi) ([a_out x, y] - p) / r
            m = _rot(-phi[f]) @ np.diag([a_out, 1.0]) / r
            sprite[k, f, :, :2] = m
            sprite[k, f, :, 2] = -(_rot(-phi[f]) @ np.array([px[f], py[f]])) / r

    ramp = rng.uniform(-fam.ramp, fam.ramp)
    gain = 1.0 + ramp * (tau / max(frames - 1, 1) - 0.5)
    if fam.flicker > 0:
        period = rng.uniform(3.0, 6.0)
        gain = gain + fam.flicker * rng.uniform(0.5, 1.0) * np.sin(
            2 * np.pi * tau / period + rng.uniform(0, 2 * np.pi))
    return VideoPlan(fi, int(seed), base, sprite, sprite_on, sprite_src, gain, cuts)


# --- rendering -----------------------------------------------------------------------

def _grid(affine: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, F, 2, 3] affines -> a grid_sample grid [B, F*H, W, 2] (frames stacked
    along the height, so one grid_sample renders all frames of a video)."""
    B, Fr = affine.shape[:2]
    ys = (torch.arange(height, device=affine.device, dtype=affine.dtype) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, device=affine.device, dtype=affine.dtype) + 0.5) / width * 2 - 1
    m, t = affine[..., :2], affine[..., 2]          # [B, F, 2, 2], [B, F, 2]
    gx = m[..., 0, 0, None, None] * xs + m[..., 0, 1, None, None] * ys[:, None] + t[..., 0, None, None]
    gy = m[..., 1, 0, None, None] * xs + m[..., 1, 1, None, None] * ys[:, None] + t[..., 1, None, None]
    return torch.stack([gx, gy], -1).reshape(B, Fr * height, width, 2)


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """A CPU tensor on `device`, through pinned memory without a wait on CUDA."""
    device = torch.device(device)
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def render(plans: Sequence[VideoPlan], height: int, width: int, device="cpu") -> torch.Tensor:
    """Pixels [B, 3, F, H, W] float32 in [0, 1] of the planned videos."""
    if not plans:
        raise ValueError("moddit.tiny.data: no videos to render")
    frames = plans[0].base.shape[0]
    if any(p.base.shape[0] != frames for p in plans):
        raise ValueError("moddit.tiny.data: the videos of one batch must have the same frames")
    dev = torch.device(device)
    bases, sprites = textures(dev)
    B = len(plans)
    # All per-video numbers in one host-to-device copy (pinned, asynchronous on
    # CUDA: the training loop never waits for the GPU here).
    parts = [np.stack([p.base for p in plans]), np.stack([p.sprite for p in plans]),
             np.stack([p.sprite_on for p in plans]), np.stack([p.sprite_src for p in plans]),
             np.stack([p.gain for p in plans]), np.array([[p.family] for p in plans])]
    flat = torch.from_numpy(np.concatenate([a.reshape(B, -1) for a in parts], 1)
                            .astype(np.float32))
    flat = to_device(flat, dev)
    pieces = torch.split(flat, [a[0].size for a in parts], dim=1)
    base_aff, spr_aff, spr_on, spr_src, gain, fam = (
        x.reshape(a.shape) for x, a in zip(pieces, parts))
    spr_src, fam = spr_src.long(), fam[:, 0].long()

    video = F.grid_sample(bases[fam], _grid(base_aff, height, width), mode="bilinear",
                          padding_mode="reflection", align_corners=False)   # [B, 3, F*H, W]
    for k in range(MAX_SPRITES):
        rgba = F.grid_sample(sprites[spr_src[:, k]], _grid(spr_aff[:, k], height, width),
                             mode="bilinear", padding_mode="zeros", align_corners=False)
        alpha = rgba[:, 3:] * spr_on[:, k].view(B, 1, 1, 1)
        video = video * (1 - alpha) + rgba[:, :3] * alpha
    video = video.view(B, 3, frames, height, width) * gain.view(B, 1, frames, 1, 1)
    return video.clamp_(0.0, 1.0)


def videos(families: Sequence, seeds: Sequence[int], frames: int = 16, height: int = 192,
           width: int = 256, device="cpu") -> torch.Tensor:
    """Pixels [B, 3, F, H, W] in [0, 1]: video (families[i], seeds[i]) for each i."""
    if len(families) != len(seeds):
        raise ValueError(f"moddit.tiny.data: {len(families)} families but {len(seeds)} seeds")
    if frames < 1 or height < 8 or width < 8:
        raise ValueError(f"moddit.tiny.data: bad video size {frames}x{height}x{width}")
    return render([plan(f, s, frames, height, width) for f, s in zip(families, seeds)],
                  height, width, device)


def training_draw(seed: int, step: int, batch: int, cond_drop: float
                  ) -> Tuple[List[int], List[int], List[bool]]:
    """The families, video seeds and condition drops of training step `step`."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(step)])))
    families = rng.integers(0, len(FAMILIES), size=batch).tolist()
    seeds = rng.integers(0, 2 ** 31 - 1, size=batch).tolist()
    drops = (rng.random(batch) < cond_drop).tolist()
    return families, seeds, drops
