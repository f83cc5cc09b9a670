"""Replicates: seeds, summary.csv against a hand computation, parallel runs, report intervals, bands, bad input."""

from __future__ import annotations

import csv
import html
import math
import os
import re

import numpy as np
import pytest

from voxelbone.backend import get_backend
from voxelbone.cli import main
from voxelbone.intervals import Interval, paired_interval, t_interval
from voxelbone.replicates import (SUMMARY_COLUMNS, check_replicate_count, replicate_scenarios, replicate_seed,
                                  simulate_replicates, summarize, write_summary)
from voxelbone.runfolder import RunFolder, RunState, StudyFolder
from voxelbone.scenario import Period, Scenario
from voxelbone.sweep import RunOptions

pytest.importorskip("distributed")

# Dask's own sockets and port probing, not ours
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
              pytest.mark.filterwarnings("ignore:Port .* is already in use")]

SCENARIO = Scenario(name="rep", site="lumbar_spine", periods=(Period("postmenopausal_untreated", 0.1),), size=48,
                    seed=5, step_days=5, metrics_every_days=10, spin_up_days=10)
T_975_DF2 = 4.302652729911275  # Student's t, 97.5th percentile, 2 degrees of freedom (tables)


# ------------------------------------------------------------------------------------ helpers
def _fake_replicates(path, seeds, series, metric="bv_tv"):
    """A replicates folder written through RunFolder, with given metric values per replicate (no simulation)."""
    study = StudyFolder(path)
    backend = get_backend("numpy")
    for i, (seed, values) in enumerate(zip(seeds, series)):
        folder = study.replicate(i)
        folder.create()
        table = folder.metrics_table()
        for k, v in enumerate(values):
            table.append({"day": 36.525 * k, "year": 0.1 * k, "preset": "p", metric: float(v), "tb_th_um": 100.0 + k * i,
                          "engine_perforations": 3.0, "estradiol_pg_ml": 10.0})
        folder.write_status(RunState.COMPLETED, scenario=Scenario(seed=seed), backend=backend, timings={})
    return study


def _hand_interval(values):
    x = np.asarray(values, float)
    half = T_975_DF2 * math.sqrt(((x - x.mean()) ** 2).sum() / (x.size - 1)) / math.sqrt(x.size)
    return x.mean(), x.mean() - half, x.mean() + half


# ------------------------------------------------------------------------------------ seeds and intervals
def test_replicate_seeds_are_deterministic_distinct_and_independent_of_the_count():
    five = [s.seed for s in replicate_scenarios(SCENARIO, 5)]
    assert five[:3] == [s.seed for s in replicate_scenarios(SCENARIO, 3)]
    assert len(set(five)) == 5 and all(0 <= s < 2**31 for s in five)
    assert five[0] == replicate_seed(5, 0) != replicate_seed(6, 0)
    assert all(s.periods == SCENARIO.periods and s.size == 48 for s in replicate_scenarios(SCENARIO, 2))


def test_t_interval_matches_the_formula_and_flags_zero():
    mean, low, high = _hand_interval([3.0, 4.0, 5.5])
    iv = t_interval([3.0, 4.0, 5.5])
    assert (iv.mean, iv.low, iv.high, iv.n) == pytest.approx((mean, low, high, 3))
    assert iv.resolved and iv.format() == f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"
    wide = t_interval([-1.0, 2.0, 0.5])
    assert not wide.resolved and wide.format().endswith("unresolved")
    assert math.isnan(t_interval([1.0]).low) and not t_interval([1.0]).resolved
    assert math.isnan(t_interval([1.0, float("nan")]).mean)
    # paired: the interval of the differences, far narrower than either side's spread
    a, b = [1.0, 5.0, 9.0], [1.5, 5.6, 9.4]
    d = paired_interval(a, b)
    assert (d.mean, d.low, d.high) == pytest.approx(_hand_interval([0.5, 0.6, 0.4]))
    assert d.resolved and not t_interval(b).low > t_interval(a).high


