#!/usr/bin/env python3
"""Writes the fuzz seed corpus (tests/fuzz/corpus/<target>/), deterministically.

The committed corpus is this script's output: small valid inputs of each format
(valid-*, which the readers must accept) and mutations of them that each break
one rule (bad-*, which the readers must refuse), checked by
tests/io/test_fuzz_inputs.cpp. Trajectories are written here with the standard
library (the safetensors layout is simple); the Sparse-vDiT config and the
report come from the moddit command itself (`moddit search`, `moddit eval` on a
tiny synthetic trajectory), so they are what moddit really writes.

    python3 tests/fuzz/make_corpus.py --cli build/cli/moddit
"""
import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def safetensors_bytes(tensors, metadata, header_pad=True):
    """tensors: list of (name, dtype, shape, raw bytes), written in order."""
    header = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    if header_pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def values(rng, count, dtype):
    xs = [rng.gauss(0.0, 1.0) for _ in range(count)]
    if dtype == "F32":
        return struct.pack("<%df" % count, *xs)
    if dtype == "F16":
        return struct.pack("<%de" % count, *xs)
    # BF16: the top half of the f32 bits.
    return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", x))[0])[2:] for x in xs)


def trajectory(rng, frames=2, height=2, width=3, text=0, valid=0, position="none", steps=(0, 3),
               layers=(0, 1), num_steps=5, batch=1, heads=2, head_dim=4, dtype="F16"):
    n = text + frames * height * width
    metadata = {"moddit.trajectory": "1", "frames": str(frames), "height": str(height),
                "width": str(width), "text_tokens": str(text), "text_valid": str(valid),
                "text_position": position, "num_steps": str(num_steps), "source": "fuzz seed"}
    tensors = []
    for s in steps:
        for l in layers:
            for kind in "qkv":
                tensors.append(("%s/s%d/l%d" % (kind, s, l), dtype, [batch, n, heads, head_dim],
                                values(rng, batch * n * heads * head_dim, dtype)))
    return tensors, metadata


def write(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def trajectories(out):
    rng = random.Random(13)
    seeds = {
        "valid-f16-text-before": trajectory(rng, text=3, valid=2, position="before"),
        "valid-bf16-text-after": trajectory(rng, text=2, valid=2, position="after", dtype="BF16",
                                            steps=(1,), layers=(0, 2)),
        "valid-f32-batch2": trajectory(rng, frames=1, height=3, width=2, batch=2, heads=1,
                                       dtype="F32", steps=(0,), layers=(0,), num_steps=1),
    }
    for name, (tensors, md) in seeds.items():
        write(out, name + ".safetensors", safetensors_bytes(tensors, md))

    tensors, md = trajectory(rng, text=3, valid=2, position="before")
    good = safetensors_bytes(tensors, md)
    write(out, "bad-truncated.safetensors", good[:-5])
    write(out, "bad-header-length-beyond-file.safetensors", struct.pack("<Q", len(good)) + good[8:])
    write(out, "bad-header-not-json.safetensors", struct.pack("<Q", 8) + b"{not json")
    write(out, "bad-empty.safetensors", b"")
    write(out, "bad-no-tag.safetensors",
          safetensors_bytes(tensors, {k: v for k, v in md.items() if k != "moddit.trajectory"}))
    write(out, "bad-version-2.safetensors", safetensors_bytes(tensors, dict(md, **{"moddit.trajectory": "2"})))
    write(out, "bad-frames-mismatch.safetensors", safetensors_bytes(tensors, dict(md, frames="3")))
    write(out, "bad-negative-width.safetensors", safetensors_bytes(tensors, dict(md, width="-3")))
    write(out, "bad-text-valid-above-tokens.safetensors", safetensors_bytes(tensors, dict(md, text_valid="4")))
    write(out, "bad-text-position.safetensors", safetensors_bytes(tensors, dict(md, text_position="middle")))
    write(out, "bad-step-beyond-schedule.safetensors", safetensors_bytes(tensors, dict(md, num_steps="3")))
    write(out, "bad-missing-v.safetensors", safetensors_bytes([t for t in tensors if t[0] != "v/s3/l1"], md))
    write(out, "bad-uneven-layers.safetensors",
          safetensors_bytes([t for t in tensors if not t[0].endswith("/s3/l1")], md))
    write(out, "bad-dtype-i16.safetensors",
          safetensors_bytes([(n, "I16", s, r) if n == "k/s0/l0" else (n, d, s, r) for n, d, s, r in tensors], md))
    write(out, "bad-shape-3d.safetensors",
          safetensors_bytes([(n, d, [s[0] * s[1], s[2], s[3]], r) for n, d, s, r in tensors], md))
    write(out, "bad-name-typo.safetensors",
          safetensors_bytes([("q/s0/x0" if n == "q/s0/l0" else n, d, s, r) for n, d, s, r in tensors], md))
    # Two tensors over the same bytes.
    header_len = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + header_len])
    header["k/s0/l0"]["data_offsets"] = header["q/s0/l0"]["data_offsets"]
    text = json.dumps(header).encode()
    write(out, "bad-overlap.safetensors", struct.pack("<Q", len(text)) + text + good[8 + header_len:])


