#!/usr/bin/env python3
"""moddit's CUDA attention beside PyTorch's SDPA (cuDNN and flash backends) and
FlexAttention, in one process, on the same inputs and the same block layouts.

For every shape (B=1, bf16) and density it builds a layout (random, or
MOD-DiT-shaped: diagonals nearest the main one, key columns and sometimes the
frame block-diagonal, grown until the target video density), runs

  moddit   dense (no layout) or block-sparse over the layout   (the moddit Python module)
  cudnn    SDPA, SDPBackend.CUDNN_ATTENTION   (dense only: it has no block mask)
  flash    SDPA, SDPBackend.FLASH_ATTENTION   (dense only)
  flex     torch.compile'd flex_attention with BlockMask.from_kv_blocks of the same layout

checks every output against an fp32 reference on 512 sampled query rows of two
heads (relative L2 error, at most AGREE; the run exits 1 after the table when one
is beyond it), and prints one table of median
times and effective TFLOP/s = 4*B*H*D*sum(live query x key pairs)/t (each
implementation's calls queued back to back, the implementations' runs alternating:
see bench_ms).

Run on the GPU machine with the module on PYTHONPATH (scripts/gpu_bench.sh builds it):
  python3 scripts/bench_gpu.py
"""
import argparse
import datetime
import json
import math
import os
import sys

import numpy as np
import torch

import moddit
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, flex_attention

SHAPES = {  # name: (heads, head dim, frames, height, width); video only, N = f*h*w
    "wan": (40, 128, 21, 30, 52),      # Wan2.1-14B 480p, N = 32760
    "hunyuan": (24, 128, 21, 45, 80),  # HunyuanVideo-like, N = 75600
    "cog": (48, 64, 23, 32, 48),       # CogVideoX-like, N = 35328
}


def video_layout(kind, density, H, nb, tokens_per_frame, bs, N, rng):
    """[H, nb, nb] bool masks; diagonal always live."""
    masks = np.zeros((H, nb, nb), dtype=bool)
    idx = np.arange(nb)
    starts = np.minimum(idx * bs, N)
    ends = np.minimum(starts + bs, N)
    for h in range(H):
        m = masks[h]
        m[idx, idx] = True
        if kind == "random":
            p = max(0.0, (density - 1.0 / nb) / (1.0 - 1.0 / nb))
            m |= rng.random((nb, nb)) < p
            continue
        target = math.ceil(density * nb * nb)
        if rng.random() < 0.3 and density >= 0.2:  # frame block-diagonal
            f0, f1 = starts // tokens_per_frame, (ends - 1) // tokens_per_frame
            fm = (f0[:, None] <= f1[None, :]) & (f0[None, :] <= f1[:, None])
            flat = np.flatnonzero(fm & ~m)[: max(0, target - int(m.sum()))]
            m.flat[flat] = True
        cols = rng.permutation(nb)
        col_share = 0.5 * rng.random()
        nc, nd = 0, 1
        while m.sum() < target and (nc < nb or nd < nb):
            if nc < nb and (rng.random() < col_share or nd >= nb):
                m[:, cols[nc]] = True
                nc += 1
            else:
                m[idx[:-nd], idx[nd:]] = True
                m[idx[nd:], idx[:-nd]] = True
                nd += 1
    return masks


# The largest relative L2 error against the fp32 reference on sampled rows that a
# bf16 kernel may show: one bf16 unit roundoff. A correct kernel's error comes
# from rounding P and the output to bf16, well below it; a missing or extra
# block, or a wrong row, is far above it.
AGREE = 2.0 ** -8


def csr(masks):
    """The CSR arrays (row_ptr, col_idx; batch 1) of [H, nb, nb] boolean block masks."""
    counts = masks.sum(-1).astype(np.int32)
    row_ptr = np.zeros(masks.shape[0] * masks.shape[1] + 1, dtype=np.int32)
    row_ptr[1:] = np.cumsum(counts.reshape(-1))
    col_idx = np.ascontiguousarray(np.nonzero(masks.reshape(-1, masks.shape[2]))[1].astype(np.int32))
    return row_ptr, col_idx


