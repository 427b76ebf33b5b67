"""Bad input through the Python module (issue 13): overflowing token layouts,
thread bounds, strict config numbers, non-finite trajectories, FIFO inputs, the
single source of eta and the one DensePolicy. Every case raises moddit.Error (or
ValueError/TypeError where the module uses them) with a message naming the
problem, and writes nothing."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import moddit

# frames x height x width = 2**64 + 256: wraps to 256 in 64 bits.
WRAP = dict(frames=65792, height=5153, width=54410972897)


def test_token_layout_refuses_an_overflowing_product():
    with pytest.raises(moddit.Error, match="overflow"):
        moddit.TokenLayout(**WRAP)
    t = moddit.TokenLayout(frames=2, height=4, width=8)
    t.frames, t.height, t.width = WRAP["frames"], WRAP["height"], WRAP["width"]
    with pytest.raises(moddit.Error, match="overflow"):
        t.validate()
    with pytest.raises(moddit.Error, match="overflow"):
        moddit.make_block_grid(t, 128)
    q = np.zeros((1, 256, 1, 64), np.float32)
    with pytest.raises(moddit.Error, match="overflow"):
        moddit.attention(q, q, q, t)


def test_size_products_refused_before_allocation():
    with pytest.raises(moddit.Error, match="block mask"):
        moddit.BlockMask(1 << 20, 1 << 16, 1 << 20, 1 << 20)


def test_thread_counts_are_bounded():
    with pytest.raises(moddit.Error, match="threads"):
        moddit.set_cpu_threads(10**6)
    with pytest.raises(moddit.Error, match="threads"):
        moddit.set_cpu_threads(-1)
    with pytest.raises(moddit.Error, match="threads"):
        moddit.cpu_backend(10**6)
    moddit.set_cpu_threads(int(os.environ.get("MODDIT_TEST_THREADS", "2")))  # still usable


def test_config_readers_refuse_wrapping_and_fractional_integers():
    with pytest.raises(moddit.Error, match="top_k"):
        moddit.ModditConfig.from_json('{"top_k": 18446744073709551615}')
    with pytest.raises(moddit.Error, match="interval"):
        moddit.ModditConfig.from_json('{"interval": 1.9}')
    with pytest.raises(moddit.Error, match="warmup_steps"):
        moddit.moddit_config(warmup_steps=2**32 + 3)


def _vdit_json():
    cfg = {
        "format": "moddit.sparse_vdit", "version": 1,
        "model": {"num_layers": 1, "num_heads": 2, "head_dim": 64, "num_steps": 10},
        "tokens": {"frames": 4, "height": 8, "width": 8, "text_tokens": 0, "text_valid": 0,
                   "text_position": "none"},
        "block_size": 64,
        "steps": [{"step": 3, "layers": [[{"mode": "diagonal", "window": 1},
                                          {"mode": "vertical_stripe", "stripes": [0, 2]}]]}],
    }
    return cfg


def test_vdit_config_refuses_wrapping_integers_and_overflowing_tokens(tmp_path):
    good = _vdit_json()
    moddit.VditConfig.from_json(json.dumps(good))  # the baseline is valid
    bad = []
    c = _vdit_json(); c["steps"][0]["layers"][0][1]["stripes"] = [2**40]; bad.append((c, "stripes"))
    c = _vdit_json(); c["steps"][0]["layers"][0][0]["window"] = 2**32 + 1; bad.append((c, "window"))
    c = _vdit_json(); c["steps"][0]["layers"][0][0]["window"] = 1.9; bad.append((c, "window"))
    c = _vdit_json(); c["model"]["num_layers"] = 2.9; bad.append((c, "num_layers"))
    c = _vdit_json(); c["tokens"].update(WRAP); bad.append((c, "tokens.width"))
    for cfg, needle in bad:
        with pytest.raises(moddit.Error, match=needle):
            moddit.VditConfig.from_json(json.dumps(cfg))


def _trajectory_with(tmp_path, value):
    spec = moddit.SyntheticSpec()
    spec.frames, spec.height, spec.width = 2, 4, 16
    spec.num_steps, spec.layers, spec.heads, spec.head_dim = 6, 1, 2, 16
    path = str(tmp_path / "t.safetensors")
    moddit.write_trajectory(moddit.make_synthetic(spec), path, "f32")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(bytes(data[8:8 + header_len]))
    begin = header["v/s4/l0"]["data_offsets"][0]
    data[8 + header_len + begin + 40:8 + header_len + begin + 44] = np.float32(value).tobytes()
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_evaluate_refuses_non_finite_trajectories(tmp_path, value):
    path = _trajectory_with(tmp_path, value)
    with pytest.raises(moddit.Error, match="non-finite"):
        moddit.evaluate(path, policies="dense,moddit", target_density=0.5, threads=1,
                        block_size=64, warmup_steps=2, interval=2,
                        report_dir=str(tmp_path / "rep"))
    assert not (tmp_path / "rep").exists()
    src = moddit.open_trajectory(path)
    with pytest.raises(moddit.Error, match="v/s4/l0"):
        src.load(4, 0)


def test_evaluate_checks_the_report_dir_before_the_run(tmp_path):
    (tmp_path / "file").write_text("x")
    path = _trajectory_with(tmp_path, 0.5)
    with pytest.raises(moddit.Error, match="file"):
        moddit.evaluate(path, policies="dense,sparse_vdit", threads=1, block_size=64,
                        warmup_steps=2, interval=2, report_dir=str(tmp_path / "file" / "rep"))


def test_fifo_inputs_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    code = ("import moddit, sys\n"
            "for f in (moddit.ModditConfig.load, moddit.VditConfig.load, moddit.open_trajectory,"
            " moddit.inspect_file):\n"
            "    try:\n"
            "        f(sys.argv[1])\n"
            "    except moddit.Error as e:\n"
            "        assert 'not a regular file' in str(e), e\n"
            "    else:\n"
            "        raise SystemExit('accepted a FIFO')\n")
    r = subprocess.run([sys.executable, "-c", code, str(fifo)], timeout=60, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


def test_eta_has_one_source_the_moddit_config():
    tokens = moddit.TokenLayout(frames=2, height=4, width=16)
    s = moddit.Session(tokens, "moddit", num_layers=1, num_heads=2, head_dim=16, block_size=64,
                       eta=0.02, warmup_steps=2)
    assert s.policy.config.eta == pytest.approx(0.02)
    assert not hasattr(s.options, "eta")  # the Session has no eta of its own
    with pytest.raises(moddit.Error, match="eta"):
        moddit.Session(tokens, "dense", num_layers=1, num_heads=2, head_dim=16, eta=0.02)
    with pytest.raises(TypeError):
        moddit.SessionOptions(eta=0.02)


def test_python_policies_choose_the_eta_of_their_map():
    tokens = moddit.TokenLayout(frames=2, height=4, width=16)
    seen = []

    class Recorder(moddit.PythonPolicy):
        def name(self):
            return "recorder"

        def plan(self, call):
            p = moddit.dense_plan(call.num_heads, True)
            p.map_eta = 0.5
            return p

        def observe(self, call, plan, counts):
            seen.append(counts)

    s = moddit.Session(tokens, Recorder(), num_layers=1, num_heads=1, head_dim=16, block_size=64)
    rng = np.random.default_rng()
    q, k, v = (rng.standard_normal((1, tokens.total_tokens, 1, 16)).astype(np.float32)
               for _ in range(3))
    s.begin_step(0)
    s.attention(0, q, k, v)
    _, ref = moddit.attention(q, k, v, tokens, block_size=64, return_map=True, eta=0.5)
    assert np.array_equal(seen[0], ref)


def test_one_dense_policy():
    p = moddit.make_policy("dense", 1, 2)
    assert isinstance(p, moddit.DensePolicy) and p.name() == "dense"
    assert moddit.DensePolicy.__module__ == moddit.ModditPolicy.__module__


def test_recorder_refuses_a_fifo_path_before_the_run(tmp_path):
    pytest.importorskip("torch")
    from moddit.diffusers.recorder import Recorder

    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(moddit.Error, match="not a regular file"):
        Recorder(str(fifo))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.safetensors"]


def test_atomic_file_from_python_keeps_mode_and_leaves_nothing_on_abort(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    f = moddit._moddit.AtomicFile(str(target))
    f.write(b"new")
    f.commit()
    assert target.read_bytes() == b"new" and (os.stat(target).st_mode & 0o777) == 0o600
    g = moddit._moddit.AtomicFile(str(target))
    g.write(b"never")
    g.abort()
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