def test_summary_csv_equals_a_hand_computation(tmp_path):
    series = [[0.20, 0.19, 0.18], [0.10, 0.098, 0.095], [0.15, 0.15, 0.140]]
    study = _fake_replicates(tmp_path / "reps", [11, 12, 13], series)
    rows = write_summary(study)
    with open(study.summary_csv, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0].keys()) == SUMMARY_COLUMNS
    assert [r["metric"] for r in table] == ["bv_tv", "tb_th_um"]  # no time, label, engine or hormone columns
    bv = table[0]
    changes = [(s[-1] - s[0]) / s[0] / 0.2 * 100 for s in series]
    mean, low, high = _hand_interval(changes)
    assert float(bv["start_mean"]) == pytest.approx(np.mean([s[0] for s in series]))
    assert float(bv["end_mean"]) == pytest.approx(np.mean([s[-1] for s in series]))
    assert float(bv["change_pct_per_yr_mean"]) == pytest.approx(mean)
    assert float(bv["change_pct_per_yr_ci_low"]) == pytest.approx(low)
    assert float(bv["change_pct_per_yr_ci_high"]) == pytest.approx(high)
    assert bv["n_replicates"] == "3" and bv["resolved"] == str(high < 0)
    assert rows[0]["resolved"] == (high < 0)
    assert StudyFolder(study.path).read_summary()[0]["change_pct_per_yr_mean"] == pytest.approx(mean)


def test_summary_needs_every_replicate_completed(tmp_path):
    study = _fake_replicates(tmp_path / "reps", [1, 2], [[1.0, 0.9], [1.0, 0.8]])
    study.replicate(1).update_info(status="running")
    with pytest.raises(ValueError, match="rep_01"):
        write_summary(study)
    with pytest.raises(ValueError, match="two metrics rows"):
        summarize([[{"day": 0.0, "year": 0.0, "bv_tv": 1.0}]])


# ------------------------------------------------------------------------------------ a real parallel run
@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    out = tmp_path_factory.mktemp("replicates") / "reps"
    return simulate_replicates(SCENARIO, out, 2, options=RunOptions(n_workers=2, backend="numpy"))


def test_replicates_run_in_parallel_processes_with_their_own_seeds(replicated):
    res = replicated
    assert res.completed, res.errors
    pids = list(res.pids.values())
    assert len(set(pids)) == 2 and os.getpid() not in pids  # two worker processes, not this one
    study = res.study
    folders = study.replicates()
    assert [f.path.name for f in folders] == ["rep_00", "rep_01"]
    assert [f.info()["seed"] for f in folders] == res.seeds == [s.seed for s in replicate_scenarios(SCENARIO, 2)]
    first = [f.read_metrics()[0] for f in folders]
    assert first[0]["bv_tv"] != first[1]["bv_tv"]  # different starting structures
    assert study.replicates_info()["n_replicates"] == 2


def test_summary_of_a_real_run_matches_its_metrics_tables(replicated):
    tables = [f.read_metrics() for f in replicated.study.replicates()]
    by_metric = {r["metric"]: r for r in replicated.study.read_summary()}
    for m in ("bv_tv", "tb_th_um", "conn_d_per_mm3", "bmd_mg_cm3"):
        changes = [(t[-1][m] - t[0][m]) / abs(t[0][m]) / (t[-1]["year"] - t[0]["year"]) * 100 for t in tables]
        x = np.asarray(changes)
        half = 12.706204736174707 * x.std(ddof=1) / math.sqrt(2)  # t(0.975, 1 df)
        r = by_metric[m]
        assert (r["change_pct_per_yr_mean"], r["change_pct_per_yr_ci_low"], r["change_pct_per_yr_ci_high"]) == \
            pytest.approx((x.mean(), x.mean() - half, x.mean() + half))
        assert r["start_mean"] == pytest.approx(np.mean([t[0][m] for t in tables]))


