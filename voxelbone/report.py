"""Preset comparison: run (or reuse) presets on one starting volume, write one HTML report.

``compare(["postmenopausal_untreated", "mht_estradiol_progesterone"], out)`` runs each
preset with the same site, size, voxel size and seed (so every run starts from the same
phantom) into ``out/runs/<preset>/``, then writes ``out/report.html``: a table of the
metrics at each year with the difference from the first preset, the metric plots on
shared axes, and the renders side by side at the same time points. Images are embedded
(base64), so the file opens in a browser with no server and no network.

With ``replicates=N`` every preset runs as N replicates on the same N seeds
(:mod:`voxelbone.replicates`: replicate ``i`` of every preset has the same starting
structure and random keys), all in parallel on the local Dask cluster, into
``out/runs/<preset>/runs/rep_NN/``. The report then gives each preset's mean annual change
with its 95 % interval, and the *paired* interval of each preset's difference from the
first (the per-replicate differences, then a Student-t interval), saying which changes and
differences are resolved (their interval excludes zero); the plots show bands.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .intervals import Interval, annual_change_pct, paired_interval, t_interval
from .plots import has_stiffness, plot_bmd_stiffness, plot_metrics
from .presets import check_load_needs_mechanics, load_preset
from .render import render_grid
from .replicates import check_replicate_count, prepare_folder, replicate_jobs, write_summary
from .results import load_snapshot
from .runfolder import RunFolder, RunState, StudyFolder
from .scenario import Period, Scenario
from .simulate import simulate
from .sites import get_site
from .sweep import Job, RunOptions, run_jobs
from .units import DAYS_PER_YEAR

__all__ = ["STIFFNESS_CHANGE", "TABLE_METRICS", "CompareRun", "annual_changes", "compare", "with_stiffness_change",
           "write_report"]

#: Column added to each run's rows in the report: the apparent modulus's change from the run's first row (%)
STIFFNESS_CHANGE = "e_app_z_change_pct"

#: (column, name, scale, unit) of the report's tables; rows whose column no run has are left out.
#: In the tables of replicates (annual changes, %/yr) ``abmd_pct`` is its end value per year and
#: ``e_app_z_mpa`` is the stiffness change.
TABLE_METRICS: tuple[tuple[str, str, float, str], ...] = (
    ("bv_tv", "BV/TV", 100.0, "%"),
    ("tb_th_um", "Tb.Th", 1.0, "µm"),
    ("tb_sp_um", "Tb.Sp", 1.0, "µm"),
    ("tb_n_per_mm", "Tb.N", 1.0, "1/mm"),
    ("conn_d_per_mm3", "Conn.D", 1.0, "1/mm³"),
    ("ct_th_um", "Ct.Th", 1.0, "µm"),
    ("ct_po", "Ct.Po", 100.0, "%"),
    ("bmd_mg_cm3", "BMD", 1.0, "mg HA/cm³"),
    ("abmd_pct", "aBMD change", 1.0, "% from day 0"),
    ("e_app_z_mpa", "E_app,z", 1.0, "MPa"),
    (STIFFNESS_CHANGE, "E_app,z change", 1.0, "% from day 0"),
)


@dataclass(frozen=True)
class CompareRun:
    """One preset's run in a comparison."""

    label: str
    out_dir: Path
    reused: bool


