"""Video quality against a reference video: PSNR and SSIM, as the MOD-DiT paper
reports them (the sparse run's video against the dense run's, same prompt, seed
and noise), in torch so that they run where the videos are (GPU or CPU).

Videos are [B, F, H, W, C] (or one [F, H, W, C]) with pixels in [0, 1].

- PSNR of a video: 10 log10(1 / MSE) over all its frames, pixels and channels
  (one MSE per video, not a mean of per-frame PSNRs). Identical videos give
  PSNR_CAP instead of infinity, so that means and JSON stay finite.
- SSIM of a video: the mean over its frames of each frame's SSIM, which is
  skimage.metrics.structural_similarity's default (7 x 7 uniform window, K1 =
  0.01, K2 = 0.03, sample covariance, data_range 1, the mean over the window
  positions that lie inside the frame, channels averaged).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F

PSNR_CAP = 100.0          # dB for identical videos (MSE 0)
SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _as_batch(video: torch.Tensor, ref: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    if not torch.is_tensor(video) or not torch.is_tensor(ref):
        raise TypeError("moddit.quality: videos must be torch tensors")
    if video.shape != ref.shape:
        raise ValueError(f"moddit.quality: video {tuple(video.shape)} and reference "
                         f"{tuple(ref.shape)} differ in shape")
    if video.dim() == 4:
        video, ref = video[None], ref[None]
    if video.dim() != 5:
        raise ValueError(f"moddit.quality: a video batch must be [B, F, H, W, C], got "
                         f"{tuple(video.shape)}")
    return video, ref


def psnr(video: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """[B] PSNR in dB of each video against its reference (float64)."""
    video, ref = _as_batch(video, ref)
    err = (video.double() - ref.double()).pow(2).flatten(1).mean(1)
    out = 10.0 * torch.log10(1.0 / err.clamp_min(10.0 ** (-PSNR_CAP / 10.0)))
    return out.clamp_max(PSNR_CAP)


def ssim(video: torch.Tensor, ref: torch.Tensor, frames_per_chunk: int = 16) -> torch.Tensor:
    """[B] SSIM of each video against its reference: the mean over frames (and
    channels) of skimage's default SSIM. float32 on the GPU, float64 on the CPU."""
    video, ref = _as_batch(video, ref)
    B, Fr, H, W, C = video.shape
    if H < SSIM_WINDOW or W < SSIM_WINDOW:
        raise ValueError(f"moddit.quality: SSIM needs frames of at least {SSIM_WINDOW} x "
                         f"{SSIM_WINDOW} pixels, got {H} x {W}")
    dtype = torch.float64 if video.device.type == "cpu" else torch.float32
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    npix = SSIM_WINDOW * SSIM_WINDOW
    cov_norm = npix / (npix - 1.0)
    out = torch.zeros(B, dtype=torch.float64, device=video.device)
    for b in range(B):
        total = torch.zeros((), dtype=torch.float64, device=video.device)
        for f0 in range(0, Fr, frames_per_chunk):
            # [frames * channels, 1, H, W]: every frame and channel an image.
            x = video[b, f0:f0 + frames_per_chunk].to(dtype).permute(0, 3, 1, 2).reshape(-1, 1, H, W)
            y = ref[b, f0:f0 + frames_per_chunk].to(dtype).permute(0, 3, 1, 2).reshape(-1, 1, H, W)
            # The uniform filter at the positions whose window lies inside the
            # frame: exactly what skimage keeps after cropping (win - 1) / 2.
            mean = lambda t: F.avg_pool2d(t, SSIM_WINDOW, stride=1)
            ux, uy = mean(x), mean(y)
            vx = cov_norm * (mean(x * x) - ux * ux)
            vy = cov_norm * (mean(y * y) - uy * uy)
            vxy = cov_norm * (mean(x * y) - ux * uy)
            s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
            total += s.double().mean((1, 2, 3)).sum()
        out[b] = total / (Fr * C)
    return out


def mean_finite(values) -> float:
    """The mean of a list of floats (NaN if empty)."""
    vals = [float(v) for v in values]
    return sum(vals) / len(vals) if vals else math.nan
