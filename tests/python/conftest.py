"""Shared helpers of the Python tests: tiny randomly initialised diffusers models
of each supported family, and a NumPy reference for attention."""
from __future__ import annotations

import os

import numpy as np
import pytest

import moddit

# Two cores in CI: keep the CPU backend from oversubscribing alongside torch.
moddit.set_cpu_threads(int(os.environ.get("MODDIT_TEST_THREADS", "2")))


def has_torch() -> bool:
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def has_diffusers() -> bool:
    try:
        import diffusers  # noqa: F401
        return has_torch()
    except ImportError:
        return False


def has_cuda() -> bool:
    if not moddit.cuda_available():
        return False
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


needs_torch = pytest.mark.skipif(not has_torch(), reason="PyTorch is not installed")
needs_diffusers = pytest.mark.skipif(not has_diffusers(), reason="diffusers is not installed")
needs_cuda = pytest.mark.skipif(not has_cuda(), reason="no CUDA device (or moddit built without CUDA)")


def rel_err(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def reference_attention(q, k, v, tokens=None, block_mask=None, block_starts=None, scale=None):
    """fp64 attention over [B, N, H, D]: padded text keys excluded; block_mask
    [B, H, nb, nb] (1 = live) over block_starts. Returns (out, lse [B, H, N])."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    v = np.asarray(v, np.float64)
    B, N, H, D = q.shape
    scale = scale or 1.0 / np.sqrt(D)
    s = np.einsum("bnhd,bmhd->bhnm", q, k) * scale
    allowed = np.ones((B, H, N, N), dtype=bool)
    if tokens is not None and tokens.pad_end > tokens.pad_begin:
        allowed[..., tokens.pad_begin:tokens.pad_end] = False
    if block_mask is not None:
        tok_block = np.zeros(N, dtype=np.int64)
        for i in range(len(block_starts) - 1):
            tok_block[block_starts[i]:block_starts[i + 1]] = i
        live = block_mask[:, :, tok_block][:, :, :, tok_block].astype(bool)
        allowed &= live
    s = np.where(allowed, s, -np.inf)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(s - m)
    denom = p.sum(-1, keepdims=True)
    lse = (np.log(denom) + m)[..., 0]
    out = np.einsum("bhnm,bmhd->bnhd", p / np.where(denom > 0, denom, 1), v)
    return out, lse


# --- tiny diffusers models ----------------------------------------------------------

def tiny_wan(num_layers=2, seed=0):
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=64, in_channels=4,
        out_channels=4, text_dim=16, freq_dim=16, ffn_dim=64, num_layers=num_layers,
        rope_max_seq_len=64).eval()


def tiny_hunyuan(seed=0):
    import torch
    from diffusers import HunyuanVideoTransformer3DModel

    torch.manual_seed(seed)
    return HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=64,
        num_layers=1, num_single_layers=2, num_refiner_layers=1, mlp_ratio=2.0, patch_size=2,
        patch_size_t=1, text_embed_dim=16, pooled_projection_dim=8, guidance_embeds=False,
        rope_axes_dim=(16, 24, 24)).eval()


def tiny_cogvideox(rotary=False, seed=0):
    import torch
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(seed)
    return CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=64, in_channels=4, out_channels=4,
        time_embed_dim=8, text_embed_dim=16, num_layers=2, sample_width=16, sample_height=16,
        sample_frames=9, patch_size=2, max_text_seq_length=13, temporal_compression_ratio=4,
        use_rotary_positional_embeddings=rotary,
        use_learned_positional_embeddings=False).eval()