def compare(presets: Sequence[str], out_dir: str | Path, *, years: float = 2.0, site: str = "lumbar_spine",
            size: int | None = None, voxel_size_um: float | None = None, seed: int = 0, step_days: int = 1,
            metrics_every_days: int = 30, backend: str | None = None, progress: bool = True,
            render: bool = True, replicates: int | None = None, n_workers: int | None = None,
            fe_every_days: int = 0, input: str | None = None, compartments: str | None = None) -> Path:
    """Run (or reuse) presets on the same starting volume and write ``out_dir/report.html``.

    Parameters
    ----------
    presets
        Preset names or preset files (the first is the reference for the differences); a
        file is labelled by its name without ``.toml``.
    out_dir
        Folder of the report; runs go to ``out_dir/runs/<preset>/``.
    years, site, size, voxel_size_um, seed, step_days, metrics_every_days
        Scenario fields shared by every run.
    render
        Include 3-D renders (side by side at the start and the end).
    replicates
        Run each preset as this many replicates on the same seeds (derived from ``seed``),
        in parallel on a local Dask cluster of ``n_workers`` processes (default one per
        core), and report intervals and paired differences.
    fe_every_days
        Load-driven remodelling in every run (:class:`~voxelbone.scenario.Scenario`; 0:
        off); with it on the report shows the stiffness change beside the aBMD change.
    input, compartments
        Start every run from this micro-CT scan instead of a phantom, with these
        compartments (:func:`voxelbone.io.load_volume`; ``size`` does not apply).

    Returns
    -------
    Path
        The report written.

    Raises
    ------
    ValueError
        Unknown or repeated presets, a preset that changes the load with ``fe_every_days`` 0,
        or a preset's folder under ``out_dir`` holding a run of another scenario (another
        size or length, say): raised before any run starts.
    """
    if not presets:
        raise ValueError("compare needs at least one preset")
    if len(set(presets)) != len(presets):
        raise ValueError(f"presets repeated: {list(presets)}")
    # unknown names fail here, before any run, with close matches; a preset file is labelled (and its
    # run folder named) by its stem, never by its path
    names = [load_preset(name).name for name in presets]
    if len(set(names)) != len(names):
        shared = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"presets {list(presets)} share the name {', '.join(shared)}: each preset's runs and "
                         "report column are named by it; rename a preset file")
    labels = dict(zip(names, presets))
    study = StudyFolder(out_dir)
    runs: list[CompareRun] = []
    snapshot_every = max(int(round(years * DAYS_PER_YEAR / 4)), 1)
    scenarios = {label: Scenario(name=label, site=site, periods=(Period(name, years),), size=size,
                                 voxel_size_um=voxel_size_um, seed=seed, step_days=step_days,
                                 metrics_every_days=metrics_every_days, snapshot_every_days=snapshot_every,
                                 fe_every_days=fe_every_days, input=input,
                                 **({"compartments": compartments} if compartments is not None else {}))
                 for label, name in labels.items()}
    for scenario in scenarios.values():  # a disuse preset with mechanics off fails before any run
        check_load_needs_mechanics(scenario)
    if replicates is not None:
        return _compare_replicates(study, scenarios, check_replicate_count(replicates), n_workers=n_workers,
                                   backend=backend, render=render)
    for name, scenario in scenarios.items():  # every folder checked before the first run
        if study.study(name).holds_replicates():
            raise ValueError(f"{study.run(name).path} holds replicates; add --replicates, or choose another --out")
        study.run(name).refuse_other_scenario(scenario)
    for name, scenario in scenarios.items():
        folder = study.run(name)
        reused = folder.holds(scenario)
        if not reused:
            simulate(scenario, folder.path, backend=backend, progress=progress, render=False)
        runs.append(CompareRun(name, folder.path, reused))
    return write_report({r.label: r.out_dir for r in runs}, study.path, render=render,
                        reused=[r.label for r in runs if r.reused])


def _compare_replicates(study: StudyFolder, scenarios: Mapping[str, Scenario], n: int, *, n_workers: int | None,
                        backend: str | None, render: bool) -> Path:
    """Every preset as ``n`` replicates on the same seeds, all on one cluster; then the report."""
    jobs: list[Job] = []
    reused = []
    for name, scenario in scenarios.items():
        if study.run(name).state() is not RunState.EMPTY:
            raise ValueError(f"{study.run(name).path} holds a run without replicates; choose another --out for "
                             "--replicates")
        point = study.study(name)
        prepare_folder(point, scenario, n, resume=True)
        mine = replicate_jobs(scenario, point, n, name_prefix=f"{name}/")
        if all(RunFolder(j.run_dir).state() is RunState.COMPLETED for j in mine):
            reused.append(name)
        jobs += mine
    done = run_jobs(jobs, options=RunOptions(n_workers=n_workers, backend=backend))
    failed = {k: v["error"] for k, v in done.items() if v["status"] != RunState.COMPLETED.value}
    if failed:
        raise ValueError("replicates failed (their folders keep error.txt): "
                         + "; ".join(f"{k}: {e}" for k, e in failed.items()))
    for name in scenarios:
        write_summary(study.study(name))
    return write_report({name: study.study(name).path for name in scenarios}, study.path, render=render,
                        reused=reused)


