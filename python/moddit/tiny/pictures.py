"""Videos as pictures: PNG grids of frames (rows of videos, labelled) and an
animated GIF of several videos side by side. Needs Pillow."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from .files import atomic_path


def _pil():
    try:
        from PIL import Image, ImageDraw
    except ImportError as e:
        raise ImportError("moddit.tiny.pictures needs Pillow (pip install pillow)") from e
    return Image, ImageDraw


def to_uint8(video) -> np.ndarray:
    """[F, H, W, 3] floats in [0, 1] (torch or NumPy) -> uint8 NumPy."""
    if hasattr(video, "detach"):
        video = video.detach().float().cpu().numpy()
    v = np.asarray(video, dtype=np.float32)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise ValueError(f"moddit.tiny.pictures: a video must be [F, H, W, 3], got {v.shape}")
    return (np.clip(v, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def frame_grid(videos: Sequence, labels: Optional[Sequence[str]] = None, every: int = 2,
               gap: int = 4, label_height: int = 14):
    """A PIL image: one row per video, every `every`-th frame left to right, each
    row under its label."""
    Image, ImageDraw = _pil()
    vids = [to_uint8(v)[::every] for v in videos]
    if not vids:
        raise ValueError("moddit.tiny.pictures: no videos")
    n, h, w = max(v.shape[0] for v in vids), vids[0].shape[1], vids[0].shape[2]
    lh = label_height if labels else 0
    canvas = Image.new("RGB", (n * (w + gap) - gap, len(vids) * (h + lh + gap) - gap), "white")
    draw = ImageDraw.Draw(canvas)
    for r, v in enumerate(vids):
        y = r * (h + lh + gap)
        if labels:
            draw.text((2, y + 1), str(labels[r]), fill=(0, 0, 0))
        for c in range(v.shape[0]):
            canvas.paste(Image.fromarray(v[c]), (c * (w + gap), y + lh))
    return canvas


def save_png(path: str, image) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def save_frame_grid(path: str, videos: Sequence, labels: Optional[Sequence[str]] = None,
                    every: int = 2) -> None:
    save_png(path, frame_grid(videos, labels, every))


def save_gif(path: str, videos: Sequence, columns: int = 4, fps: float = 8.0,
             gap: int = 2) -> None:
    """The videos tiled `columns` wide, playing together, looping."""
    Image, _ = _pil()
    vids: List[np.ndarray] = [to_uint8(v) for v in videos]
    if not vids:
        raise ValueError("moddit.tiny.pictures: no videos")
    f, h, w = vids[0].shape[:3]
    rows = (len(vids) + columns - 1) // columns
    cols = min(columns, len(vids))
    tiles = np.full((f, rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for i, v in enumerate(vids):
        r, c = divmod(i, columns)
        tiles[:, r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = v[:f]
    images = [Image.fromarray(t) for t in tiles]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 / fps), loop=0)


def save_loss_plot(path: str, history: Sequence[dict], title: str = "moddit-tiny training") -> None:
    """Training loss (per logged interval) and validation loss against the step,
    log scale, from train.Result.history; matplotlib (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if h.get("event") == "train"]
    val = [(h["step"], h["val_loss"]) for h in history if h.get("event") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), lw=1, alpha=0.8, label="training loss (per logged interval)")
    if val:
        ax.plot(*zip(*val), "o-", ms=3, label="validation loss (fixed videos, t and noise)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching MSE")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
