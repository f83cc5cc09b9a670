"""The run loop: results folder, interruption by signal, resume identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from voxelbone.results import iter_snapshots, load_rows, open_snapshot
from voxelbone.scenario import Period, Scenario
from voxelbone.simulate import simulate

SCENARIO = """
name = "resume-check"
site = "lumbar_spine"
size = 64
seed = 4
step_days = 2
metrics_every_days = 20
snapshot_every_days = 40
checkpoint_every_days = 10
spin_up_days = 20

[[period]]
preset = "postmenopausal_untreated"
years = 0.3
"""


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "VOXELBONE_BACKEND": "numpy", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "voxelbone.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    (root / "s.toml").write_text(SCENARIO)
    p = _cli("run", "--scenario", str(root / "s.toml"), "--out", str(root / "run"), "--no-render", "--quiet")
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    return root


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_resumes_to_identical_result(reference, tmp_path, sig):
    (tmp_path / "s.toml").write_text(SCENARIO)
    out = tmp_path / "run"
    p = _cli("run", "--scenario", str(tmp_path / "s.toml"), "--out", str(out), "--no-render", "--quiet")
    deadline = time.time() + 300
    while not (out / "checkpoint.npz").exists():  # wait for the first checkpoint, then interrupt
        assert p.poll() is None, p.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted" and 0 < info["day_reached"] < 110
    # starting again into the same folder is refused; --resume continues
    again = _cli("run", "--scenario", str(tmp_path / "s.toml"), "--out", str(out), "--no-render")
    _, err2 = again.communicate(timeout=120)
    assert again.returncode == 2 and "--resume" in err2
    r = _cli("run", "--resume", str(out), "--no-render", "--quiet")
    _, err3 = r.communicate(timeout=600)
    assert r.returncode == 0, err3[-3000:]
    assert json.loads((out / "run.json").read_text())["status"] == "completed"
    ref = reference / "run"
    a, b = load_rows(ref / "metrics.csv"), load_rows(out / "metrics.csv")
    assert [row["day"] for row in a] == [row["day"] for row in b]
    for ra, rb in zip(a, b):
        for k in ("bv_tv", "tb_th_um", "conn_d_per_mm3", "bmd_mg_cm3"):
            assert ra[k] == rb[k], (k, ra["day"])
    sa, sb = list(iter_snapshots(ref)), list(iter_snapshots(out))
    assert [d for d, _ in sa] == [d for d, _ in sb]
    fa, fb = open_snapshot(sa[-1][1]), open_snapshot(sb[-1][1])
    for k in ("bone", "mineral", "region"):
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]))


def test_results_folder_records_what_made_it(reference):
    info = json.loads((reference / "run" / "run.json").read_text())
    for key in ("scenario", "seed", "backend", "device", "voxelbone_version", "git_commit", "reproduce", "timings_s"):
        assert key in info
    assert info["scenario"]["seed"] == 4 and info["backend"] == "numpy"
    assert (reference / "run" / "scenario.toml").read_text().strip()
    rows = load_rows(reference / "run" / "metrics.csv")
    assert rows[0]["day"] == 0 and rows[-1]["day"] == pytest.approx(0.3 * 365.25, abs=2)
    hormones = load_rows(reference / "run" / "hormones.csv")
    assert hormones[0]["estradiol_pg_ml"] < 20  # postmenopausal


def test_same_seed_same_result_in_memory():
    sc = Scenario(name="x", site="lumbar_spine", periods=(Period("postmenopausal_untreated", 0.1),), size=64, seed=2,
                  step_days=5, metrics_every_days=15, spin_up_days=10)
    measure = lambda v: {"bone": float(np.asarray(v.bone).sum(dtype=np.float64))}  # noqa: E731
    a = simulate(sc, None, progress=False, render=False, measure=measure, backend="numpy")
    b = simulate(sc, None, progress=False, render=False, measure=measure, backend="numpy")
    c = simulate(sc.with_overrides(seed=3), None, progress=False, render=False, measure=measure, backend="numpy")
    assert a.column("bone").tolist() == b.column("bone").tolist()
    assert a.column("bone").tolist() != c.column("bone").tolist()


@pytest.mark.parametrize("kw, match", [
    ({"years": -1.0}, "positive"),
    ({"step_days": 0}, "step"),
    ({"step_days": 60}, "step"),
    ({"site": "tibia"}, "site"),
])
def test_bad_scenarios_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        years = kw.pop("years", 0.1)
        base = dict(name="x", site="lumbar_spine", periods=(Period("postmenopausal_untreated", years),))
        base.update(kw)
        sc = Scenario(**base)
        simulate(sc, None, progress=False, render=False, backend="numpy")


def test_unknown_preset_lists_close_matches():
    from voxelbone.presets import PresetError, load_preset

    with pytest.raises(PresetError, match="trt_anastrozole_excess"):
        load_preset("trt_anastrazole_excess")