def _cell(iv: Interval, *, say_resolved: bool = False) -> str:
    """``mean [low, high]``, marked ``unresolved`` (or, with ``say_resolved``, ``resolved``)."""
    cls = "resolved" if iv.resolved else "unresolved"
    text = iv.format() + (" resolved" if iv.resolved and say_resolved else "")
    return f'<td class="{cls}">{html.escape(text)}</td>'


def with_stiffness_change(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows with :data:`STIFFNESS_CHANGE` (% change of ``e_app_z_mpa`` from the first row) when they have the modulus."""
    out = [dict(r) for r in rows]
    if not out or "e_app_z_mpa" not in out[0]:
        return out
    e0 = float(out[0]["e_app_z_mpa"])
    for r in out:
        r[STIFFNESS_CHANGE] = 100.0 * (float(r["e_app_z_mpa"]) / e0 - 1.0) if e0 > 0 else float("nan")
    return out


def annual_changes(study: StudyFolder) -> tuple[list[int], dict[str, list[float]]]:
    """Each replicate's seed and, per metric of :data:`TABLE_METRICS`, its annualised change in %/yr.

    Replicates in folder order. The relative change from the first to the last row (:func:`voxelbone.intervals.annual_change_pct`),
    except ``abmd_pct``, which is a change from day 0 already: its last value per year.
    """
    folders = study.replicates()
    tables = [f.read_metrics() for f in folders]
    seeds = [int(f.info()["seed"]) for f in folders]
    if not tables or not tables[0]:
        return seeds, {}
    metrics = [key for key, *_ in TABLE_METRICS if key in tables[0][0]]
    changes: dict[str, list[float]] = {}
    for m in metrics:
        changes[m] = [annual_change_pct(rows, m) for rows in tables]
    return seeds, changes


def _interval_table(sets: Mapping[str, StudyFolder]) -> str:
    """Each preset's mean annual change with its 95 % interval, per metric."""
    labels = list(sets)
    intervals = {lab: {m: t_interval(v) for m, v in annual_changes(s)[1].items()} for lab, s in sets.items()}
    head = "".join(f"<th>{html.escape(lab)}</th>" for lab in labels)
    out = [f'<table id="intervals"><thead><tr><th>metric</th>{head}</tr></thead><tbody>']
    for key, name, _scale, _unit in TABLE_METRICS:
        if not all(key in intervals[lab] for lab in labels):
            continue
        out.append(f"<tr><td>{name}</td>{''.join(_cell(intervals[lab][key]) for lab in labels)}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def paired_differences(sets: Mapping[str, StudyFolder]) -> dict[str, dict[str, Interval]]:
    """Preset → metric → paired interval of its annual change minus the first preset's (%/yr points).

    Raises
    ------
    ValueError
        When the presets' replicates were not run on the same seeds (no pairs).
    """
    labels = list(sets)
    ref_seeds, ref = annual_changes(sets[labels[0]])
    out: dict[str, dict[str, Interval]] = {}
    for lab in labels[1:]:
        seeds, changes = annual_changes(sets[lab])
        if seeds != ref_seeds:
            raise ValueError(f"{lab!r} and {labels[0]!r} were not run on the same seeds ({seeds} vs {ref_seeds}); "
                             "their differences cannot be paired")
        out[lab] = {m: paired_interval(ref[m], changes[m]) for m in ref if m in changes}
    return out


def _difference_table(sets: Mapping[str, StudyFolder]) -> str:
    labels = list(sets)
    diffs = paired_differences(sets)
    head = "".join(f"<th>{html.escape(lab)} − {html.escape(labels[0])}</th>" for lab in labels[1:])
    out = [f'<table id="differences"><thead><tr><th>metric</th>{head}</tr></thead><tbody>']
    for key, name, _scale, _unit in TABLE_METRICS:
        if not all(key in diffs[lab] for lab in labels[1:]):
            continue
        out.append(f"<tr><td>{name}</td>{''.join(_cell(diffs[lab][key], say_resolved=True) for lab in labels[1:])}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _at_years(rows: Sequence[Mapping[str, Any]]) -> dict[float, Mapping[str, Any]]:
    """Rows nearest each whole year (and the last)."""
    if not rows:
        return {}
    last = float(rows[-1]["year"])
    marks = [float(y) for y in range(int(last) + 1)]
    if last - marks[-1] > 1e-6:
        marks.append(last)
    return {y: min(rows, key=lambda r: abs(float(r["year"]) - y)) for y in marks}


def _table(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    labels = list(runs)
    ref = _at_years(runs[labels[0]])
    head = "".join(f"<th>{html.escape(lab)}</th>" + ("" if i == 0 else f"<th>Δ vs {html.escape(labels[0])}</th>")
                   for i, lab in enumerate(labels))
    out = [f'<table id="metrics"><thead><tr><th>year</th><th>metric</th>{head}</tr></thead><tbody>']
    for y, ref_row in ref.items():
        for key, name, scale, unit in TABLE_METRICS:
            if not any(rows and key in rows[0] for rows in runs.values()):
                continue
            cells = []
            r0 = float(ref_row[key]) * scale if key in ref_row else float("nan")
            for i, lab in enumerate(labels):
                row = _at_years(runs[lab]).get(y)
                v = float(row[key]) * scale if row and key in row else float("nan")
                cells.append(f"<td>{v:.4g}</td>")
                if i:
                    cells.append(f"<td>{v - r0:+.3g}</td>")
            out.append(f"<tr><td>{y:.2f}</td><td>{name} ({unit})</td>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def write_report(run_dirs: Mapping[str, str | Path], out_dir: str | Path, *, render: bool = True,
                 reused: Sequence[str] = (), title: str = "voxelbone preset comparison") -> Path:
    """Write ``out_dir/report.html`` from finished results folders.

    Parameters
    ----------
    run_dirs
        Label → results folder (``metrics.csv``, ``run.json``, snapshots); the first is
        the reference for differences.
    render
        Add renders of the first and last snapshot of every run side by side.
    """
    study = StudyFolder(out_dir)
    img_dir = study.images_dir
    img_dir.mkdir(parents=True, exist_ok=True)
    sets = {lab: StudyFolder(d) for lab, d in run_dirs.items()}
    replicated = [lab for lab, st in sets.items() if st.holds_replicates()]
    if replicated and len(replicated) != len(sets):
        raise ValueError(f"either every run is a set of replicates or none is; replicates: {replicated}")
    if replicated:
        folders = {lab: st.replicate(0) for lab, st in sets.items()}
        plotted: dict[str, Any] = {lab: [f.read_metrics() for f in st.replicates()] for lab, st in sets.items()}
    else:
        folders = {lab: RunFolder(d) for lab, d in run_dirs.items()}
        plotted = {lab: f.read_metrics() for lab, f in folders.items()}
    runs = {lab: with_stiffness_change(f.read_metrics()) for lab, f in folders.items()}
    for lab, rows in runs.items():
        if not rows:
            raise ValueError(f"run {lab!r} in {run_dirs[lab]} has no metrics")
    figures = [plot_metrics(plotted, img_dir / "metrics.png"),
               plot_metrics(plotted, img_dir / "metrics_change.png", relative=True)]
    stiffness = plot_bmd_stiffness(plotted, img_dir / "bmd_stiffness.png") if has_stiffness(plotted) else None
    renders: list[Path] = []
    if render:
        snaps = {lab: f.snapshots() for lab, f in folders.items()}
        if all(snaps.values()):
            first_label = next(iter(snaps))
            d0, p0 = snaps[first_label][0]
            renders.append(render_grid({f"start (year {d0 / DAYS_PER_YEAR:.1f})": load_snapshot(p0)},
                                       img_dir / "render_start.png"))
            last = {f"{lab} (year {s[-1][0] / DAYS_PER_YEAR:.1f})": load_snapshot(s[-1][1]) for lab, s in snaps.items()}
            renders.append(render_grid(last, img_dir / "render_end.png", columns=min(len(last), 3)))
    meta = {lab: f.info() for lab, f in folders.items()}
    first_meta = next(iter(meta.values()))
    scen = first_meta.get("scenario", {})
    seeds = (f"{len(sets[replicated[0]].replicates())} replicates on the same seeds "
             f"{[int(f.info()['seed']) for f in sets[replicated[0]].replicates()]}" if replicated
             else f"seed {scen.get('seed', '?')}")
    scan = first_meta.get("input_scan") or {}
    if scen.get("input"):
        start = f"starting from the scan {Path(str(scen['input'])).name}" + (
            f" ({scan['voxel_size_um']:g} µm voxels)" if scan.get("voxel_size_um") else "")
    else:
        spec = get_site(str(scen.get("site", "lumbar_spine")))
        start = (f"starting from the site's phantom, {scen.get('size') or spec.default_size}³ at "
                 f"{scen.get('voxel_size_um') or spec.default_voxel_size_um:g} µm")
    info = (f"site {html.escape(str(scen.get('site', '?')))}, {html.escape(start)}, {html.escape(seeds)}, "
            f"backend {html.escape(str(first_meta.get('backend', '?')))} ({html.escape(str(first_meta.get('device', '?')))}), "
            f"voxelbone {html.escape(str(first_meta.get('voxelbone_version', '?')))}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "th{background:#eee}img{max-width:100%;border:1px solid #ddd;margin:6px 0}</style>",
        "</head><body>",
        # records, once the page has loaded, how many images decoded (checked by the tests
        # in a headless browser; harmless for readers)
        "<script>window.addEventListener('load',function(){var n=0;for(var i=0;i<document.images.length;i++)"
        "{var im=document.images[i];if(im.complete&&im.naturalWidth>0)n++;}"
        "document.body.setAttribute('data-images-loaded',n);"
        "document.body.setAttribute('data-images-total',document.images.length);});</script>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{', '.join(html.escape(k) for k in run_dirs)} — {info}. "
        + (f"Reused finished runs: {html.escape(', '.join(reused))}." if reused else "") + "</p>",
    ]
    if replicated:
        parts += [
            "<h2>Annual change, mean [95 % interval] (%/yr)</h2>",
            "<p>Each replicate's change from its first to its last evaluation, annualised; the interval is the "
            "Student-t 95 % interval of the mean over replicates. <b>unresolved</b>: the interval includes zero "
            "(the spread between replicates is larger than the change); do not read it as an effect.</p>",
            _interval_table(sets),
            f"<h2>Differences from {html.escape(next(iter(sets)))}, paired by seed (%/yr points)</h2>",
            "<p>Replicate <i>i</i> of every preset starts from the same structure with the same random keys; each "
            "difference is the mean of the per-replicate differences with its paired 95 % interval. "
            "<b>resolved</b>: the interval excludes zero.</p>",
            _difference_table(sets) if len(sets) > 1 else "<p>(one preset: no differences)</p>",
            "<h2>Metrics over time (mean and 95 % band over replicates)</h2>",
        ]
    else:
        parts += ["<h2>Metrics at each year</h2>",
                  '<p id="single-sample"><b>One sample per preset, no interval.</b> Each column is one run on one '
                  "seed: how far another seed would move it is not known here, and it can exceed a difference "
                  "between presets, so no difference below is known to be resolved. Run the comparison with "
                  "<code>--replicates N</code> for each change with its 95 % interval and the paired differences "
                  "between presets.</p>",
                  _table(runs), "<h2>Metrics over time</h2>"]
    parts += [
        *(_img(f) for f in figures),
    ]
    if stiffness is not None:
        parts += ['<h2 id="stiffness">aBMD and stiffness change</h2>',
                  "<p>The site's DXA-equivalent areal BMD change beside the change of the apparent modulus "
                  "E_app,z (micro-FE, 1 % compression along z) from day 0, for the runs with mechanics on.</p>",
                  _img(stiffness)]
    if renders:
        parts += ["<h2>Renders (bone coloured by local thickness, same camera)</h2>", *(_img(f) for f in renders)]
    parts += ["<h2>Runs</h2><pre>", html.escape(json.dumps({k: str(v) for k, v in run_dirs.items()}, indent=2)),
              "</pre></body></html>"]
    path = study.report_html
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
