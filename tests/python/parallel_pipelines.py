"""Workers of test_parallel_pipelines.py: tiny diffusers transformers run
sequence-parallel by diffusers' context parallelism and by xDiT (xfuser), with
moddit's attention enabled, on gloo processes (CPU), against the same model on
one process.

xfuser only runs sequence parallelism on a GPU: on the CPU it finds no
accelerator and no yunchang attention (it checks torch.cuda) and turns it off.
The workers patch those checks (`_xfuser_on_cpu`) so that xfuser's real process
groups, sharding and forward run here; nothing of xfuser's attention is used by
moddit's processors. diffusers' mesh set-up divides by the accelerator count,
which is 0 here: the workers report 1 (`_diffusers_on_cpu`)."""
from __future__ import annotations

import datetime
import os
import traceback
import types
from typing import Any, Dict, List

import torch

import moddit

STEPS = 8
TIMESTEPS = [900.0 - 100.0 * i for i in range(STEPS)]
MODDIT_KW = dict(block_size=64, warmup_steps=3, interval=2, target_density=0.5)


def _diffusers_on_cpu():
    if torch.accelerator.device_count() == 0:
        torch.accelerator.device_count = lambda: 1


def _xfuser_on_cpu(world: int):
    import xfuser.config.config as xc
    import xfuser.core.distributed.group_coordinator as xgc
    import xfuser.core.distributed.parallel_state as xps
    import xfuser.envs as xe

    xe._is_cuda = lambda: False
    xc.HAS_LONG_CTX_ATTN = xps.HAS_LONG_CTX_ATTN = xgc.HAS_LONG_CTX_ATTN = True
    from xfuser.core.distributed import init_distributed_environment, initialize_model_parallel

    init_distributed_environment(rank=torch.distributed.get_rank(), world_size=world,
                                 backend="gloo")
    initialize_model_parallel(sequence_parallel_degree=world, ulysses_degree=world, backend="gloo")


def _xfuser_runtime(model):
    from xfuser import xFuserArgs
    from xfuser.core.distributed import runtime_state as rs
    from xfuser.core.distributed.attention_backend import AttentionBackendType

    engine_config = xFuserArgs(model="tiny", ulysses_degree=torch.distributed.get_world_size())
    engine_config = engine_config.create_config()
    engine_config = engine_config[0] if isinstance(engine_config, tuple) else engine_config
    rs._RUNTIME = rs.DiTRuntimeState(types.SimpleNamespace(transformer=model), engine_config)
    rs._RUNTIME.set_attention_backend(AttentionBackendType.SDPA)
    rs._RUNTIME.set_cross_attention_backend(AttentionBackendType.SDPA)


def wan_kwargs(heads: int, dim: int) -> Dict[str, Any]:
    return dict(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=dim,
                in_channels=4, out_channels=4, text_dim=16, freq_dim=16, ffn_dim=64, num_layers=2,
                rope_max_seq_len=64)


def hunyuan_kwargs() -> Dict[str, Any]:
    return dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=64,
                num_layers=1, num_single_layers=2, num_refiner_layers=1, mlp_ratio=2.0,
                patch_size=2, patch_size_t=1, text_embed_dim=16, pooled_projection_dim=8,
                guidance_embeds=False, rope_axes_dim=(16, 24, 24))


def wan_inputs(step: int, latent=(3, 14, 10)):
    g = torch.Generator().manual_seed(100 + step)
    return dict(hidden_states=torch.randn(1, 4, *latent, generator=g),
                timestep=torch.full((1,), TIMESTEPS[step]),
                encoder_hidden_states=torch.randn(1, 7, 16, generator=g), return_dict=False)


def hunyuan_inputs(step: int, text_valid: int):
    g = torch.Generator().manual_seed(200 + step)
    mask = torch.zeros(1, 24, dtype=torch.long)
    mask[0, :text_valid] = 1
    # 3 x 7 x 6 video tokens: xDiT cuts HunyuanVideo's video into equal chunks only
    return dict(hidden_states=torch.randn(1, 4, 3, 14, 12, generator=g),
                timestep=torch.full((1,), TIMESTEPS[step]),
                encoder_hidden_states=torch.randn(1, 24, 16, generator=g),
                encoder_attention_mask=mask, pooled_projections=torch.randn(1, 8, generator=g),
                return_dict=False)