def test_resume_of_a_finished_replicates_folder_keeps_it(replicated, capsys):
    stamps = {p: p.stat().st_mtime_ns for p in replicated.study.path.glob("runs/*/metrics.csv")}
    assert main(["run", "--resume", str(replicated.study.path), "--quiet", "--no-render"]) == 0
    out = capsys.readouterr().out
    assert "replicates" in out and re.search(r"BV/TV .*\[.*\]", out)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_render_of_a_folder_that_is_not_one_run_names_the_runs_inside(replicated, tmp_path, capsys):
    """A replicates (or compare, sweep) folder holds run folders; render used to try it as a run
    and print three 'not drawn' lines with status 1."""
    path = replicated.study.path
    assert main(["render", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"voxelbone render: error: {path} is not a run folder (no run.json); it holds 2 run folders" in err, err
    assert f"'voxelbone render {path / 'runs' / 'rep_00'}'" in err and "not drawn" not in err
    assert main(["render", str(tmp_path)]) == 2
    assert "give a folder that 'voxelbone run --out' wrote" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ the report
def test_report_shows_intervals_and_paired_differences(tmp_path):
    from voxelbone.report import paired_differences, write_report

    seeds = [21, 22, 23]
    ref = [[0.20, 0.19], [0.10, 0.096], [0.15, 0.14]]
    trt = [[0.20, 0.195], [0.10, 0.0985], [0.15, 0.1452]]  # a little less loss on every seed
    a = _fake_replicates(tmp_path / "runs" / "ref", seeds, ref)
    b = _fake_replicates(tmp_path / "runs" / "trt", seeds, trt)
    for st in (a, b):
        write_summary(st)
    page = write_report({"ref": a.path, "trt": b.path}, tmp_path, render=False).read_text()
    change = lambda s: (s[-1] - s[0]) / s[0] / 0.1 * 100  # noqa: E731
    ca, cb = [change(s) for s in ref], [change(s) for s in trt]
    for values in (ca, cb):
        mean, low, high = _hand_interval(values)
        text = html.escape(Interval(mean, low, high, 3).format())
        assert text in page
    dm, dl, dh = _hand_interval(np.subtract(cb, ca))
    assert dl > 0  # paired: resolved ...
    assert t_interval(cb).low < t_interval(ca).high  # ... although the two intervals overlap
    assert html.escape(f"{dm:+.2f} [{dl:+.2f}, {dh:+.2f}] resolved") in page
    assert "unresolved" in page  # Tb.Th's change has spread but no direction here, or an interval holds zero
    assert paired_differences({"ref": a, "trt": b})["trt"]["bv_tv"].low == pytest.approx(dl)
    # replicates that do not share seeds cannot be paired
    c = _fake_replicates(tmp_path / "runs" / "other", [31, 32, 33], trt)
    write_summary(c)
    with pytest.raises(ValueError, match="same seeds"):
        write_report({"ref": a.path, "other": c.path}, tmp_path, render=False)


def test_plots_draw_the_mean_and_the_95_band(tmp_path, monkeypatch):
    from voxelbone import plots

    series = [[0.20, 0.19, 0.18], [0.10, 0.098, 0.095], [0.15, 0.15, 0.140]]
    study = _fake_replicates(tmp_path / "reps", [1, 2, 3], series)
    band = plots.metric_band([f.read_metrics() for f in study.replicates()], "bv_tv", scale=100.0)
    for j in range(3):
        mean, low, high = _hand_interval([100 * s[j] for s in series])
        assert (band.mean[j], band.low[j], band.high[j]) == pytest.approx((mean, low, high))
    assert list(band.years) == pytest.approx([0.0, 0.1, 0.2])
    captured = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: captured.append(fig) or path)
    plots.plot_metrics({"reps": study.path}, tmp_path / "m.png", metrics=[("bv_tv", "BV/TV (%)", 100.0)])
    ax = captured[0].axes[0]
    assert list(ax.lines[0].get_ydata()) == pytest.approx(list(band.mean))
    verts = ax.collections[0].get_paths()[0].vertices
    assert verts[:, 1].min() == pytest.approx(band.low.min()) and verts[:, 1].max() == pytest.approx(band.high.max())
    with pytest.raises(ValueError, match="same days"):
        plots.metric_band([[{"day": 0.0, "year": 0.0, "bv_tv": 1.0}], [{"day": 5.0, "year": 0.0, "bv_tv": 1.0}]],
                          "bv_tv")


# ------------------------------------------------------------------------------------ RVE warning
def test_run_warns_below_the_representative_volume(tmp_path, capsys, monkeypatch):
    from voxelbone import rve

    small = Scenario(size=64, voxel_size_um=30.0)  # 1.92 mm
    monkeypatch.setitem(rve.RVE_EDGE_MM, "conn_d_per_mm3", rve.RveEntry(4.0, True))
    monkeypatch.setitem(rve.RVE_EDGE_MM, "bv_tv", rve.RveEntry(1.5, True))
    warned = rve.rve_warnings(small)
    assert any("Conn.D" in w and "1.92 mm" in w for w in warned)
    assert not any("BV/TV" in w for w in warned)
    assert rve.rve_warnings(Scenario(size=160, voxel_size_um=30.0), ["conn_d_per_mm3"]) == []
    assert rve.rve_warnings(Scenario(input="scan.npy")) == []
    # the command says it before the run is announced (a 1.44 mm cube, a few days)
    code = main(["run", "--size", "48", "--voxel-size-um", "30", "--years", "0.01", "--step-days", "1",
                 "--out", str(tmp_path / "r"), "--no-render", "--backend", "numpy"])
    err = capsys.readouterr().err
    assert code == 0 and "warning" in err and "Conn.D" in err
    assert err.index("representative volume of Conn.D") < err.index("voxelbone 0."), err


def test_the_rve_table_covers_the_reported_metrics():
    from voxelbone.cli import SUMMARY_METRICS
    from voxelbone.rve import NOT_STUDIED, RVE_EDGE_MM, RVE_STUDY

    # every reported metric has a measured representative edge, or is listed as not yet studied
    assert {k for k, *_ in SUMMARY_METRICS} <= set(RVE_EDGE_MM) | set(NOT_STUDIED)
    assert not set(NOT_STUDIED) & set(RVE_EDGE_MM)
    assert all(e.edge_mm > 0 for e in RVE_EDGE_MM.values()) and "replicates" in RVE_STUDY


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("count", ["0", "-2", "1.5", "three"])
def test_bad_replicate_counts_are_usage_errors(count, tmp_path, capsys):
    for cmd in (["run", "--out", str(tmp_path / "x")], ["compare", "trt", "--out", str(tmp_path / "x")],
                ["sweep", "samples/sweep_small.toml", "--out", str(tmp_path / "x")]):
        with pytest.raises(SystemExit) as exc:
            main([*cmd, "--replicates", count])
        assert exc.value.code == 2
        assert "--replicates" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="replicates"):
            check_replicate_count(bad)