def reference_rows(q, k, v, masks, rows, heads, N, bs=128):
    """fp32 attention for `rows` query rows of `heads` ([1, N, H, D] inputs), over
    the live keys of `bs`-token blocks (masks [H, nb, nb], None = dense)."""
    out = []
    for h in heads:
        qh = q[0, rows, h].float()
        s = (qh @ k[0, :, h].float().T) / math.sqrt(q.shape[-1])
        if masks is not None:
            key_block = torch.arange(N, device=q.device) // bs
            live = torch.from_numpy(masks[h]).to(q.device)[torch.as_tensor(rows, device=q.device) // bs][:, key_block]
            s = s.masked_fill(~live, float("-inf"))
        out.append(torch.softmax(s, -1) @ v[0, :, h].float())
    return torch.stack(out, 1)  # [rows, heads, D]


def accuracy(o, ref, rows, heads):
    """(relative L2 error, cosine similarity) of o's sampled rows against reference_rows."""
    x = o[0, rows][:, heads].float()
    rel = float((x - ref).norm() / ref.norm())
    cos = float(torch.nn.functional.cosine_similarity(x.flatten(), ref.flatten(), dim=0))
    return rel, cos


def bench_ms(fns, iters):
    """Milliseconds per call of each function, timed by CUDA events around `reps`
    calls queued back to back (each call's host work overlaps the previous call's
    kernels; a run lasts about 25 ms), the functions' runs alternating: the GPU is
    power-capped and its clock drifts over seconds, so timing one implementation
    after another would hand the later ones a hotter, slower clock. Median of
    `iters` runs each."""
    def run(fn, reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps):
            fn()
        b.record()
        torch.cuda.synchronize()
        return a.elapsed_time(b) / reps
    reps = {}
    for impl, fn in fns.items():
        run(fn, 1)  # warm-up
        reps[impl] = min(200, max(1, int(25.0 / max(run(fn, 1), 1e-3))))
    times = {impl: [] for impl in fns}
    for _ in range(iters):
        for impl, fn in fns.items():
            times[impl].append(run(fn, reps[impl]))
    return {impl: float(np.median(t)) for impl, t in times.items()}


def sdpa_on(backend, q, k, v):
    """SDPA pinned to one backend at every call (the timed calls run later, outside
    any `sdpa_kernel` block of the caller)."""
    def fn():
        with sdpa_kernel([backend]):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return fn


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="wan,hunyuan,cog")
    ap.add_argument("--densities", default="1,0.5,0.2,0.1,0.05")
    ap.add_argument("--layouts", default="random,moddit")
    ap.add_argument("--iters", type=int, default=5, help="timed runs of ~25 ms per implementation (median)")
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    backend = moddit.get_backend("cuda")
    dev = torch.cuda.get_device_name()
    print(f"device: {dev}; torch {torch.__version__}; {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC")
    print("command: python3 " + " ".join(sys.argv))
    flex = torch.compile(flex_attention, dynamic=False)
    bs = 128
    rows, failed = [], []
    hdr = f"{'shape':8} {'layout':7} {'dens':>5} {'impl':7} {'ms':>9} {'TFLOP/s':>8} {'rel.err':>8}"
    print(hdr)
    for name in args.shapes.split(","):
        shape = SHAPES[name]
        H, D, F, hh, ww = shape
        N = F * hh * ww
        tokens = moddit.TokenLayout(frames=F, height=hh, width=ww)
        nb = moddit.make_block_grid(tokens, bs).num_blocks
        torch.manual_seed(0)
        q, k, v = (torch.randn(1, N, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # [B, H, N, D] views for torch
        out = torch.empty_like(q)
        ref_rows = np.linspace(0, N - 1, 512).astype(np.int64)  # spread over every frame
        ref_heads = [0, H - 1]
        blen = np.minimum(np.arange(nb) * bs + bs, N) - np.arange(nb) * bs
        rng = np.random.default_rng(1234)
        for dstr in args.densities.split(","):
            density = float(dstr)
            for kind in args.layouts.split(","):
                if density >= 1.0 and kind != args.layouts.split(",")[0]:
                    continue
                fns, outs = {}, {}
                if density >= 1.0:
                    lname, masks, layout = "dense", None, None
                    pairs = float(H) * N * N
                else:
                    lname = kind
                    masks = video_layout(kind, density, H, nb, hh * ww, bs, N, rng)
                    layout = moddit.BlockLayout(1, H, nb, nb, *csr(masks))
                    bl = blen.astype(np.float64)
                    pairs = float(sum(bl @ masks[h].astype(np.float64) @ bl for h in range(H)))
                real_density = pairs / (float(H) * N * N)
                flops = 4.0 * D * pairs

                def run_moddit():
                    moddit.attention(q, k, v, tokens, layout=layout, out=out, block_size=bs,
                                     backend=backend)
                run_moddit()
                fns["moddit"], outs["moddit"] = run_moddit, out.clone()
                if masks is None:
                    for impl, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
                        try:
                            fn = sdpa_on(be, qt, kt, vt)
                            o = fn()
                            fns[impl], outs[impl] = fn, o.transpose(1, 2)
                        except Exception as e:  # a backend that refuses the shape
                            print(f"  {impl}: not run ({str(e).splitlines()[0][:100]})")
                if not args.no_flex:
                    try:
                        if masks is None:
                            bm = None
                        else:
                            tm = torch.from_numpy(masks).cuda()
                            cnt = tm.sum(-1).to(torch.int32)[None]
                            order = torch.argsort((~tm).to(torch.int8), dim=-1, stable=True).to(torch.int32)[None]
                            zeros = torch.zeros_like(cnt)
                            bm = BlockMask.from_kv_blocks(zeros, order, cnt, order, BLOCK_SIZE=bs,
                                                          seq_lengths=(N, N))
                        fn = lambda: flex(qt, kt, vt, block_mask=bm)
                        o = fn()
                        fns["flex"], outs["flex"] = fn, o.transpose(1, 2)
                    except Exception as e:
                        print(f"  flex: not run ({str(e).splitlines()[0][:160]})")
                ref = reference_rows(q, k, v, masks, ref_rows, ref_heads, N, bs)
                ms_of = bench_ms(fns, args.iters)
                for impl, ms in ms_of.items():
                    err = accuracy(outs[impl], ref, ref_rows, ref_heads)[0]
                    tf = flops / (ms * 1e-3) / 1e12
                    print(f"{name:8} {lname:7} {real_density:5.3f} {impl:7} {ms:9.3f} {tf:8.1f} {err:8.1e}", flush=True)
                    rows.append(dict(shape=name, layout=lname, target_density=density, density=real_density,
                                     impl=impl, ms=ms, tflops=tf, rel_err=err))
                    if not err <= AGREE:
                        failed.append(f"{name} {lname} {density:g} {impl}: rel.err {err:.2e} > {AGREE:.2e}")
                del fns, outs
                torch.cuda.empty_cache()
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(device=dev, torch=torch.__version__, date=f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M}",
                           command=" ".join(sys.argv), rows=rows), f, indent=1)
        os.replace(tmp, args.json)
    if failed:
        print(f"bench_gpu: {len(failed)} output(s) disagree with moddit's beyond {AGREE:.2e}:", file=sys.stderr)
        for f in failed:
            print("  " + f, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
