#!/usr/bin/env python3
"""End-to-end timing of one denoising step of Wan 2.1 14B (randomly initialised)
at 480p / 81 frames: dense attention (diffusers' SDPA) against MOD-DiT at the
paper's density (78% sparsity on Wan 2.1, MOD-DiT Table 2 -> density 0.22).

    python scripts/e2e_wan_timing.py                 # full 40 layers if memory allows
    python scripts/e2e_wan_timing.py --layers 8      # the first 8 blocks only
    python scripts/e2e_wan_timing.py --out wan.json  # also write the numbers

Needs a CUDA GPU, torch, diffusers and moddit built with CUDA. Weights are
random: attention patterns differ from the trained model's, but the cost of a
step at a given density does not (MOD-DiT's target_density fixes the density).
A denoising step is one transformer forward per CFG branch (Wan calls it twice);
the numbers below are per forward, and the 50-step estimate uses the paper's
schedule (12 dense warm-up steps, refresh every 10 steps).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

WAN_14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128,
               in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824,
               num_layers=40, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
BYTES_PER_LAYER = 2 * 350e6  # ~350M parameters per Wan 14B block, bf16


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=0,
                   help="transformer blocks to build (0 = all 40 if GPU memory allows)")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--density", type=float, default=0.22,
                   help="MOD-DiT target density (paper, Wan 2.1: 78%% sparsity)")
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--iters", type=int, default=3, help="timed forwards per configuration")
    p.add_argument("--steps", type=int, default=50, help="schedule length for the estimate")
    p.add_argument("--warmup-steps", type=int, default=12)
    p.add_argument("--interval", type=int, default=10)
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="write the results as JSON here")
    p.add_argument("--device", default="cuda",
                   help="cuda (timing), or cpu for a smoke test of the script on a tiny size")
    return p.parse_args()


def main():
    args = parse()
    import torch
    import moddit
    import moddit.diffusers as md
    from diffusers import WanTransformer3DModel

    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("e2e_wan_timing: needs a CUDA GPU (or --device cpu for a smoke test)")
        if not moddit.cuda_available():
            sys.exit("e2e_wan_timing: moddit was built without CUDA (reinstall where nvcc is found)")
        free, total = torch.cuda.mem_get_info(dev)
    else:
        free = 0
    layers = args.layers
    if layers <= 0 and dev.type != "cuda":
        sys.exit("e2e_wan_timing: give --layers on the CPU")
    if layers <= 0:
        # Weights + ~12 GiB for activations, the attention workspace and the allocator.
        fit = int((free - 12 * 2**30) // BYTES_PER_LAYER)
        layers = max(1, min(40, fit))
    cfg = dict(WAN_14B, num_layers=layers)

    torch.manual_seed(args.seed)
    t0 = time.time()
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(dev):
        model = WanTransformer3DModel(**cfg)
    torch.set_default_dtype(old_dtype)
    # As from_pretrained(torch_dtype=bfloat16) does: some modules stay in fp32.
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if keep & set(name.split(".")) and t.is_floating_point():
            t.data = t.data.float()
    model = model.eval()
    build_s = time.time() - t0
    params = sum(p.numel() for p in model.parameters())

    lat_f = (args.frames - 1) // 4 + 1
    lat_h, lat_w = args.height // 8, args.width // 8
    latents = torch.randn(1, 16, lat_f, lat_h, lat_w, device=dev, dtype=torch.bfloat16)
    text = torch.randn(1, args.text_tokens, 4096, device=dev, dtype=torch.bfloat16)
    tokens = lat_f * (lat_h // 2) * (lat_w // 2)

    def forward(t):
        return model(hidden_states=latents, timestep=torch.tensor([t], device=dev),
                     encoder_hidden_states=text, return_dict=False)[0]

    def timed(fn, n):
        times = []
        for _ in range(n):
            if dev.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000.0)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]  # median

    results = dict(model="WanTransformer3DModel 14B config (random weights)", layers=layers,
                   parameters=params, build_seconds=build_s, tokens=tokens,
                   latent=[lat_f, lat_h, lat_w], resolution=[args.height, args.width, args.frames],
                   density_target=args.density, gpu=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu")
    print(f"Wan 14B config, {layers} of 40 blocks ({params / 1e9:.2f}B parameters), "
          f"{args.height}x{args.width}x{args.frames} -> {tokens} tokens, on {results['gpu']}")

    with torch.no_grad():
        # 1. Dense: diffusers' own processors (SDPA).
        out = forward(999.0)
        finite = bool(torch.isfinite(out).all())
        if not finite:
            print("warning: the random model's output is not finite; timings stand, "
                  "MOD-DiT's maps and density may not")
        dense_s = timed(lambda: forward(999.0), args.iters)
        # 2. Dense through moddit's processors with diffusers' SDPA: the attention share.
        md.enable(model, policy="sdpa", num_steps=args.steps)
        for _ in range(args.iters):
            forward(999.0)
        s = md.summary(model)
        attn_dense_s = s.attention_seconds / args.iters
        md.disable(model)
        # 3. MOD-DiT: dense warm-up with two recorded steps, then sparse steps.
        md.enable(model, policy="moddit", num_steps=args.steps, warmup_steps=2,
                  interval=max(args.interval, args.iters + 2), target_density=args.density,
                  block_size=args.block_size)
        ts = [999.0 - 10 * i for i in range(3 + args.iters)]
        for t in ts[:3]:
            forward(t)  # steps 0, 1 (record) and a first sparse step
        ctl = model._moddit_state.controllers[0]
        first_timed = len(ctl.calls)
        sparse_s = timed(lambda it=iter(ts[3:]): forward(next(it)), args.iters)
        sparse_calls = ctl.calls[first_timed:]
        attn_sparse_s = sum(c.seconds() for c in sparse_calls) / args.iters
        for c in sparse_calls:
            c.resolve()  # the GPU step's densities (known after the timed forwards)
        density = sum(c.density for c in sparse_calls) / max(1, len(sparse_calls))
        kinds = sorted({c.kind for c in sparse_calls})
        overhead_s = sum(c.overhead_seconds for c in sparse_calls) / args.iters
        summary = md.summary(model)
        record_calls = [c for c in ctl.calls if c.kind == "record"]
        record_s = sum(c.seconds() for c in record_calls) / max(1, len({c.step for c in record_calls}))
        md.disable(model)

    other_s = dense_s - attn_dense_s
    # 50-step estimate (per CFG branch): warm-up dense, refresh steps cost about a
    # record step, the rest sparse.
    T, m, dt = args.steps, args.warmup_steps, args.interval
    refresh = len(range(m + dt, T, dt))
    sparse_steps = T - m - refresh
    dense_total = T * dense_s
    moddit_total = (m * dense_s + (record_s - attn_dense_s) * 2  # two record steps in warm-up
                    + refresh * (other_s + record_s) + sparse_steps * sparse_s)
    results.update(
        dense_step_seconds=dense_s, attention_seconds_dense=attn_dense_s,
        attention_share_dense=attn_dense_s / dense_s,
        moddit_sparse_step_seconds=sparse_s, attention_seconds_sparse=attn_sparse_s,
        moddit_density=density, moddit_call_kinds=kinds,
        policy_overhead_seconds=overhead_s, record_step_attention_seconds=record_s,
        step_speedup=dense_s / sparse_s, attention_speedup=attn_dense_s / attn_sparse_s,
        schedule=dict(steps=T, warmup=m, interval=dt, refresh_steps=refresh,
                      sparse_steps=sparse_steps),
        end_to_end_speedup_estimate=dense_total / moddit_total, output_finite=finite)
    print(f"dense step (SDPA):          {dense_s * 1e3:9.1f} ms, attention "
          f"{attn_dense_s * 1e3:.1f} ms = {100 * attn_dense_s / dense_s:.1f}% of the step")
    print(f"MOD-DiT sparse step:        {sparse_s * 1e3:9.1f} ms, attention "
          f"{attn_sparse_s * 1e3:.1f} ms at density {density:.3f} ({', '.join(kinds)})")
    # Host wall time inside plan + observe. With the MOD-DiT step on the GPU the
    # host runs ahead of the device, so this includes waiting for room in the
    # launch queue; the step's device cost is `moddit bench --overhead-only`.
    print(f"  policy host time:         {overhead_s * 1e3:9.2f} ms "
          f"(host wall time in plan + observe, incl. launch-queue waits)")
    print(f"speedup per sparse step:    {dense_s / sparse_s:9.2f}x  (attention "
          f"{attn_dense_s / attn_sparse_s:.2f}x)")
    print(f"{T}-step estimate (m={m}, refresh every {dt}): {dense_total:.1f} s -> "
          f"{moddit_total:.1f} s per CFG branch, {dense_total / moddit_total:.2f}x end to end")
    print(summary)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2)
        os.replace(tmp, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
