"""Sweeps on a local Dask cluster: expansion, reuse, failures, a killed worker, the gathered table."""

from __future__ import annotations

import os
import threading
import time

import pytest

from voxelbone.sweep import RunOptions, Sweep, expand_grid, load_sweep, run_sweep

pytest.importorskip("distributed")

# Dask's own sockets and port probing, not ours
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
              pytest.mark.filterwarnings("ignore:Port .* is already in use")]

BASE = {"site": "lumbar_spine", "years": 0.05, "size": 48, "step_days": 5, "metrics_every_days": 9,
        "spin_up_days": 10}


def test_grid_expands_and_bad_files_are_explained(tmp_path):
    runs = expand_grid(BASE, {"preset": ["postmenopausal_untreated", "trt"], "seed": [1, 2]})
    assert len(runs) == 4 and len({r.run_id for r in runs}) == 4
    assert {r.scenario.seed for r in runs} == {1, 2}
    assert load_sweep("samples/sweep_small.toml").runs()[0].scenario.size == 64
    with pytest.raises(ValueError, match="unknown field"):
        expand_grid({**BASE, "sizee": 3}, {"seed": [1]})
    with pytest.raises(ValueError, match="empty"):
        expand_grid(BASE, {})
    bad = tmp_path / "s.toml"
    bad.write_text("[base]\nsite = 'lumbar_spine'\n[grids]\nseed = [1]\n")
    with pytest.raises(ValueError, match="unknown table"):
        load_sweep(bad)


def test_unreachable_scheduler_is_reported(tmp_path):
    sweep = Sweep(BASE, {"seed": [1]}, "test")
    with pytest.raises(ConnectionError, match="cannot reach"):
        run_sweep(sweep, tmp_path / "out", options=RunOptions(scheduler="tcp://127.0.0.1:1"))


@pytest.mark.slow
def test_sweep_runs_reuses_and_reports_failures(tmp_path):
    # 16³ cannot hold a phantom of the site: those runs fail with their error, the others complete
    sweep = Sweep(BASE, {"seed": [1, 2], "size": [48, 16]}, "test")
    out = tmp_path / "out"
    rep = run_sweep(sweep, out, options=RunOptions(n_workers=2, backend="numpy"))
    assert sorted(rep.statuses.values()) == ["completed", "completed", "failed", "failed"]
    assert len(rep.errors) == 2 and all("too small" in e for e in rep.errors.values()), rep.errors
    import pandas as pd

    table = pd.read_parquet(rep.table_parquet)
    done = table[table.status == "completed"]
    assert set(done.grid_seed) == {1, 2} and "bv_tv" in table and len(done) >= 4
    assert (out / "sweep.json").exists()
    # a second call reuses the finished runs (their files are not touched)
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.csv")}
    rep2 = run_sweep(sweep, out, options=RunOptions(n_workers=2, backend="numpy"))
    assert rep2.statuses == rep.statuses
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.csv")} == stamp


def test_a_sweep_never_reuses_or_replaces_another_scenarios_run(tmp_path):
    """A grid point whose folder holds a finished run of another scenario (the sweep file was
    edited: another length) stops the sweep before anything is run or rewritten."""
    from voxelbone.backend import get_backend
    from voxelbone.runfolder import RunFolder, RunState, StudyFolder
    from voxelbone.scenario import Period

    sweep = Sweep(BASE, {"seed": [1, 2]}, "test")
    study = StudyFolder(tmp_path / "out")
    first = sweep.runs()[0]
    folder = RunFolder(study.run(first.run_id).path)
    folder.create()
    longer = first.scenario.with_overrides(periods=(Period(first.scenario.periods[0].preset, 0.5),))
    folder.write_status(RunState.COMPLETED, scenario=longer, backend=get_backend("numpy"), timings={}, day=182)
    folder.metrics_table().append({"day": 0, "bv_tv": 0.2})
    before = {p: p.read_bytes() for p in study.path.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"holds a completed run of another scenario \(periods:"):
        run_sweep(sweep, study.path, options=RunOptions(n_workers=1, backend="numpy"))
    assert {p: p.read_bytes() for p in study.path.rglob("*") if p.is_file()} == before  # no sweep.json either


@pytest.mark.slow
def test_killed_worker_gets_its_run_retried(tmp_path):
    import psutil

    sweep = Sweep({**BASE, "years": 0.3, "size": 64, "metrics_every_days": 30}, {"seed": [1, 2]}, "test")
    result = {}
    t = threading.Thread(target=lambda: result.update(rep=run_sweep(
        sweep, tmp_path / "out", options=RunOptions(n_workers=2, backend="numpy", retries=1))))
    t.start()
    deadline = time.time() + 120
    while len(list((tmp_path / "out").glob("runs/*/metrics.csv"))) < 2:  # both runs under way
        assert time.time() < deadline
        time.sleep(0.1)
    # the local cluster's worker processes (spawned by their nannies; not the resource tracker)
    workers = [c for c in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
    assert workers
    os.kill(workers[0].pid, 9)
    t.join(timeout=600)
    rep = result["rep"]
    assert set(rep.statuses.values()) == {"completed"}, rep.errors


def test_workers_and_a_scheduler_together_are_a_usage_error(tmp_path, capsys):
    from voxelbone.cli import main

    assert main(["sweep", "samples/sweep_small.toml", "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:1",
                 "--workers", "2"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything was written