def test_replicates_with_resume_of_a_single_run_is_refused(tmp_path, capsys):
    single = RunFolder(tmp_path / "single")
    single.create()
    single.write_status(RunState.INTERRUPTED, scenario=SCENARIO, backend=get_backend("numpy"), timings={})
    before = single.run_json.read_bytes()
    assert main(["run", "--resume", str(single.path), "--replicates", "2"]) == 2
    assert "holds no replicates" in capsys.readouterr().err
    assert single.run_json.read_bytes() == before and not StudyFolder(single.path).replicates_json.exists()
    # nor may replicates be started into it
    assert main(["run", "--replicates", "2", "--size", "48", "--out", str(single.path), "--quiet"]) == 2
    assert "single run" in capsys.readouterr().err
    assert single.run_json.read_bytes() == before and not StudyFolder(single.path).replicates_json.exists()
    # an empty folder holds no replicates either; --workers belongs to replicates
    assert main(["run", "--resume", str(tmp_path / "nothing"), "--replicates", "2"]) == 2
    assert main(["run", "--resume", str(single.path), "--workers", "2"]) == 2
    assert "--workers" in capsys.readouterr().err and single.run_json.read_bytes() == before


def test_a_replicates_folder_is_not_overwritten_by_a_single_run_or_other_replicates(tmp_path, capsys):
    study = _fake_replicates(tmp_path / "reps", [1, 2], [[1.0, 0.9], [1.0, 0.8]])
    study.write_replicates_info({"scenario": SCENARIO.to_dict(), "n_replicates": 2})
    before = {p: p.read_bytes() for p in study.path.rglob("*") if p.is_file()}
    assert main(["run", "--size", "48", "--out", str(study.path), "--quiet"]) == 2
    assert "holds replicates" in capsys.readouterr().err
    assert main(["run", "--replicates", "3", "--size", "48", "--out", str(study.path), "--quiet"]) == 2
    assert "another scenario or number" in capsys.readouterr().err
    assert main(["run", "--resume", str(study.path), "--replicates", "3"]) == 2
    assert "holds 2 replicates" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in study.path.rglob("*") if p.is_file()} == before


def test_the_run_command_hands_its_run_options_to_the_replicates(tmp_path, monkeypatch):
    """``voxelbone run --replicates``: workers, backend, rendering and progress reach the cluster as RunOptions."""
    from voxelbone import replicates

    seen = []

    def fake_run_jobs(jobs, *, options):
        seen.append(options)
        return {j.name: {"name": j.name, "status": "failed", "error": "stopped here", "pid": None} for j in jobs}

    monkeypatch.setattr(replicates, "run_jobs", fake_run_jobs)
    out = tmp_path / "reps"
    assert main(["run", "--replicates", "2", "--workers", "3", "--backend", "numpy", "--no-render", "--size", "48",
                 "--years", "0.01", "--out", str(out)]) == 1  # the stand-in cluster fails every replicate
    assert main(["run", "--resume", str(out), "--workers", "1", "--quiet"]) == 1
    first, resumed = seen
    assert (first.n_workers, first.backend, first.render, first.scheduler) == (3, "numpy", False, None)
    assert first.progress is not None
    assert (resumed.n_workers, resumed.backend, resumed.render, resumed.progress) == (1, None, True, None)


