"""The diffusers adapters on tiny randomly initialised models of each family
(CPU): with the dense policy the output equals the original processors'; the
sparse policies run end to end; the step and the CFG branch are followed
whether the pipeline batches CFG (CogVideoX) or calls twice (Wan, HunyuanVideo)."""
import pytest

from conftest import needs_diffusers, tiny_cogvideox, tiny_hunyuan, tiny_wan

pytestmark = needs_diffusers

TOL = 1e-5  # moddit's fp32 CPU kernels against torch's fp32 SDPA


def rel(a, b):
    return float((a - b).norm() / b.norm())


def wan_inputs(torch, B=2):
    return dict(hidden_states=torch.randn(B, 4, 3, 16, 16), timestep=torch.full((B,), 900.0),
                encoder_hidden_states=torch.randn(B, 7, 16), return_dict=False)


def hunyuan_inputs(torch, B=2):
    mask = torch.zeros(B, 20, dtype=torch.long)
    mask[0, :13] = 1  # text padding that differs per batch item
    mask[-1, :] = 1
    return dict(hidden_states=torch.randn(B, 4, 3, 16, 16), timestep=torch.full((B,), 900.0),
                encoder_hidden_states=torch.randn(B, 20, 16), encoder_attention_mask=mask,
                pooled_projections=torch.randn(B, 8), return_dict=False)


def cogvideox_inputs(torch, B=2):
    return dict(hidden_states=torch.randn(B, 3, 4, 16, 16),
                encoder_hidden_states=torch.randn(B, 13, 16), timestep=torch.full((B,), 900.0),
                return_dict=False)


FAMILIES = [("wan", tiny_wan, wan_inputs), ("hunyuan_video", tiny_hunyuan, hunyuan_inputs),
            ("cogvideox", tiny_cogvideox, cogvideox_inputs)]


