"""Representative volume: the sample edge a metric's 1-year change needs to be a property of the bone.

In a small cube a handful of trabeculae, handles or pores decide a metric's change, and
the change varies from one seed to the next more than the effect itself. The study in
:func:`rve_study` (``python benchmarks/rve_study.py``) runs replicates of one scenario at
several cube edges and measures, per metric, the 95 % interval of the mean 1-year change
(:mod:`voxelbone.intervals`) at each edge. :data:`RVE_EDGE_MM` holds what it found: for
each reported metric the smallest studied edge from which on the change was resolved
(its interval excluded zero at that edge and at every larger one), or — for a metric not
resolved at the largest edge — the largest edge studied (``resolved_in_study`` false: its
RVE is larger than that, or the metric did not change at all in the study).
``voxelbone run`` warns (:func:`rve_warnings`) when the sample edge is below the RVE of a
metric it reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .scenario import Period, Scenario
from .sites import get_site

__all__ = ["NOT_STUDIED", "RVE_EDGE_MM", "RVE_RECORD", "RVE_STUDY", "STUDY_NAMES", "RveEntry",
           "markdown_table", "rve_study", "rve_warnings", "sample_edge_mm"]


@dataclass(frozen=True)
class RveEntry:
    """The representative edge of one metric.

    Attributes
    ----------
    edge_mm : float
        Smallest studied cube edge from which on the 1-year change was resolved, or the
        largest studied edge when it was not resolved there.
    resolved_in_study : bool
        False when even ``edge_mm`` did not resolve the change (the RVE is larger).
    """

    edge_mm: float
    resolved_in_study: bool


#: The study that produced :data:`RVE_EDGE_MM` (reproduce with the command).
RVE_STUDY = ("postmenopausal_untreated, lumbar_spine, 30 µm voxels, 1 year, step 10 days, metrics every 90 days, "
             "3 replicates (seed 0) per edge at 48³, 80³, 128³, 160³ and 192³ voxels (1.44, 2.40, 3.84, 4.80, "
             "5.76 mm); python benchmarks/rve_study.py (2026-12-02, model revision 2026-12-02; record in benchmarks/rve_2026-12-02.json)")

#: The study's record (relative to the repository root).
RVE_RECORD = "benchmarks/rve_2026-12-02.json"

#: metric column → representative edge, from :data:`RVE_STUDY` (docs/user-guide/outputs.md)
RVE_EDGE_MM: dict[str, RveEntry] = {
    "bv_tv": RveEntry(1.44, True),
    "tb_th_um": RveEntry(4.80, True),
    "tb_sp_um": RveEntry(5.76, True),
    "tb_n_per_mm": RveEntry(5.76, False),
    "conn_d_per_mm3": RveEntry(5.76, True),
    "ct_th_um": RveEntry(5.76, True),
    "ct_po": RveEntry(5.76, False),
    "bmd_mg_cm3": RveEntry(2.40, True),
    "tb_vbmd_mg_cm3": RveEntry(1.44, True),
    "ct_vbmd_mg_cm3": RveEntry(5.76, False),
    "abmd_pct": RveEntry(2.40, True),
}

#: Metrics renamed since the study (same definition): column now → name in the study's record.
STUDY_NAMES: dict[str, str] = {}

#: Reported metrics added after the study, whose representative edge is not measured yet
#: (run the study again to fill them); no warning is given for them until then.
NOT_STUDIED: tuple[str, ...] = ()

#: ASBMR labels of the metrics in :data:`RVE_EDGE_MM`
_LABELS = {"bv_tv": "BV/TV", "tb_th_um": "Tb.Th", "tb_sp_um": "Tb.Sp", "tb_n_per_mm": "Tb.N",
           "conn_d_per_mm3": "Conn.D", "ct_th_um": "Ct.Th", "ct_po": "Ct.Po", "bmd_mg_cm3": "BMD",
           "tb_vbmd_mg_cm3": "Tb.vBMD", "ct_vbmd_mg_cm3": "Ct.vBMD", "abmd_pct": "aBMD (abmd_pct)"}

def sample_edge_mm(scenario: Scenario) -> float | None:
    """The phantom's cube edge in mm (the site's defaults where the scenario leaves them); None for an input file."""
    if scenario.input:
        return None
    site = get_site(scenario.site)
    size = scenario.size or site.default_size
    voxel = scenario.voxel_size_um or site.default_voxel_size_um
    return size * voxel / 1000.0


def rve_warnings(scenario: Scenario, metrics: Sequence[str] | None = None) -> list[str]:
    """One sentence per reported metric whose representative edge exceeds the scenario's sample.

    Parameters
    ----------
    scenario
        The run's scenario (phantom edge = size × voxel size; no warning for input files).
    metrics
        Metric columns to check (default: every metric of :data:`RVE_EDGE_MM`).
    """
    edge = sample_edge_mm(scenario)
    if edge is None:
        return []
    out = []
    for m in metrics if metrics is not None else list(RVE_EDGE_MM):
        entry = RVE_EDGE_MM.get(m)
        if entry is None:
            continue
        label = _LABELS.get(m, m)
        if entry.resolved_in_study and edge < entry.edge_mm - 1e-9:
            out.append(f"the sample edge {edge:.2f} mm is below the representative volume of {label} "
                       f"({entry.edge_mm:.2f} mm): its change is a property of this sample, not of the bone; "
                       "use a larger --size or --replicates")
        elif not entry.resolved_in_study and edge <= entry.edge_mm + 1e-9:
            out.append(f"the 1-year change of {label} was not resolved in cubes up to {entry.edge_mm:.2f} mm "
                       f"(this sample: {edge:.2f} mm): treat it as a property of this sample; use --replicates")
    return out


def rve_study(out_dir: str | Path, sizes: Sequence[int], n_replicates: int, *, preset: str = "postmenopausal_untreated",
              site: str = "lumbar_spine", voxel_size_um: float = 30.0, years: float = 1.0, step_days: int = 10,
              metrics_every_days: int = 90, seed: int = 0, n_workers: int | None = None,
              backend: str | None = None) -> dict[str, Any]:
    """Replicates of one scenario at several cube edges; the interval of each metric's change per edge.

    Parameters
    ----------
    out_dir
        Folder of the study; edge ``s`` goes to ``out_dir/runs/size=<s>/`` (a set of replicates).
    sizes
        Cube edges in voxels.
    n_replicates
        Replicates per edge (the same seeds at every edge).
    preset, site, voxel_size_um, years, step_days, metrics_every_days, seed
        The scenario.

    Returns
    -------
    dict
        Also written to ``out_dir/rve.json``: ``{"study": text, "edges_mm": [...], "metrics": {metric: [{edge_mm, mean, low, high,
        resolved}, ...]}, "rve": {metric: {edge_mm, resolved_in_study}}, "date", "git_commit", "wall_s"}``.
        ``abmd_pct`` (already a change from day 0) is summarised in points per year.
    """
    # deferred: the study runs simulations (Numba, Dask); the table and the warning do not need them
    import time  # noqa: PLC0415

    from .replicates import prepare_folder, replicate_jobs, summary_intervals, write_summary  # noqa: PLC0415
    from .results import write_json  # noqa: PLC0415
    from .runfolder import RunState, StudyFolder, git_commit  # noqa: PLC0415
    from .sweep import RunOptions, run_jobs  # noqa: PLC0415

    commit, t0 = git_commit(), time.perf_counter()
    study = StudyFolder(out_dir)
    study.path.mkdir(parents=True, exist_ok=True)
    jobs = []
    for size in sorted(sizes, reverse=True):  # every edge's replicates on one cluster, the largest first
        scenario = Scenario(name=f"rve {size}", site=site, periods=(Period(preset, years),), size=int(size),
                            voxel_size_um=voxel_size_um, seed=seed, step_days=step_days,
                            metrics_every_days=metrics_every_days)
        point = study.study(f"size={size}")
        prepare_folder(point, scenario, n_replicates, resume=True)
        jobs += replicate_jobs(scenario, point, n_replicates, name_prefix=f"size={size}/")
    done = run_jobs(jobs, options=RunOptions(n_workers=n_workers, backend=backend))
    failed = {k: v["error"] for k, v in done.items() if v["status"] != RunState.COMPLETED.value}
    if failed:
        raise RuntimeError(f"replicates failed: {failed}")
    per_metric: dict[str, list[dict[str, Any]]] = {}
    edges = []
    for size in sizes:
        edge = size * voxel_size_um / 1000.0
        edges.append(edge)
        point = study.study(f"size={size}")
        intervals = summary_intervals(write_summary(point))
        for m, iv in intervals.items():
            per_metric.setdefault(m, []).append({"edge_mm": edge, "mean": iv.mean, "low": iv.low, "high": iv.high,
                                                 "resolved": iv.resolved})
    rve = {}
    for m, entries in per_metric.items():
        hit = None
        for e in reversed(entries):  # from the largest edge down, while resolved
            if not e["resolved"]:
                break
            hit = e["edge_mm"]
        rve[m] = {"edge_mm": hit if hit is not None else max(edges), "resolved_in_study": hit is not None}
    text = (f"{preset}, {site}, {voxel_size_um:g} µm voxels, {years:g} year, step {step_days} days, metrics every "
            f"{metrics_every_days} days, {n_replicates} replicates (seed {seed}) per edge at "
            f"{', '.join(f'{s}³' for s in sizes)} voxels")
    result = {"study": text, "edges_mm": edges, "metrics": per_metric, "rve": rve, "date": time.strftime("%Y-%m-%d"),
              "git_commit": commit, "wall_s": time.perf_counter() - t0}
    write_json(study.rve_json, result)
    return result


def markdown_table(result: dict[str, Any], metrics: Sequence[str] | None = None) -> str:
    """The study as a Markdown table: per metric and edge, ``mean [low, high]`` %/yr (unresolved marked).

    Parameters
    ----------
    result
        What :func:`rve_study` returned.
    metrics
        Metric columns, in order (default: every metric of the study; the reported ones
        are the keys of :data:`RVE_EDGE_MM`).
    """
    edges = result["edges_mm"]
    head = "| metric | " + " | ".join(f"{e:.2f} mm" for e in edges) + " | RVE |"
    lines = [head, "|" + "---|" * (len(edges) + 2)]
    for m in metrics if metrics is not None else list(result["metrics"]):
        if m not in result["metrics"]:
            continue
        cells = []
        for e in result["metrics"][m]:
            cell = f"{e['mean']:+.2f} [{e['low']:+.2f}, {e['high']:+.2f}]"
            cells.append(cell if e["resolved"] else f"{cell} unresolved")
        r = result["rve"][m]
        rve = f"{r['edge_mm']:.2f} mm" if r["resolved_in_study"] else f"> {r['edge_mm']:.2f} mm"
        lines.append(f"| {_LABELS.get(m, m)} | " + " | ".join(cells) + f" | {rve} |")
    return "\n".join(lines)
