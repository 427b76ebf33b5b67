#!/usr/bin/env python3
"""A whole denoising run of a Wan 2.1 14B-config or HunyuanVideo-config
transformer (random weights), sequence-parallel over the GPUs torchrun starts,
with the framework's own dense attention or with moddit: the measurement behind
docs/BENCHMARKS.md "Sequence parallelism" (moddit on P GPUs against dense on 1).

    torchrun --nproc_per_node=4 scripts/parallel_scaling.py --model wan --attention moddit
    torchrun --nproc_per_node=1 scripts/parallel_scaling.py --model hunyuan --attention dense

--engine xdit (default): xDiT's transformer wrappers and process groups (xfuser;
dense = xDiT's USP with its default attention backend); moddit through
moddit.xdit.enable. --engine diffusers: diffusers' context parallelism (Wan only;
dense = its Ulysses/ring over SDPA); moddit through moddit.diffusers.enable.

Every step is run and timed: T steps x (2 CFG calls for Wan, 1 for HunyuanVideo,
whose guidance is embedded), a flow-matching Euler update between steps. The
whole loop is timed with CUDA events between two barriers; rank 0 prints and
writes the JSON (--out). Weights are random (the same on every rank): the cost of
a step at a given density does not depend on them (MOD-DiT's target_density
fixes the density); the output is not a video.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

# The lent multi-GPU machines require these (docs/BENCHMARKS.md): set before NCCL starts.
for _k, _v in (("NCCL_NVLS_ENABLE", "0"), ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"),
               ("NVSHMEM_DISABLE_NVLS", "1")):
    os.environ.setdefault(_k, _v)

WAN_14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128,
               in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824,
               num_layers=40, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
HUNYUAN = dict(in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128,
               num_layers=20, num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0,
               patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
               text_embed_dim=4096, pooled_projection_dim=768, rope_theta=256.0,
               rope_axes_dim=(16, 56, 56))
MODELS = {
    # name: (config, layer key, default frames, text tokens, CFG calls per step)
    "wan": (WAN_14B, "num_layers", 81, 512, 2),
    "hunyuan": (HUNYUAN, None, 129, 256, 1),
}


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="wan")
    p.add_argument("--attention", choices=("dense", "moddit"), default="moddit")
    p.add_argument("--engine", choices=("xdit", "diffusers"), default="xdit")
    p.add_argument("--ulysses", type=int, default=0, help="Ulysses degree (0: all ranks)")
    p.add_argument("--ring", type=int, default=1, help="ring degree")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--frames", type=int, default=0, help="video frames (0: 81 Wan, 129 HunyuanVideo)")
    p.add_argument("--layers", type=int, default=0,
                   help="smoke runs only: build this many blocks (0: the whole model)")
    p.add_argument("--density", type=float, default=0.22, help="MOD-DiT target density")
    p.add_argument("--warmup-steps", type=int, default=12)
    p.add_argument("--interval", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="rank 0 writes the results as JSON here")
    return p.parse_args()


def log(msg: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(msg, flush=True)


def build(args, torch, world, U, R):
    cfg, layer_key, _, _, _ = MODELS[args.model]
    cfg = dict(cfg)
    if args.layers:
        if args.model == "wan":
            cfg["num_layers"] = args.layers
        else:  # dual-stream then single-stream blocks
            cfg["num_layers"] = min(cfg["num_layers"], args.layers)
            cfg["num_single_layers"] = max(0, args.layers - cfg["num_layers"])
    if args.engine == "xdit":
        if args.model == "wan":
            from xfuser.model_executor.models.transformers.transformer_wan import (
                xFuserWanTransformer3DWrapper as cls)
        else:
            from xfuser.model_executor.models.transformers.transformer_hunyuan_video import (
                xFuserHunyuanVideoTransformer3DWrapper as cls)
    else:
        from diffusers import HunyuanVideoTransformer3DModel, WanTransformer3DModel
        cls = WanTransformer3DModel if args.model == "wan" else HunyuanVideoTransformer3DModel
    torch.manual_seed(args.seed)
    torch.cuda.manual_seed(args.seed)  # the same random weights on every rank
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = cls(**cfg)
    torch.set_default_dtype(old)
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if keep & set(name.split(".")) and t.is_floating_point():
            t.data = t.data.float()
    model = model.eval()
    if args.engine == "xdit":
        if hasattr(model, "install_xdit_attention_processors"):
            model.install_xdit_attention_processors()
        import types

        from xfuser import xFuserArgs
        from xfuser.core.distributed import runtime_state as rs

        engine_config = xFuserArgs(model=args.model, ulysses_degree=U, ring_degree=R).create_config()
        engine_config = engine_config[0] if isinstance(engine_config, tuple) else engine_config
        rs._RUNTIME = rs.DiTRuntimeState(types.SimpleNamespace(transformer=model), engine_config)
    elif world > 1:
        if args.model != "wan":
            sys.exit("parallel_scaling: diffusers has no context-parallel plan for HunyuanVideo "
                     "(use --engine xdit)")
        from diffusers import ContextParallelConfig

        model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=U, ring_degree=R))
    return model


def main():
    args = parse()
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", rank))
    torch.cuda.set_device(local)
    U = args.ulysses or world // args.ring
    R = args.ring
    if U * R != world:
        sys.exit(f"parallel_scaling: ulysses {U} x ring {R} != {world} ranks")
    if args.engine == "xdit":
        from xfuser.core.distributed import init_distributed_environment, initialize_model_parallel

        init_distributed_environment(rank=rank, world_size=world, local_rank=local, backend="nccl")
        initialize_model_parallel(sequence_parallel_degree=world, ulysses_degree=U,
                                  ring_degree=R, backend="nccl")
    else:
        dist.init_process_group("nccl", timeout=datetime.timedelta(minutes=20))

    import moddit
    if args.attention == "moddit" and not moddit.cuda_available():
        sys.exit("parallel_scaling: moddit was built without CUDA")
    cfg, _, frames_default, text_tokens, calls = MODELS[args.model]
    frames = args.frames or frames_default
    t0 = time.time()
    model = build(args, torch, world, U, R)
    log(f"{args.model}: built in {time.time() - t0:.0f} s, "
        f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters, "
        f"{args.engine} on {world} GPU(s) (Ulysses {U} x ring {R}), attention {args.attention}")
    if args.attention == "moddit":
        kw = dict(policy="moddit", num_steps=args.steps, target_density=args.density,
                  warmup_steps=args.warmup_steps, interval=args.interval)
        if args.engine == "xdit":
            import moddit.xdit
            moddit.xdit.enable(model, **kw)
        else:
            import moddit.diffusers
            moddit.diffusers.enable(model, **kw)

    g = torch.Generator(device="cuda").manual_seed(args.seed + 1)  # the same inputs everywhere
    lat = (1, cfg["in_channels"], (frames - 1) // 4 + 1, args.height // 8, args.width // 8)
    latents = torch.randn(lat, device="cuda", dtype=torch.bfloat16, generator=g)
    text = [torch.randn(1, text_tokens, 4096, device="cuda", dtype=torch.bfloat16, generator=g)
            for _ in range(calls)]
    extra = {}
    if args.model == "hunyuan":
        extra = dict(encoder_attention_mask=torch.ones(1, text_tokens, device="cuda",
                                                       dtype=torch.long),
                     pooled_projections=torch.randn(1, 768, device="cuda", dtype=torch.bfloat16,
                                                    generator=g),
                     guidance=torch.full((1,), 6000.0, device="cuda", dtype=torch.bfloat16))
    sigmas = torch.linspace(1.0, 0.0, args.steps + 1).tolist()
    p = model.config.patch_size
    pt, ph = (p[0], p[1]) if isinstance(p, (tuple, list)) else (getattr(model.config, "patch_size_t", 1) or 1, p)
    tokens = (lat[2] // pt) * (lat[3] // ph) * (lat[4] // ph)
    log(f"{args.height}x{args.width}x{frames} -> latent {list(lat[2:])}, {tokens} video tokens, "
        f"{args.steps} steps x {calls} call(s)")

    step_s = []
    dist.barrier()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    with torch.no_grad():
        for i in range(args.steps):
            t_step = time.time()
            t = torch.full((1,), 1000.0 * sigmas[i], device="cuda")
            preds = [model(hidden_states=latents, timestep=t, encoder_hidden_states=text[c],
                           return_dict=False, **extra)[0] for c in range(calls)]
            pred = preds[0] if calls == 1 else preds[1] + 5.0 * (preds[0] - preds[1])
            latents = (latents.float() + (sigmas[i + 1] - sigmas[i]) * pred.float()).to(latents.dtype)
            torch.cuda.synchronize()
            step_s.append(time.time() - t_step)
            if i % 10 == 0 or i == args.steps - 1:
                log(f"  step {i + 1}/{args.steps}: {step_s[-1]:.2f} s")
    end.record()
    torch.cuda.synchronize()
    dist.barrier()
    total = start.elapsed_time(end) / 1000.0
    result = dict(model=f"{args.model} ({'Wan 2.1 14B' if args.model == 'wan' else 'HunyuanVideo'} "
                        "config, random weights)",
                  layers=args.layers or "all", engine=args.engine, attention=args.attention,
                  world=world, ulysses=U, ring=R, steps=args.steps, calls_per_step=calls,
                  resolution=[args.height, args.width, frames], latent=list(lat[2:]),
                  video_tokens=tokens, text_tokens=text_tokens, total_seconds=total,
                  step_seconds=step_s, gpu=torch.cuda.get_device_name(),
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  command=" ".join(sys.argv), finite=bool(torch.isfinite(latents).all()))
    if args.attention == "moddit":
        import moddit.diffusers as md
        s = md.summary(model)
        result.update(mean_density=s.mean_density, kinds=s.kinds,
                      attention_seconds=s.attention_seconds)
    log(f"total {total:.1f} s for {args.steps} steps ({total / args.steps:.2f} s/step)")
    if rank == 0 and args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, args.out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
