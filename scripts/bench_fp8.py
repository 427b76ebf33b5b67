#!/usr/bin/env python3
"""moddit's FP8 attention beside its exact (bf16) kernels, cuDNN (SDPA), FlexAttention
and SageAttention, in one process, on the same inputs and layouts (H200/H100).

For every shape (B=1, bf16 inputs, NHD) it times, calls queued back to back and
the implementations' runs alternating (scripts/bench_gpu.py's bench_ms):

  exact      moddit.attention(..., precision="exact")   dense or block-sparse
  fp8        moddit.attention(..., precision="fp8")     the quantization included
  exact+map  exact forward + exact map pass (a MOD-DiT record call)      dense only
  fp8+map    FP8 forward + FP8 map pass                                  dense only
  cudnn      SDPA, SDPBackend.CUDNN_ATTENTION                            dense only
  sage       sageattention.sageattn (PyPI 1.0.6: Triton, INT8 QK, fp16 PV) dense only
  flex       torch.compile'd flex_attention over the same block mask     sparse only

and the accuracy of each output against fp32 attention computed for 2 heads x
512 query rows spread over the sequence (the same live keys): relative L2 and
cosine similarity. Effective TFLOP/s = 4 * H * D * (live query x key pairs) / t.
One FP8 call per shape runs under torch.profiler: the quantization kernels'
share of the call is printed.

    python3 scripts/bench_fp8.py                       # wan, cog, hunyuan; dense, 0.2, 0.1
    python3 scripts/bench_fp8.py --shapes wan --densities 1,0.15 --no-flex
"""
import argparse
import datetime
import json
import os
import sys

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gpu import SHAPES, accuracy, bench_ms, csr, reference_rows, video_layout  # noqa: E402  (one of each)

import moddit  # noqa: E402

BS = 128