def run_pair(make_ref, make_par, inputs, policy: str, steps: int):
    """Outputs of the one-process model (moddit on one device) and of the
    parallel one, per step."""
    import moddit.diffusers as md

    ref, par = make_ref(), make_par()
    kw = MODDIT_KW if policy == "moddit" else {}
    md.enable(ref, policy=policy, num_steps=steps, parallel=False, **kw)
    par_enable = getattr(par, "_enable_moddit", None)
    if par_enable is None:
        md.enable(par, policy=policy, num_steps=steps, **kw)
    else:
        par_enable(policy, steps, kw)
    outs = []
    with torch.no_grad():
        for step in range(steps):
            x = inputs(step)
            outs.append((ref(**x)[0], par(**x)[0]))
    summary = md.summary(par)
    return outs, sorted(summary.kinds)


def scenario_diffusers_wan(policy: str, ulysses: int, ring: int, enable_first: bool,
                           heads: int = 2, dim: int = 64):
    from diffusers import ContextParallelConfig, WanTransformer3DModel

    import moddit.diffusers as md

    _diffusers_on_cpu()

    def make():
        torch.manual_seed(0)
        return WanTransformer3DModel(**wan_kwargs(heads, dim)).eval()

    def make_par():
        m = make()
        cfg = ContextParallelConfig(ulysses_degree=ulysses, ring_degree=ring)
        if not enable_first:
            m.enable_parallelism(config=cfg)
            return m

        def enable(policy, steps, kw):  # moddit first, diffusers' parallelism after it
            md.enable(m, policy=policy, num_steps=steps, **kw)
            m.enable_parallelism(config=cfg)
        m._enable_moddit = enable
        return m

    steps = STEPS if policy == "moddit" else 1
    return run_pair(make, make_par, lambda s: wan_inputs(s, (3, 16, 10)), policy, steps)


def scenario_xdit(family: str, policy: str, text_valid: int = 0):
    from diffusers import HunyuanVideoTransformer3DModel, WanTransformer3DModel

    import moddit.xdit

    if family == "wan":
        from xfuser.model_executor.models.transformers.transformer_wan import (
            xFuserWanTransformer3DWrapper as Wrapper)
        base, kw = WanTransformer3DModel, wan_kwargs(2, 64)
        inputs = wan_inputs
    else:
        from xfuser.model_executor.models.transformers.transformer_hunyuan_video import (
            xFuserHunyuanVideoTransformer3DWrapper as Wrapper)
        base, kw = HunyuanVideoTransformer3DModel, hunyuan_kwargs()
        inputs = lambda s: hunyuan_inputs(s, text_valid)  # noqa: E731

    def make():
        torch.manual_seed(0)
        return base(**kw).eval()

    def make_par():
        torch.manual_seed(0)
        m = Wrapper(**kw).eval()
        _xfuser_runtime(m)
        m._enable_moddit = lambda policy, steps, k: moddit.xdit.enable(m, policy=policy,
                                                                      num_steps=steps, **k)
        return m

    steps = STEPS if policy == "moddit" else 1
    return run_pair(make, make_par, inputs, policy, steps)


SCENARIOS = {
    "diffusers_wan_dense_ulysses": lambda: scenario_diffusers_wan("dense", 2, 1, False),
    "diffusers_wan_moddit_ring_enable_first": lambda: scenario_diffusers_wan("moddit", 1, 2, True),
    "xdit_wan_dense_padded": lambda: scenario_xdit("wan", "dense"),
    "xdit_wan_moddit_padded": lambda: scenario_xdit("wan", "moddit"),
    "xdit_hunyuan_dense_text_split": lambda: scenario_xdit("hunyuan_video", "dense", 20),
    "xdit_hunyuan_moddit_text_joint": lambda: scenario_xdit("hunyuan_video", "moddit", 13),
}


def worker(rank: int, world: int, port: int, names: List[str], out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    moddit.set_cpu_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=60))
    try:
        xfuser_ready = False
        for name in names:
            result: Dict[str, Any] = {}
            try:
                if name.startswith("xdit") and not xfuser_ready:
                    _xfuser_on_cpu(world)
                    xfuser_ready = True
                result["outs"], result["kinds"] = SCENARIOS[name]()
            except Exception:  # noqa: BLE001 (reported to the test)
                result["error"] = traceback.format_exc()
            torch.save(result, os.path.join(out_dir, f"{name}.rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()
