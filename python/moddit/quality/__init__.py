"""moddit.quality: quality of generated videos with block-sparse attention, on
moddit-tiny (the reference model trained in this repo), measured as the MOD-DiT
paper measures it: PSNR and SSIM of each policy's videos against the dense
videos of the same (prompt, seed, noise), at equal measured density, with
recall and rel_l2 of the attention along the run (docs/QUALITY.md).

  metrics      PSNR and SSIM of videos (torch)
  attention    dense block mass, the oracles, recall and rel_l2 of a call
  baselines    oracle, window, radial and SVG as Session policies
  hooks        the attention hook: policy inputs, warm-up, shadow metrics
  stats        the trained model's attention statistics (dense run)
  calibration  Sparse-vDiT's calibration recording and search (on the evaluation's device)
  plan, run    what is run, in priority order, within a time budget
  cli          `python -m moddit.quality` / scripts/quality.py
"""
from .metrics import psnr, ssim  # noqa: F401

__all__ = ["psnr", "ssim"]