def quantize_share(fn):
    """(quantization us, whole call us, {kernel: us}) of one FP8 call, from the profiler."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    quant = total = 0.0
    kernels = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0.0)
        if t <= 0 or "kernel" not in e.key.lower():
            continue
        total += t
        kernels[e.key.split("<")[0].split("(")[0][-40:]] = t
        if "quantize" in e.key:
            quant += t
    return quant, total, kernels


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="wan,cog,hunyuan")
    ap.add_argument("--densities", default="1,0.2,0.1")
    ap.add_argument("--layouts", default="random,moddit")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--no-sage", action="store_true")
    ap.add_argument("--calls-only", action="store_true",
                    help="run every call once and time nothing (for Nsight Compute)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    dev = torch.cuda.get_device_name()
    stamp = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    print(f"device: {dev}; torch {torch.__version__}; {stamp}")
    print("command: python3 " + " ".join(sys.argv))
    sage = None
    if not args.no_sage:
        try:
            from sageattention import sageattn
            sage = sageattn
        except Exception as e:  # not installed
            print(f"sage: not run ({str(e).splitlines()[0][:100]})")
    flex = None
    if not args.no_flex:
        from torch.nn.attention.flex_attention import BlockMask, flex_attention
        flex = torch.compile(flex_attention, dynamic=False)
    rows_out = []
    print(f"{'shape':8} {'layout':7} {'dens':>5} {'impl':9} {'ms':>8} {'TFLOP/s':>8} {'rel_l2':>8} {'cosine':>9}")
    for name in args.shapes.split(","):
        H, D, F, hh, ww = SHAPES[name]
        N = F * hh * ww
        nb = (N + BS - 1) // BS
        torch.manual_seed(0)
        q, k, v = (torch.randn(1, N, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        tokens = moddit.TokenLayout(frames=F, height=hh, width=ww)
        out = torch.empty_like(q)
        blen = np.minimum(np.arange(nb) * BS + BS, N) - np.arange(nb) * BS
        rng = np.random.default_rng(1234)
        ref_rows = np.linspace(0, N - 1, 512).astype(np.int64)
        ref_heads = [0, 1]
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
                    masks = video_layout(kind, density, H, nb, hh * ww, BS, N, rng)
                    rp, ci = csr(masks)
                    layout = moddit.BlockLayout(1, H, nb, nb, rp, ci)
                    bl = blen.astype(np.float64)
                    pairs = float(sum(bl @ masks[h].astype(np.float64) @ bl for h in range(H)))
                flops = 4.0 * D * pairs

                def md(precision, with_map=False):
                    def fn():
                        return moddit.attention(q, k, v, tokens, layout=layout, out=out, precision=precision,
                                                return_map=with_map)
                    return fn
                for impl, prec in (("exact", "exact"), ("fp8", "fp8")):
                    fns[impl] = md(prec)
                    fns[impl]()
                    outs[impl] = out.clone()
                if masks is None:
                    fns["exact+map"] = md("exact", True)
                    fns["fp8+map"] = md("fp8", True)
                    try:
                        def cudnn():
                            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                                return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt)
                        outs["cudnn"] = cudnn().transpose(1, 2)
                        fns["cudnn"] = cudnn
                    except Exception as e:
                        print(f"  cudnn: not run ({str(e).splitlines()[0][:100]})")
                    if sage is not None:
                        try:
                            def sage_fn():
                                return sage(q, k, v, tensor_layout="NHD", is_causal=False)
                            outs["sage"] = sage_fn()
                            fns["sage"] = sage_fn
                        except Exception as e:
                            print(f"  sage: not run ({str(e).splitlines()[0][:100]})")
                elif flex is not None:
                    try:
                        tm = torch.from_numpy(masks).cuda()
                        cnt = tm.sum(-1).to(torch.int32)[None]
                        order = torch.argsort((~tm).to(torch.int8), dim=-1, stable=True).to(torch.int32)[None]
                        bm = BlockMask.from_kv_blocks(torch.zeros_like(cnt), order, cnt, order, BLOCK_SIZE=BS,
                                                      seq_lengths=(N, N))

                        def flex_fn():
                            return flex(qt, kt, vt, block_mask=bm)
                        outs["flex"] = flex_fn().transpose(1, 2)
                        fns["flex"] = flex_fn
                    except Exception as e:
                        print(f"  flex: not run ({str(e).splitlines()[0][:160]})")
                if args.calls_only:
                    for fn in fns.values():
                        fn()
                    torch.cuda.synchronize()
                    continue
                ref = reference_rows(q, k, v, masks, ref_rows, ref_heads, N)
                ms_of = bench_ms(fns, args.iters)
                for impl, ms in ms_of.items():
                    base = impl.split("+")[0]
                    rel, cos = accuracy(outs[base], ref, ref_rows, ref_heads) if base in outs else (float("nan"),) * 2
                    tf = flops / (ms * 1e-3) / 1e12
                    print(f"{name:8} {lname:7} {pairs / (H * N * N):5.3f} {impl:9} {ms:8.3f} {tf:8.1f} "
                          f"{rel:8.4f} {cos:9.6f}", flush=True)
                    rows_out.append(dict(shape=name, layout=lname, target_density=density,
                                         density=pairs / (H * N * N), impl=impl, ms=ms, tflops=tf,
                                         rel_l2=rel, cosine=cos))
                r = {impl: ms_of["exact"] / ms_of[impl] for impl in ms_of}
                print("  speedup vs exact: " + ", ".join(f"{i} {x:.2f}x" for i, x in r.items()))
                if density >= 1.0 or kind == args.layouts.split(",")[0]:
                    qu, tot, ks = quantize_share(fns["fp8"])
                    print(f"  fp8 call (profiler): quantization {qu / 1e3:.3f} ms of {tot / 1e3:.3f} ms "
                          f"({100 * qu / max(tot, 1e-9):.1f}%): " +
                          ", ".join(f"{k} {t / 1e3:.3f}" for k, t in ks.items()))
                del fns, outs
                torch.cuda.empty_cache()
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(device=dev, torch=torch.__version__, date=stamp, command=" ".join(sys.argv),
                           rows=rows_out), f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