@pytest.mark.parametrize("name,make,inputs", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_dense_policy_equals_original_and_disable_restores(name, make, inputs):
    import torch
    import moddit.diffusers as md

    model = make()
    x = inputs(torch)
    originals = [type(m.processor) for m in md.family_of(model).attention_modules(model)]
    with torch.no_grad():
        ref = model(**x)[0]
        md.enable(model, policy="dense", num_steps=4)
        out = model(**x)[0]
        assert rel(out, ref) < TOL
        s = md.summary(model)
        assert s.kinds == {"dense": len(originals)}
        assert all(l.mean_density == 1.0 for l in s.layers)
        md.disable(model)
        assert [type(m.processor) for m in md.family_of(model).attention_modules(model)] == originals
        assert torch.equal(model(**x)[0], ref)


@pytest.mark.parametrize("name,make,inputs", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_moddit_policy_end_to_end(name, make, inputs):
    import torch
    import moddit.diffusers as md

    model = make()
    x = inputs(torch)
    T = 7
    md.enable(model, policy="moddit", num_steps=T, warmup_steps=3, interval=2,
              target_density=0.3, block_size=64)
    ctl = model._moddit_state.controllers[0]
    outs = []
    with torch.no_grad():
        for t in torch.linspace(999, 1, T):
            x["timestep"] = t.expand(2).clone()
            outs.append(model(**x)[0])
    assert all(torch.isfinite(o).all() for o in outs)
    steps = sorted({c.step for c in ctl.calls})
    assert steps == list(range(T))
    by_step = {s: {c.kind for c in ctl.calls if c.step == s} for s in steps}
    assert by_step[0] == {"dense"} and by_step[2] == {"record"}
    # The warm-up's plain dense calls ran the model's own attention (no moddit launch).
    assert all(c.launches == 0 for c in ctl.calls if c.step == 0)
    assert all(c.launches > 0 for c in ctl.calls if c.step == 2)
    assert by_step[3] <= {"sparse", "refresh"} and by_step[4] <= {"sparse", "refresh"}
    sparse = [c.density for c in ctl.calls if c.kind in ("sparse", "refresh")]
    assert sparse and max(sparse) < 0.9 and min(sparse) > 0.0
    # CFG/batch items keep their own state slots: 2 per layer and step.
    assert all(c.batch == 2 for c in ctl.calls)
    text = str(md.summary(model))
    assert "time in attention" in text and "layer" in text
    md.disable(model)


def test_dense_calls_auto_takes_moddit_only_where_it_is_faster(monkeypatch):
    import torch
    from moddit.diffusers.controller import dense_calls_on_sdpa

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert dense_calls_on_sdpa("sdpa", gpu, 128, 128) and not dense_calls_on_sdpa("moddit", cpu, 64, 64)
    assert dense_calls_on_sdpa("auto", cpu, 128, 128)
    for major, d, bs, sdpa in ((9, 128, 128, False), (9, 64, 128, True), (9, 128, 64, True),
                               (8, 128, 128, True), (10, 128, 128, True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
        assert dense_calls_on_sdpa("auto", gpu, d, bs) == sdpa, (major, d, bs)


def test_dense_calls_moddit_keeps_the_warm_up_on_moddit_kernels():
    import torch
    import moddit.diffusers as md

    name, make, inputs = FAMILIES[0]
    model = make()
    x = inputs(torch)
    with pytest.raises(ValueError, match="dense_calls must be 'auto', 'sdpa' or 'moddit'"):
        md.enable(model, policy="moddit", num_steps=4, dense_calls="cudnn")
    md.enable(model, policy="moddit", num_steps=4, warmup_steps=3, block_size=64,
              dense_calls="moddit")
    ctl = model._moddit_state.controllers[0]
    with torch.no_grad():
        x["timestep"] = torch.tensor([999.0, 999.0])
        model(**x)
    assert ctl.calls and all(c.kind == "dense" and c.launches > 0 for c in ctl.calls)
    md.disable(model)


def test_sparse_vdit_from_recorded_trajectory(tmp_path):
    """record -> Sparse-vDiT search -> inference with the searched config."""
    import torch
    import moddit
    import moddit.diffusers as md

    model = tiny_wan()
    x = wan_inputs(torch, B=1)
    T = 3
    path = str(tmp_path / "wan.safetensors")
    with torch.no_grad():
        with md.record(model, path):
            md.reset(model, num_steps=T)
            for t in torch.linspace(999, 1, T):
                x["timestep"] = t.expand(1).clone()
                model(**x)
    src = moddit.open_trajectory(path)
    opts = moddit.VditSearchOptions()
    opts.block_size = 64
    cfg = moddit.search_vdit([src], moddit.get_backend("cpu"), opts, target_density=0.5)
    assert cfg.num_layers == 2 and cfg.num_steps == T
    md.enable(model, policy="sparse_vdit", config=cfg, num_steps=T)
    ctl = model._moddit_state.controllers[0]
    with torch.no_grad():
        for t in torch.linspace(999, 1, T):
            x["timestep"] = t.expand(1).clone()
            out = model(**x)[0]
    assert torch.isfinite(out).all()
    assert len(ctl.calls) == 2 * T
    md.disable(model)


def test_explicit_step_and_callback():
    import torch
    import moddit.diffusers as md

    model = tiny_wan(num_layers=1)
    x = wan_inputs(torch, B=1)
    md.enable(model, policy="dense", num_steps=10)
    ctl = model._moddit_state.controllers[0]
    cb = md.step_callback(model)
    with torch.no_grad():
        model(**x)                      # step 0 (first timestep)
        cb(model, 0, None, {})          # the pipeline finished step 0
        model(**x)                      # same timestep, but the callback says step 1
        md.set_step(model, 5)
        model(**x)
    assert [c.step for c in ctl.calls] == [0, 1, 5]
    md.disable(model)


def _wan_pipeline():
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=tiny_wan(),
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipe.set_progress_bar_config(disable=True)
    pe, ne = torch.randn(1, 7, 16), torch.randn(1, 7, 16)

    def run(steps=4):
        g = torch.Generator().manual_seed(0)
        return pipe(prompt_embeds=pe, negative_prompt_embeds=ne, height=128, width=128,
                    num_frames=9, num_inference_steps=steps, guidance_scale=5.0,
                    output_type="latent", generator=g).frames

    return pipe, run


def test_wan_pipeline_cfg_two_calls():
    import torch
    import moddit.diffusers as md

    pipe, run = _wan_pipeline()
    reports = []
    with torch.no_grad():
        ref = run()
        md.enable(pipe, policy="dense")
        assert rel(run(), ref) < TOL
        md.enable(pipe, policy="moddit", warmup_steps=2, interval=2, target_density=0.3,
                  block_size=64, report=reports.append)
        out = run(steps=5)
    assert len(reports) == 1 and reports[0].steps == 5  # the summary after the run
    ctl = pipe._moddit_state.controllers[0]
    # Two calls per step (cond, uncond), one batch item each: slots 0 and 1.
    assert [c.step for c in ctl.calls if c.layer == 0] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert torch.isfinite(out).all()
    assert md.summary(pipe).mean_density < 0.9
    md.disable(pipe)
    assert "set_timesteps" not in vars(pipe.scheduler)
    assert "progress_bar" not in vars(pipe)


def test_cogvideox_pipeline_cfg_batched_with_rotary():
    import torch
    import moddit.diffusers as md
    from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline

    pipe = CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=None,
                             transformer=tiny_cogvideox(rotary=True),
                             scheduler=CogVideoXDDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    pe, ne = torch.randn(1, 13, 16), torch.randn(1, 13, 16)

    def run():
        g = torch.Generator().manual_seed(0)
        return pipe(prompt_embeds=pe, negative_prompt_embeds=ne, height=128, width=128,
                    num_frames=9, num_inference_steps=3, guidance_scale=5.0,
                    output_type="latent", generator=g).frames

    with torch.no_grad():
        ref = run()
        md.enable(pipe, policy="dense")
        assert rel(run(), ref) < TOL
    ctl = pipe._moddit_state.controllers[0]
    assert [(c.step, c.batch) for c in ctl.calls if c.layer == 0] == [(0, 2), (1, 2), (2, 2)]
    md.disable(pipe)


def test_hunyuan_pipeline_true_cfg_with_padding():
    import torch
    import moddit.diffusers as md
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

    pipe = HunyuanVideoPipeline(text_encoder=None, tokenizer=None, text_encoder_2=None,
                                tokenizer_2=None, vae=None, transformer=tiny_hunyuan(),
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
    pipe.set_progress_bar_config(disable=True)
    pe, ne = torch.randn(1, 20, 16), torch.randn(1, 20, 16)
    pm = torch.zeros(1, 20, dtype=torch.long)
    pm[:, :11] = 1
    nm = torch.ones(1, 20, dtype=torch.long)

    def run():
        g = torch.Generator().manual_seed(0)
        return pipe(prompt_embeds=pe, pooled_prompt_embeds=torch.ones(1, 8),
                    prompt_attention_mask=pm, negative_prompt_embeds=ne,
                    negative_pooled_prompt_embeds=torch.zeros(1, 8),
                    negative_prompt_attention_mask=nm, true_cfg_scale=3.0, height=128,
                    width=128, num_frames=9, num_inference_steps=3, output_type="latent",
                    generator=g).frames

    with torch.no_grad():
        ref = run()
        md.enable(pipe, policy="dense")
        assert rel(run(), ref) < TOL
    ctl = pipe._moddit_state.controllers[0]
    assert [c.step for c in ctl.calls if c.layer == 0] == [0, 0, 1, 1, 2, 2]
    # One Session per text length (11 and 20 valid tokens), sharing one policy.
    assert {key[4] for key in ctl.sessions} == {11, 20}
    md.disable(pipe)


def test_unsupported_model_is_refused():
    import torch
    import moddit.diffusers as md

    with pytest.raises(TypeError, match="not supported|no supported transformer"):
        md.enable(torch.nn.Linear(2, 2))


def test_wan22_two_transformers_share_the_step():
    """Wan 2.2: high-noise steps on `transformer`, low-noise on `transformer_2`;
    both follow one step sequence, each with its own policy state."""
    import torch
    import moddit.diffusers as md
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=tiny_wan(),
                       transformer_2=tiny_wan(seed=1), boundary_ratio=0.5,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipe.set_progress_bar_config(disable=True)
    pe = torch.randn(1, 7, 16)
    md.enable(pipe, policy="moddit", warmup_steps=2, interval=2, target_density=0.4,
              block_size=64)
    with torch.no_grad():
        out = pipe(prompt_embeds=pe, negative_prompt_embeds=pe, height=128, width=128,
                   num_frames=9, num_inference_steps=6, guidance_scale=4.0,
                   guidance_scale_2=3.0, output_type="latent").frames
    high, low = pipe._moddit_state.controllers
    high_steps = sorted({c.step for c in high.calls})
    low_steps = sorted({c.step for c in low.calls})
    assert high_steps and low_steps
    assert sorted(high_steps + low_steps) == list(range(6))
    assert max(high_steps) < min(low_steps)
    assert torch.isfinite(out).all()
    md.disable(pipe)
