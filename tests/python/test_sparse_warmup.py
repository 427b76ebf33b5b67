"""MOD-DiT's sparse warm-up (config key sparse_warmup_steps) through the Python
API: the config keys, a Session whose first steps run the static mask, and the
diffusers adapter, which must run those steps through moddit (not its SDPA)."""
import numpy as np
import pytest

import moddit
from moddit import _moddit as _C
from conftest import needs_diffusers, reference_attention, rel_err, tiny_wan


def test_config_keys_default_off_and_are_checked():
    c = moddit.ModditConfig()
    assert (c.sparse_warmup_steps, c.sparse_warmup_mask, c.sparse_warmup_density) == (0, "radial", 0.3)
    c = moddit.moddit_config(sparse_warmup_steps=4, sparse_warmup_mask="window",
                             sparse_warmup_density=0.25)
    again = moddit.ModditConfig.from_json(c.to_json())
    assert (again.sparse_warmup_steps, again.sparse_warmup_mask,
            again.sparse_warmup_density) == (4, "window", 0.25)
    for bad in (dict(sparse_warmup_steps=11), dict(sparse_warmup_mask="oracle"),
                dict(sparse_warmup_density=0.0)):
        with pytest.raises(moddit.Error, match=next(iter(bad))):
            moddit.moddit_config(**bad)


def test_session_runs_the_static_mask_on_the_first_steps():
    tokens = moddit.TokenLayout(frames=4, height=8, width=16, text_tokens=24, text_valid=20,
                                text_position="before")
    grid = moddit.make_block_grid(tokens, 64)
    rng = np.random.default_rng(5)
    s = moddit.Session(tokens, "moddit", num_steps=6, num_heads=2, head_dim=32, block_size=64,
                       warmup_steps=4, sparse_warmup_steps=2)
    assert not s.plain_dense(0, 1)
    for step in range(6):
        s.begin_step(step)
        q, k, v = (rng.standard_normal((1, tokens.total_tokens, 2, 32)).astype(np.float32)
                   for _ in range(3))
        if step < 2:
            plan = s.plan_call(0, 1)
            assert plan.groups[0].label == "static" and plan.groups[0].layout is not None
            mask = moddit.to_mask(plan.groups[0].layout).bits
            fv, n = grid.first_video_block, grid.num_video_blocks
            want = _C.static_video_mask("radial", tokens, grid, 0.3)
            assert np.array_equal(mask[0, 0, fv:fv + n, fv:fv + n], want)
            assert np.array_equal(mask[0, 0], mask[0, 1])
            ref, _ = reference_attention(q, k, v, tokens, mask, list(grid.starts))
            s.begin_step(step)  # plan_call advanced the layer's slots
            assert rel_err(s.attention(0, q, k, v), ref) < 1e-5
            assert s.history[-1].density < 1.0
        else:
            s.attention(0, q, k, v)
    K = moddit.CallKind
    assert [r.kind for r in s.history] == [K.DENSE, K.DENSE, K.RECORD, K.RECORD, K.SPARSE,
                                           K.SPARSE]


@needs_diffusers
def test_diffusers_enable_runs_the_first_steps_sparse_through_moddit():
    import torch
    import moddit.diffusers as md

    model = tiny_wan()
    x = dict(hidden_states=torch.randn(2, 4, 3, 16, 16), encoder_hidden_states=torch.randn(2, 7, 16),
             return_dict=False)
    T = 6
    md.enable(model, policy="moddit", num_steps=T, warmup_steps=5, interval=2,
              target_density=0.3, block_size=64, sparse_warmup_steps=2)
    ctl = model._moddit_state.controllers[0]
    with torch.no_grad():
        for t in torch.linspace(999, 1, T):
            x["timestep"] = t.expand(2).clone()
            assert torch.isfinite(model(**x)[0]).all()
    first = [c for c in ctl.calls if c.step == 0]
    assert first and all(c.launches > 0 and c.density < 1.0 for c in first)
    # Step 2 is the plain dense warm-up again: the model's own attention.
    assert all(c.launches == 0 for c in ctl.calls if c.step == 2)
    md.disable(model)
