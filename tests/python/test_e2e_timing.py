"""scripts/e2e_timing.py --smoke on the CPU: the benchmark's whole path (the
diffusers pipeline with its scheduler, every mode, per-step kinds, the JSON and
the table, the budget) on a tiny Wan config, so a GPU run works the first time."""
import importlib.util
import json
import os
import pathlib

import moddit
from conftest import needs_diffusers

pytestmark = needs_diffusers

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "e2e_timing.py"


def _script():
    spec = importlib.util.spec_from_file_location("e2e_timing", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path, *extra):
    out = tmp_path / "e2e.json"
    try:
        result = _script().main(["--smoke", "--model", "wan-480p", "--out", str(out), *extra])
    finally:  # --smoke runs moddit on one thread; give the other tests theirs back
        moddit.set_cpu_threads(int(os.environ.get("MODDIT_TEST_THREADS", "2")))
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    return result, out.with_suffix(".md").read_text()


def test_smoke_runs_every_mode_with_every_step_kind(tmp_path):
    result, table = _run(tmp_path)
    runs = {r["mode"]: r for r in result["runs"]}
    assert {"dense", "paper", "best"} <= set(runs)
    assert "fp8" in runs or any(s["mode"] == "fp8" and s["why"] for s in result["skipped"])
    for r in runs.values():
        assert len(r["step_seconds"]) == 8 and r["finite"]
        assert 0 < sum(r["step_seconds"]) <= r["total_seconds"] + 1e-6
        assert abs(sum(e["seconds"] for e in r["by_kind"].values()) - sum(r["step_seconds"])) < 1e-9
    assert runs["dense"]["step_kinds"] == ["dense"] * 8
    # The paper mode's schedule scaled to 8 steps (warm-up 3, interval 2): records
    # at the last two warm-up steps, refreshes every 2 steps after the first sparse one.
    assert runs["paper"]["step_kinds"] == ["dense", "record", "record", "sparse", "sparse",
                                           "refresh", "sparse", "refresh"]
    assert all(a > 0 for a in runs["paper"]["step_attention_seconds"])
    assert 0.3 < runs["paper"]["mean_density"] < 1.0
    assert runs["paper"]["speedup_vs_dense"] > 0
    assert "| off | paper |" in table and "random weights" in table


def test_budget_skips_runs_that_would_not_finish(tmp_path):
    result, table = _run(tmp_path, "--modes", "dense,paper", "--budget", "0.001")
    assert result["runs"] == []
    assert [s["mode"] for s in result["skipped"]] == ["dense", "paper"]
    assert all("--budget" in s["why"] for s in result["skipped"])
    assert "- skipped dense (eager)" in table