def test_resume_continues_each_unfinished_replicate(tmp_path, monkeypatch):
    from voxelbone import replicates

    study = _fake_replicates(tmp_path / "reps", [1, 2], [[1.0, 0.9], [1.0, 0.8]])
    study.write_replicates_info({"scenario": SCENARIO.to_dict(), "n_replicates": 2})
    study.replicate(1).update_info(status="interrupted")
    study.replicate(1).checkpoint.write_bytes(b"x")
    seen = {}

    def fake_run_jobs(jobs, **kwargs):
        seen["jobs"] = [(j.name, RunFolder(j.run_dir).state()) for j in jobs]
        return {j.name: {"name": j.name, "status": "failed", "error": "stopped here", "pid": None} for j in jobs}

    monkeypatch.setattr(replicates, "run_jobs", fake_run_jobs)
    res = replicates.resume_replicates(study.path)
    assert seen["jobs"] == [("rep_00", RunState.COMPLETED), ("rep_01", RunState.INTERRUPTED)]
    assert [s.seed for s in replicate_scenarios(SCENARIO, 2)] == res.seeds
    # without --resume an interrupted replicate is refused
    with pytest.raises(ValueError, match="interrupted replicates"):
        replicates.simulate_replicates(SCENARIO, study.path, 2)


def test_the_rve_table_is_the_recorded_study():
    import json
    from pathlib import Path

    from voxelbone.rve import RVE_EDGE_MM, RVE_RECORD, STUDY_NAMES

    record = json.loads((Path(__file__).parents[1] / RVE_RECORD).read_text())
    for metric, entry in RVE_EDGE_MM.items():
        found = record["rve"][STUDY_NAMES.get(metric, metric)]
        assert (entry.edge_mm, entry.resolved_in_study) == (pytest.approx(found["edge_mm"]), found["resolved_in_study"])


@pytest.mark.slow
def test_compare_with_replicates_pairs_presets_on_the_same_seeds(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "postmenopausal_untreated", "mht_estradiol_progesterone", "--replicates", "2", "--workers", "2",
            "--size", "48", "--years", "0.1", "--step-days", "5", "--metrics-every-days", "10", "--no-render", "--quiet",
            "--backend", "numpy", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    page = (out / "report.html").read_text()
    sets = {p: StudyFolder(out / "runs" / p) for p in ("postmenopausal_untreated", "mht_estradiol_progesterone")}
    seeds = [[f.info()["seed"] for f in st.replicates()] for st in sets.values()]
    assert seeds[0] == seeds[1] and len(set(seeds[0])) == 2  # common random numbers
    assert 'id="intervals"' in page and 'id="differences"' in page
    bv = {p: {r["metric"]: r for r in st.read_summary()}["bv_tv"] for p, st in sets.items()}
    for r in bv.values():
        iv = Interval(r["change_pct_per_yr_mean"], r["change_pct_per_yr_ci_low"], r["change_pct_per_yr_ci_high"], 2)
        assert html.escape(iv.format()) in page


@pytest.mark.slow
def test_sweep_with_replicates_summarises_each_point(tmp_path):
    from voxelbone.sweep import Sweep, run_sweep

    base = {"site": "lumbar_spine", "years": 0.05, "size": 48, "step_days": 5, "metrics_every_days": 9,
            "spin_up_days": 10}
    rep = run_sweep(Sweep(base, {"preset": ["postmenopausal_untreated", "trt"]}, "test"), tmp_path / "sw",
                    options=RunOptions(n_workers=2, backend="numpy"), replicates=2)
    assert set(rep.statuses.values()) == {"completed"}, rep.errors
    for rid in rep.statuses:
        point = StudyFolder(tmp_path / "sw" / "runs" / rid)
        assert len(point.replicates()) == 2 and point.read_summary()[0]["n_replicates"] == 2
    with open(rep.table_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["run_id"], r["replicate"]) for r in rows} == {(rid, str(i)) for rid in rep.statuses for i in (0, 1)}