def moddit_configs(out):
    default = {"block_size": 128, "eta": 1e-3, "ridge_lambda": 1e-3, "warmup_steps": 12,
               "interval": 10, "top_k": 0, "target_density": 0.15, "tau_e": -0.2,
               "refresh": "masked", "dense_layers": [], "device_step": True}
    write(out, "valid-all-keys.json", json.dumps(default, indent=2) + "\n")
    write(out, "valid-some-keys.json", json.dumps({"block_size": 64, "top_k": 6, "dense_layers": [1],
                                                    "refresh": "dense", "device_step": False}))
    write(out, "valid-empty.json", "{}")
    for name, text in {
        "bad-unknown-key": '{"block_size": 128, "warmup": 12}',
        "bad-block-size-96": '{"block_size": 96}',
        "bad-eta-zero": '{"eta": 0}',
        "bad-eta-string": '{"eta": "1e-4"}',
        "bad-top-k-fraction": '{"top_k": 2.5}',
        "bad-top-k-huge": '{"top_k": 1099511627776}',
        "bad-interval-negative": '{"interval": -1}',
        "bad-density-above-one": '{"target_density": 1.5}',
        "bad-refresh": '{"refresh": "sometimes"}',
        "bad-dense-layers-not-array": '{"dense_layers": 3}',
        "bad-device-step-number": '{"device_step": 1}',
        "bad-not-object": '[1, 2]',
        "bad-trailing-comma": '{"eta": 1e-4,}',
    }.items():
        write(out, name + ".json", text)


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def vdit_configs(out, cli, tmp):
    path = os.path.join(tmp, "vdit.json")
    run([cli, "search", "--synthetic", "frames=3,height=8,width=8,text_tokens=5,text_valid=4,"
         "text_position=before,num_steps=4,layers=2,heads=3,head_dim=16,batch=2",
         "--block-size", "64", "--first-step", "2", "--out", path, "--quiet", "--threads", "2"])
    text = open(path).read()
    write(out, "valid-searched.json", text)
    cfg = json.loads(text)

    def variant(name, change):
        c = json.loads(text)
        change(c)
        write(out, name + ".json", json.dumps(c, indent=1))

    # Every mode with its parameters, in a config of its own.
    def all_modes(c):
        layer = [{"mode": "full"}, {"mode": "skip"}, {"mode": "diagonal", "window": 1}]
        c["steps"][0]["layers"][0] = layer
        c["steps"][0]["layers"][1] = [{"mode": "multi_diagonal", "window": 16},
                                      {"mode": "vertical_stripe", "stripes": [0, 2]}, {"mode": "full"}]
    variant("valid-every-mode", all_modes)
    variant("bad-version-2", lambda c: c.update(version=2))
    variant("bad-format", lambda c: c.update(format="moddit.config"))
    variant("bad-unknown-key", lambda c: c.update(extra=1))
    variant("bad-unknown-mode", lambda c: c["steps"][0]["layers"][0].__setitem__(0, {"mode": "sliding"}))
    variant("bad-stripe-beyond-grid",
            lambda c: c["steps"][0]["layers"][0].__setitem__(0, {"mode": "vertical_stripe", "stripes": [99]}))
    variant("bad-negative-window",
            lambda c: c["steps"][0]["layers"][0].__setitem__(0, {"mode": "diagonal", "window": -1}))
    variant("bad-heads-missing", lambda c: c["steps"][0]["layers"][0].pop())
    variant("bad-layers-missing", lambda c: c["steps"][0]["layers"].pop())
    variant("bad-step-beyond-schedule", lambda c: c["steps"][-1].update(step=9))
    variant("bad-block-size-96", lambda c: c.update(block_size=96))
    variant("bad-tokens-text-valid", lambda c: c["tokens"].update(text_valid=9))
    variant("bad-num-layers-string", lambda c: c["model"].update(num_layers="2"))
    variant("bad-no-steps", lambda c: c.pop("steps"))
    write(out, "bad-not-json.json", text[: len(text) // 2])
    assert cfg["version"] == 1


def reports(out, cli, tmp):
    rdir = os.path.join(tmp, "report")
    run([cli, "eval", "--synthetic", "frames=3", "height=8", "width=8", "num_steps=6", "layers=1",
         "heads=2", "head_dim=16", "--policies", "dense,moddit,window", "--density", "0.5",
         "--block-size", "64", "--warmup", "3", "--interval", "2", "--snapshot-heads", "1",
         "--out", rdir, "--quiet", "--threads", "2"])
    text = open(os.path.join(rdir, "report.json")).read()
    write(out, "valid-eval.json", text)
    rep = json.loads(text)
    small = {k: rep[k] for k in ("moddit_report", "settings", "policies")}
    small["policies"] = [{k: p[k] for k in ("label", "density", "recall", "rel_l2") if k in p}
                         for p in rep["policies"]]
    write(out, "valid-minimal.json", json.dumps(small))
    write(out, "bad-no-policies.json", json.dumps({"moddit_report": rep["moddit_report"]}))
    write(out, "bad-not-report.json", json.dumps({"block_size": 128}))
    write(out, "bad-not-json.json", text[: len(text) // 3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", required=True, help="the built moddit command (build/cli/moddit)")
    args = ap.parse_args()
    corpus = os.path.join(HERE, "corpus")
    shutil.rmtree(corpus, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        trajectories(os.path.join(corpus, "trajectory"))
        moddit_configs(os.path.join(corpus, "moddit_config"))
        vdit_configs(os.path.join(corpus, "vdit_config"), args.cli, tmp)
        reports(os.path.join(corpus, "report"), args.cli, tmp)
    for target in sorted(os.listdir(corpus)):
        files = os.listdir(os.path.join(corpus, target))
        size = sum(os.path.getsize(os.path.join(corpus, target, f)) for f in files)
        print("%-14s %3d files, %6d bytes" % (target, len(files), size))


if __name__ == "__main__":
    main()
