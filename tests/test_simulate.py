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

from voxelbone.results import load_rows, open_snapshot
from voxelbone.runfolder import RunFolder
from voxelbone.scenario import Period, Scenario
from voxelbone.simulate import simulate

#: 110 days in 3-day steps: the last step is two days, so resuming covers a cut last step too.
SCENARIO = """
name = "resume-check"
site = "lumbar_spine"
size = 64
seed = 4
step_days = 3
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
        for k in ("bv_tv", "tb_th_um", "conn_d_per_mm3", "bmd_mg_cm3", "tb_vbmd_mg_cm3", "abmd_pct"):
            assert ra[k] == rb[k], (k, ra["day"])
    sa, sb = RunFolder(ref).snapshots(), RunFolder(out).snapshots()
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


def test_the_last_step_ends_on_the_runs_last_day(monkeypatch):
    """91 days in 10-day steps: nine whole steps and a last one of a day, its hormones read at its
    own middle. (The last step was a whole one: 100 days simulated, reported as 91, so every
    annual change of a run whose days are not whole steps came out about 10 % too large.)"""
    from voxelbone.remodel.engine import Remodeler

    taken = []
    step = Remodeler.step
    monkeypatch.setattr(Remodeler, "step", lambda self, k, rates, dt_days=1: taken.append(dt_days) or step(self, k, rates, dt_days))
    sc = Scenario(name="x", site="lumbar_spine", periods=(Period("postmenopausal_untreated", 0.25),), size=48,
                  voxel_size_um=30.0, step_days=10, metrics_every_days=30, spin_up_days=0)
    res = simulate(sc, None, progress=False, render=False, backend="numpy", measure=lambda v: {})
    assert sc.days == 91 and taken[-10:] == [10] * 9 + [1], taken
    assert res.column("day")[-1] == 91


@pytest.mark.parametrize("kw, match", [
    ({"years": -1.0}, "positive"),
    ({"step_days": 0}, "step"),
    ({"step_days": 60}, "step"),
    ({"site": "tibia"}, "site"),
    ({"years": 1e-4}, "at least one day"),
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


def test_run_with_an_unknown_preset_fails_before_it_is_announced(tmp_path, capsys):
    from voxelbone.cli import main

    for extra in ([], ["--replicates", "2"]):
        assert main(["run", "--preset", "trt_anastrazole_excess", "--out", str(tmp_path / "out"), *extra]) == 2
        err = capsys.readouterr().err
        assert "trt_anastrozole_excess" in err and "voxelbone 0" not in err, err  # no "voxelbone X.Y: ... backend" line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ the end of a run, progress, --resume
TINY = Scenario(name="tiny", site="lumbar_spine", periods=(Period("postmenopausal_untreated", 0.1),), size=48, seed=5,
                step_days=1, metrics_every_days=30, snapshot_every_days=30, checkpoint_every_days=10, spin_up_days=10)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny run with figures whose animation fails; what the failing render saw, and stderr."""
    import contextlib
    import io

    import voxelbone.render
    from voxelbone.runfolder import RunFolder

    out = tmp_path_factory.mktemp("fig") / "run"
    seen = {}

    def failing_animation(*args, **kwargs):
        folder = RunFolder(out)
        seen.update(state=folder.state(), checkpoint=folder.checkpoint.exists())
        raise RuntimeError("no OpenGL context for the animation")

    err = io.StringIO()  # not a terminal
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err):
        mp.setattr(voxelbone.render, "animate", failing_animation)
        simulate(TINY, out, backend="numpy", progress=True, render=True)
    return out, seen, err.getvalue()


def test_a_failing_figure_leaves_the_run_completed_with_the_error_recorded(finished):
    from voxelbone.runfolder import RunFolder, RunState

    out, seen, err = finished
    assert seen == {"state": RunState.COMPLETED, "checkpoint": False}  # final before any figure is drawn
    folder = RunFolder(out)
    info = folder.info()
    assert folder.state() is RunState.COMPLETED and info["status"] == "completed"
    assert info["figure_errors"] == {"structure": "RuntimeError: no OpenGL context for the animation"}
    assert "figure 'structure' not drawn: RuntimeError: no OpenGL context" in err
    # the other figures were drawn, those after the failing one included
    for path in (folder.render_path("change"), folder.render_path("thickness_end"), folder.plot_path("metrics")):
        assert path.is_file(), path
    assert info["timings_s"]["figures"] > 0 and info["timings_s"]["total"] >= info["timings_s"]["figures"]


def test_progress_without_a_terminal_is_plain_lines(finished):
    _, _, err = finished
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("tiny 0.1 yr:")]
    assert 10 <= len(lines) <= 21, lines  # one per 5 % of 37 steps, not one per redraw
    assert lines[-1].startswith("tiny 0.1 yr: 100% (37/37 steps") and "BV/TV" in lines[-1]


def test_step_time_is_charged_to_the_steps(finished):
    from voxelbone.runfolder import RunFolder

    t = RunFolder(finished[0]).info()["timings_s"]
    assert t["steps"] > 0 and t["metrics"] > 0
    parts = t["setup"] + t["spin_up"] + t["steps"] + t["metrics"] + t["io"] + t["figures"]
    assert parts <= t["total"] + 0.01


def test_resume_of_a_completed_run_says_so_and_succeeds(finished, capsys):
    from voxelbone.cli import main

    out = finished[0]
    before = (out / "run.json").read_text()
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "holds a completed run" in captured.err and "BV/TV" in captured.out
    assert (out / "run.json").read_text() == before  # nothing rerun, nothing rewritten


def test_resume_with_scenario_flags_is_a_usage_error(finished, capsys):
    from voxelbone.cli import main

    assert main(["run", "--resume", str(finished[0]), "--preset", "trt", "--years", "1"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--preset, --years" in err


def test_a_run_that_fails_is_recorded_as_failed(tmp_path):
    from voxelbone.runfolder import RunFolder, RunState

    def broken(volume):
        raise ArithmeticError("metric diverged")

    with pytest.raises(ArithmeticError):
        simulate(TINY.with_overrides(periods=(Period("postmenopausal_untreated", 0.02),)), tmp_path / "run",
                 backend="numpy", progress=False, render=False, measure=broken)
    folder = RunFolder(tmp_path / "run")
    assert folder.state() is RunState.FAILED
    assert folder.info()["error"] == "ArithmeticError: metric diverged"
