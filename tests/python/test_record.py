"""record -> trajectory file -> eval round trip: Q/K/V dumped from a tiny model
run are exactly what the processors computed, the file passes the C++ reader's
checks, and `moddit eval` (in-process, and the CLI when it is built) runs on it."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import needs_diffusers, tiny_cogvideox, tiny_hunyuan, tiny_wan

pytestmark = needs_diffusers

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _capture_qkv(model, layer):
    """Collects layer's (q, k, v) NHD from the moddit processor via a spy."""
    ctl = model._moddit_state.controllers[0]
    seen = []
    original = ctl.attention

    def spy(layer_, q, k, v, **kw):
        if layer_ == layer:
            t = (lambda x: x.transpose(1, 2)) if kw.get("qkv_layout") == "HND" else (lambda x: x)
            seen.append(tuple(t(x).detach().clone() for x in (q, k, v)))
        return original(layer_, q, k, v, **kw)

    ctl.attention = spy
    return seen


def test_record_wan_then_eval(tmp_path):
    import torch
    import moddit
    import moddit.diffusers as md

    model = tiny_wan()
    B, T = 1, 4
    x = dict(hidden_states=torch.randn(B, 4, 3, 16, 16), encoder_hidden_states=torch.randn(B, 7, 16),
             return_dict=False)
    path = str(tmp_path / "wan.safetensors")
    with torch.no_grad():
        ref = []
        for t in torch.linspace(999, 1, T):
            ref.append(model(timestep=t.expand(B), **x)[0])
        rec = md.record(model, path, layers=[1], steps=[1, 2, 3])
        md.reset(model, num_steps=T)
        seen = _capture_qkv(model, 1)
        outs = []
        for t in torch.linspace(999, 1, T):
            outs.append(model(timestep=t.expand(B), **x)[0])
        assert rec.close() == path
    # Recording ran diffusers' own attention: the run is the original one.
    assert all(torch.equal(a, b) for a, b in zip(outs, ref))
    assert getattr(model, "_moddit_state", None) is None  # record() enabled, close() disabled

    src = moddit.open_trajectory(path)
    info = src.info
    assert info.steps == [1, 2, 3] and info.layers == [1] and info.num_steps == T
    assert (info.tokens.frames, info.tokens.height, info.tokens.width) == (3, 8, 8)
    assert info.tokens.text_tokens == 0 and info.heads == 2 and info.head_dim == 64
    for step in (1, 2, 3):
        q, k, v = src.load(step, 1)
        for got, want in zip((q, k, v), seen[step]):
            assert np.array_equal(got, want.numpy())

    report = moddit.evaluate(path, policies="dense,moddit,oracle", target_density=0.4,
                             block_size=64, warmup_steps=2, interval=2)
    labels = [p["label"] if "label" in p else p.get("kind") for p in report["policies"]]
    assert any("dense" in str(l) for l in labels) and any("moddit" in str(l) for l in labels)
    assert "moddit" in report["table"]


def test_record_cogvideox_cfg_batch_and_hunyuan_slots(tmp_path):
    import torch
    import moddit
    import moddit.diffusers as md

    # CogVideoX: text before the video, CFG as batch 2 -> B = 2 in the file.
    model = tiny_cogvideox()
    path = str(tmp_path / "cog.safetensors")
    x = dict(hidden_states=torch.randn(2, 3, 4, 16, 16),
             encoder_hidden_states=torch.randn(2, 13, 16), return_dict=False)
    with torch.no_grad(), md.record(model, path, dtype="bf16"):
        md.reset(model, num_steps=2)
        for t in (900.0, 500.0):
            model(timestep=torch.full((2,), t), **x)
    info = moddit.open_trajectory(path).info
    assert info.batch == 2 and info.tokens.text_position == "before"
    assert info.tokens.text_tokens == 13 and info.tokens.text_valid == 13

    # HunyuanVideo: text after, padding differs per item: record one item only.
    model = tiny_hunyuan()
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[0, 11:] = 0
    x = dict(hidden_states=torch.randn(2, 4, 3, 16, 16), encoder_hidden_states=torch.randn(2, 20, 16),
             encoder_attention_mask=mask, pooled_projections=torch.randn(2, 8), return_dict=False)
    with torch.no_grad():
        with pytest.raises(moddit.Error, match="slots"):
            with md.record(model, str(tmp_path / "bad.safetensors")):
                model(timestep=torch.full((2,), 900.0), **x)
        path = str(tmp_path / "hy.safetensors")
        with md.record(model, path, slots=[0], layers=[0, 2]):
            md.reset(model, num_steps=1)
            model(timestep=torch.full((2,), 900.0), **x)
    assert not os.path.exists(str(tmp_path / "bad.safetensors"))
    info = moddit.open_trajectory(path).info
    assert info.batch == 1 and info.layers == [0, 2]
    assert info.tokens.text_position == "after" and info.tokens.text_valid == 11


def _cli():
    """The built `moddit` command with an eval subcommand, or None."""
    candidates = [os.environ.get("MODDIT_CLI")] + [
        os.path.join(REPO, d, "cli", "moddit") for d in ("build", "build-release")]
    candidates.append(shutil.which("moddit"))
    for exe in candidates:
        if exe and os.path.exists(exe):
            try:
                r = subprocess.run([exe, "eval", "--help"], capture_output=True, text=True,
                                   timeout=30)
            except OSError:
                continue
            if r.returncode == 0 and "--trajectory" in r.stdout:
                return exe
    return None


@pytest.mark.skipif(_cli() is None, reason="the moddit command is not built (set MODDIT_CLI)")
def test_cli_eval_reads_a_recorded_file(tmp_path):
    import torch
    import moddit.diffusers as md

    model = tiny_wan(num_layers=1)
    path = str(tmp_path / "wan1.safetensors")
    x = dict(hidden_states=torch.randn(1, 4, 3, 16, 16), encoder_hidden_states=torch.randn(1, 7, 16),
             return_dict=False)
    with torch.no_grad(), md.record(model, path):
        md.reset(model, num_steps=4)
        for t in torch.linspace(999, 1, 4):
            model(timestep=t.expand(1), **x)
    out = tmp_path / "report"
    r = subprocess.run([_cli(), "eval", "--trajectory", path, "--policies", "dense,moddit",
                        "--density", "0.5", "--block-size", "64", "--warmup", "2",
                        "--interval", "2", "--out", str(out), "--quiet", "--threads", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["policies"]
