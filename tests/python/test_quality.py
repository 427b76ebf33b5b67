"""moddit.quality (CPU, small sizes): PSNR / SSIM against skimage, the dense
block mass and the oracles against explicit references and moddit eval's own
oracle, the baselines' masks from moddit's builders, the run planner's budget
and priority rules, and the quality script's smoke mode end to end on the
committed moddit-tiny (MOD-DiT, Sparse-vDiT and every baseline at 4 x 8 x 8 =
256 tokens, blocks of 64), with the report built from its results."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import needs_diffusers, needs_torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COMMITTED = os.path.join(REPO, "models", "moddit-tiny")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small tensors: threads only add OpenMP spinning on a busy 2-core CI machine."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- PSNR and SSIM ------------------------------------------------------------------

@needs_torch
def test_psnr_and_ssim_equal_skimage():
    import torch
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    from moddit.quality import metrics

    g = torch.Generator().manual_seed(3)
    ref = torch.rand(2, 3, 21, 26, 3, generator=g, dtype=torch.float64)
    noise = torch.tensor([0.02, 0.2], dtype=torch.float64)[:, None, None, None, None]
    vid = (ref + noise * torch.randn(ref.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    psnr, ssim = metrics.psnr(vid, ref), metrics.ssim(vid, ref)
    for b in range(2):
        sk_p = peak_signal_noise_ratio(ref[b].numpy(), vid[b].numpy(), data_range=1.0)
        sk_s = np.mean([structural_similarity(ref[b, f].numpy(), vid[b, f].numpy(),
                                              channel_axis=-1, data_range=1.0)
                        for f in range(ref.shape[1])])
        assert abs(float(psnr[b]) - sk_p) < 1e-9
        assert abs(float(ssim[b]) - sk_s) < 1e-9
    assert psnr[0] > psnr[1] and ssim[0] > ssim[1]
    # float32 (the GPU path's precision) stays close.
    s32 = metrics.ssim(vid.float().cuda() if torch.cuda.is_available() else vid.float(),
                       ref.float().cuda() if torch.cuda.is_available() else ref.float())
    assert torch.allclose(s32.cpu(), ssim, atol=1e-4)
    # Identical videos: the cap and 1, not inf / NaN.
    assert float(metrics.psnr(ref, ref)[0]) == metrics.PSNR_CAP
    assert abs(float(metrics.ssim(ref, ref)[0]) - 1.0) < 1e-12


@needs_torch
def test_metrics_refuse_bad_input():
    import torch
    from moddit.quality import metrics

    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(torch.zeros(1, 2, 8, 8, 3), torch.zeros(1, 2, 8, 9, 3))
    with pytest.raises(ValueError, match=r"\[B, F, H, W, C\]"):
        metrics.ssim(torch.zeros(8, 8, 3), torch.zeros(8, 8, 3))
    with pytest.raises(ValueError, match="at least 7"):
        metrics.ssim(torch.zeros(1, 1, 5, 9, 3), torch.zeros(1, 1, 5, 9, 3))


# --- block mass, oracles, shadow metrics ----------------------------------------------

def _qkv(seed=0, B=2, N=256, H=2, D=128):
    import torch

    g = torch.Generator().manual_seed(seed)
    q = 0.3 * torch.randn(B, N, H, D, generator=g)
    k = 0.3 * torch.randn(B, N, H, D, generator=g)
    # A few strong directions: concentrated, uneven attention.
    q[..., :4] += 3 * torch.randn(1, N, 1, 4, generator=g)
    k[..., :4] += 3 * torch.randn(1, N, 1, 4, generator=g)
    return q, k, torch.randn(B, N, H, D, generator=g)


@needs_torch
def test_block_mass_and_oracles_match_references():
    import torch
    import moddit
    from moddit.quality import attention as att

    q, k, v = _qkv()
    mass = att.block_mass(q, k, 64)
    p = torch.softmax(torch.einsum("bnhd,bmhd->bhnm", q.double(), k.double()) / 128 ** 0.5, -1)
    ref = p.reshape(2, 2, 4, 64, 4, 64).sum((3, 5))
    assert torch.allclose(mass.double(), ref, rtol=1e-4, atol=1e-4)

    tokens = moddit.TokenLayout(frames=4, height=8, width=8)
    grid = moddit.make_block_grid(tokens, 64)
    for d in (0.25, 0.5, 0.75):           # d * 16 whole blocks: every rounding rule agrees
        masks = att.global_oracle_masks(mass, d)
        curve = att.global_oracle_recall(mass, [d])[0]
        for b in range(2):
            for h in range(2):
                m = masks[b, h].numpy()
                want = moddit._moddit.oracle_video_mask(mass[b, h].double().numpy(), grid, d)
                # Same kept mass as moddit eval's oracle (masks may differ only on ties).
                kept = lambda x: float((mass[b, h].numpy() * x).sum() / mass[b, h].sum())
                assert abs(kept(m) - kept(want)) < 1e-6
                assert abs(kept(m) - float(curve[b, h])) < 1e-6
                assert m.sum() == want.sum() and all(m[i, i] for i in range(4))
        rows = att.row_oracle_masks(mass, d)
        assert (rows.sum((-1, -2)) == round(d * 16)).all()
        assert torch.allclose(att.row_oracle_recall(mass, [d])[0],
                              (mass * rows).sum((2, 3)) / mass.sum((2, 3)), atol=1e-6)
        # The global oracle keeps at least what the per-row one keeps.
        assert (curve >= att.row_oracle_recall(mass, [d])[0] - 1e-6).all()

    # Shadow metrics of a layout run by moddit: recall, rel_l2, density.
    masks = att.global_oracle_masks(mass, 0.5)
    layout = att.layout_of(masks, grid)
    assert abs(moddit.video_density(layout, grid) - 0.5) < 1e-9
    out = moddit.attention(q, k, v, tokens, layout=layout, block_size=64)
    dense = att.sdpa_nhd(q, k, v)
    err = att.rel_l2(out, dense)
    assert (err > 0.01).all() and (err < 1.5).all()
    assert float(att.rel_l2(moddit.attention(q, k, v, tokens, block_size=64), dense).max()) < 1e-5
    full = torch.ones_like(masks)
    assert torch.allclose(att.recall_of(full, mass), torch.ones(2), atol=1e-5)
    assert (att.recall_of(masks, mass) < 1).all()
    with pytest.raises(ValueError, match="multiple of the block size"):
        att.block_mass(q[:, :200], k[:, :200], 64)


def test_baseline_masks_come_from_moddit_eval_builders():
    import moddit
    from moddit import _moddit as C

    tokens = moddit.TokenLayout(frames=16, height=24, width=32)
    grid = moddit.make_block_grid(tokens, 128)
    for kind in ("window", "radial"):
        m = C.static_video_mask(kind, tokens, grid, 0.15)
        assert m.shape == (96, 96) and all(m[i, i] for i in range(96))
        assert abs(m.mean() - 0.15) < 0.02
    spatial, temporal = C.svg_video_masks(tokens, grid, 0.2)
    assert spatial.shape == temporal.shape == (96, 96) and (spatial != temporal).any()
    full = moddit.VditHeadChoice()
    assert C.vdit_video_mask(full, tokens, grid).all()
    skip = moddit.VditHeadChoice()
    skip.mode = moddit.VditMode.SKIP
    assert not C.vdit_video_mask(skip, tokens, grid).any()
    with pytest.raises(moddit.Error, match='"radial" or "window"'):
        C.static_video_mask("tile", tokens, grid, 0.15)
    with pytest.raises(moddit.Error, match=r"target density must be in \(0, 1\]"):
        C.svg_video_masks(tokens, grid, 0.0)
    with pytest.raises(moddit.Error, match="the grid has 96x96"):
        C.oracle_video_mask(np.zeros((4, 4)), grid, 0.15)


# --- the planner -------------------------------------------------------------------

class _Search:
    """A stand-in for the background search: running until waited for."""

    def __init__(self, ok=True):
        self.ok, self.finished = ok, not ok
        self.table = object() if ok else None
        self.error = None if ok else "failed"

    @property
    def done(self):
        return self.finished

    def wait(self, timeout):
        self.finished = True
        return True

    def elapsed(self):
        return 1.0

    def describe(self):
        return {}


@needs_diffusers
def test_planner_keeps_priority_waits_for_the_search_and_skips_what_does_not_fit(tmp_path):
    from moddit.quality import run as qrun

    s = qrun.smoke_settings(COMMITTED, str(tmp_path), budget_seconds=75.0, extras=False)
    ev = qrun.Evaluation(s)
    ev.results["meta"] = {}
    ev.costs["dense_ref"] = [10.0]
    order = []
    ev.search = _Search()

    def fake_run(cfg):
        order.append(cfg.name)
        ev.costs.setdefault(cfg.policy, []).append(10.0)
        ev.t0 -= 10.0                      # ten seconds pass per run
        ev.results["runs"][cfg.name] = {}

    ev.run = fake_run
    ev.execute()
    names = [c.name for c in ev.configs()]
    main = [c.name for c in ev.configs() if c.group == "main"]
    # The main table in order, Sparse-vDiT (last) once its search was waited for,
    # before any sweep; then the budget ran out (7 runs of 10 s in 75 s).
    assert order == [n for n in main if "vdit" not in n] + ["sparse_vdit@0.50"]
    skipped = {x["name"]: x["why"] for x in ev.results["skipped"]}
    assert sorted(order + list(skipped)) == sorted(names)
    assert skipped and all("left" in why for why in skipped.values())
    saved = json.load(open(os.path.join(str(tmp_path), "quality_results.json")))
    assert saved["skipped"] == ev.results["skipped"]

    # A failed search skips Sparse-vDiT with the reason, the rest runs.
    ev2 = qrun.Evaluation(qrun.smoke_settings(COMMITTED, str(tmp_path / "b"), extras=False))
    ev2.results["meta"] = {}
    ev2.costs["dense_ref"] = [1.0]
    ev2.search = _Search(ok=False)
    ev2.run = lambda cfg: ev2.results["runs"].__setitem__(cfg.name, {})
    ev2.execute()
    why = [x["why"] for x in ev2.results["skipped"] if x["name"] == "sparse_vdit@0.50"]
    assert why and "failed" in why[0]
    assert len(ev2.results["runs"]) == len(ev2.configs()) - 1


# --- the smoke run on the committed model ---------------------------------------------

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    if not os.path.isdir(COMMITTED):
        pytest.skip("models/moddit-tiny is not committed")
    pytest.importorskip("diffusers")
    pytest.importorskip("accelerate")
    from moddit.quality import cli

    out = str(tmp_path_factory.mktemp("quality"))
    rc = cli.main(["--smoke", "--model", COMMITTED, "--out-dir", out, "--scratch", out,
                   "--steps", "5"])
    assert rc == 0
    with open(os.path.join(out, "quality_results.json")) as f:
        return out, json.load(f)


def test_smoke_run_covers_every_policy_and_output(smoke):
    out, res = smoke
    assert not res["errors"], res["errors"]
    runs = res["runs"]
    policies = {r["policy"] for r in runs.values() if r.get("group") == "main"}
    assert policies == {"moddit_default", "moddit_paper", "oracle", "window", "radial", "svg",
                        "sparse_vdit"}
    assert any(r.get("group", "").startswith("sweep:warmup_steps") for r in runs.values())
    warm = [r for r in runs.values() if r.get("group") == "sweep:sparse_warmup_steps"]
    assert [r["params"] for r in warm] == [{"sparse_warmup_steps": 1}]
    for name, r in runs.items():
        if name == "dense":
            continue
        if r.get("group") == "sweep:reference":  # the sweeps' own dense reference (1 video)
            assert r["pairs"] == 1 and len(r["psnr_vs_full_batch"]) == 1
            continue
        assert 0.25 <= r["achieved_density"] < 1.0, name
        assert len(r["psnr"]) == len(r["ssim"]) == (r["pairs"] or 2), name
        assert 0 < r["psnr_mean"] < 100 and 0 < r["ssim_mean"] < 1, name
        if r.get("group") == "main":
            sh = r["shadow"]
            assert sh["calls"] > 0 and 0 < sh["recall"] <= 1 and sh["rel_l2"] > 0, name
            # Within rounding, nothing keeps more mass than the oracle at its density.
            assert sh["recall"] <= sh["oracle_recall"] + 1e-3, name
    assert res["sparse_vdit_search"]["error"] is None
    assert runs["sparse_vdit@0.50"]["vdit_summary"]
    stats = json.load(open(os.path.join(out, "attention_stats.json")))
    curve = stats["oracle_recall_global"]["all"]
    assert all(a <= b + 1e-9 for a, b in zip(curve, curve[1:])) and curve[-1] <= 1 + 1e-6
    assert stats["map_change"]["next_step"]["overlap"]
    assert [f for f in os.listdir(out) if f.startswith("frames_") and f.endswith(".png")]


def test_report_and_summary_from_the_smoke_results(smoke, tmp_path):
    out, res = smoke
    doc = tmp_path / "QUALITY.md"
    doc.write_text("# Quality\n\n## Procedural trajectories (test harness, not a model)\n\nkept\n")
    script = os.path.join(REPO, "scripts", "quality_report.py")
    for _ in range(2):  # the second run replaces its section, the other one stays
        subprocess.run([sys.executable, script, "--results", out, "--doc", str(doc),
                        "--pictures", str(tmp_path / "quality"), "--no-procedural"],
                       check=True, capture_output=True)
    text = doc.read_text()
    assert text.count("BEGIN moddit-tiny quality") == 1 and "kept" in text
    assert "Target density 0.50" in text and "Sparse-vDiT (searched)" in text
    assert "Which attention metric predicts video quality" in text
    assert "**sparse_warmup_steps**" in text
    assert (tmp_path / "quality" / "psnr_vs_density.png").exists()
    from moddit.quality import cli

    lines = cli.summary_lines(res)
    assert any(l.startswith("moddit_default@0.50") for l in lines)
