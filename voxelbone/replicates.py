"""Replicates: one scenario run N times on independent seeds, in parallel, summarised with intervals.

``simulate_replicates(scenario, out, n)`` runs replicate ``i = 0 … n−1`` of ``scenario``
with the seed :func:`replicate_seed` ``(scenario.seed, i)`` — its own starting structure
and its own remodelling draws — on the local Dask cluster of :mod:`voxelbone.sweep` (one
worker process per core, or per GPU), each into an ordinary run folder
``out/runs/rep_NN/``. It then writes ``out/summary.csv``: one row per metric with the
means at the first and last row, the mean annualised change and its 95 % interval
(:mod:`voxelbone.intervals`), the number of replicates and whether the change is
resolved (its interval excludes zero).

Seeds
-----
Replicate ``i``'s seed is the first 31 bits of NumPy's ``SeedSequence(seed,
spawn_key=(i,))`` — the ``i``-th child of ``SeedSequence(seed).spawn(n)``. It depends
on the scenario's seed and ``i`` only (not on ``n``), so growing a set of replicates keeps
the earlier ones, and replicate ``i`` of every preset of a comparison gets the same seed:
the same starting structure and the same random keys (common random numbers), so
differences between presets are paired by replicate.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import __version__
from .figures import draw_replicate_figures
from .hormones import HormoneState
from .intervals import Interval, annual_change_pct, t_interval
from .presets import check_load_needs_mechanics
from .runfolder import RunFolder, RunState, StudyFolder
from .scenario import Scenario
from .sweep import Job, RunOptions, run_jobs

__all__ = [
    "SUMMARY_COLUMNS",
    "ReplicatesResult",
    "check_replicate_count",
    "replicate_changes",
    "replicate_jobs",
    "replicate_scenarios",
    "replicate_seed",
    "resume_replicates",
    "simulate_replicates",
    "summarize",
    "summary_intervals",
    "write_summary",
]

#: Columns of ``summary.csv``, in order.
SUMMARY_COLUMNS = ("metric", "start_mean", "end_mean", "change_pct_per_yr_mean", "change_pct_per_yr_ci_low",
                   "change_pct_per_yr_ci_high", "n_replicates", "resolved")

#: metrics-table columns that are not metrics of the bone (time, labels, engine counters,
#: remodelling rates and hormone levels are reported elsewhere)
_NOT_METRICS = frozenset({"day", "year", "period", "preset", "voxel_size_um"}
                         | {f.name for f in dataclasses.fields(HormoneState)})
_NOT_METRIC_PREFIXES = ("engine_", "rate_")


@dataclass
class ReplicatesResult:
    """Outcome of :func:`simulate_replicates`.

    Attributes
    ----------
    study : StudyFolder
        The folder (``runs/rep_NN/``, ``replicates.json``, ``summary.csv``).
    seeds : list of int
        The seed of each replicate.
    statuses, errors, pids
        Per replicate run id: final state, error text of a failed run, and the worker
        process that ran it (``None`` for one that was already complete).
    summary : list of dict
        The rows of ``summary.csv`` (empty when a replicate failed).
    """

    study: StudyFolder
    seeds: list[int]
    statuses: dict[str, str]
    errors: dict[str, str]
    pids: dict[str, int | None]
    summary: list[dict[str, Any]]

    @property
    def completed(self) -> bool:
        """True when every replicate completed."""
        return all(s == RunState.COMPLETED.value for s in self.statuses.values())


def check_replicate_count(n: Any) -> int:
    """``n`` as a number of replicates, or a ``ValueError`` saying what is wrong.

    Examples
    --------
    >>> check_replicate_count(3)
    3
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"the number of replicates must be a whole number ≥ 1, got {n!r}")
    if n < 1:
        raise ValueError(f"the number of replicates must be ≥ 1, got {n}")
    return int(n)


def replicate_seed(seed: int, index: int) -> int:
    """The seed of replicate ``index`` of a scenario seeded ``seed`` (see the module docstring).

    Examples
    --------
    >>> replicate_seed(0, 1) == replicate_seed(0, 1) != replicate_seed(0, 2)
    True
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and replicate index are ≥ 0, got seed={seed}, index={index}")
    state = np.random.SeedSequence(int(seed), spawn_key=(int(index),)).generate_state(1, dtype=np.uint32)
    return int(state[0] & np.uint32(0x7FFFFFFF))


def replicate_scenarios(scenario: Scenario, n: int) -> list[Scenario]:
    """The ``n`` replicates of ``scenario``: the same scenario with seeds ``replicate_seed(seed, i)``."""
    n = check_replicate_count(n)
    return [dataclasses.replace(scenario, seed=replicate_seed(scenario.seed, i)) for i in range(n)]


def replicate_jobs(scenario: Scenario, study: StudyFolder, n: int, *, name_prefix: str = "") -> list[Job]:
    """Cluster jobs of ``n`` replicates of ``scenario`` into ``study``'s ``runs/rep_NN/``."""
    return [Job(f"{name_prefix}{study.replicate_id(i)}", s, study.replicate(i).path)
            for i, s in enumerate(replicate_scenarios(scenario, n))]


def prepare_folder(study: StudyFolder, scenario: Scenario, n: int, *, resume: bool = False) -> None:
    """Check that ``study`` may receive ``n`` replicates of ``scenario`` and record them in ``replicates.json``.

    A new folder, or one holding the same replicates (finished ones are kept), is fine.

    Raises
    ------
    ValueError
        The folder holds a single run, replicates of another scenario or number, or an
        interrupted replicate while ``resume`` is false. Nothing is written then.
    """
    n = check_replicate_count(n)
    single = RunFolder(study.path)
    if single.state() is not RunState.EMPTY:
        raise ValueError(f"{study.path} holds a single run, not replicates; choose another --out")
    if study.replicates_json.is_file():
        info = study.replicates_info()
        same = Scenario.from_dict(info["scenario"], source=str(study.replicates_json)) == scenario
        if not same or int(info["n_replicates"]) != n:
            raise ValueError(f"{study.path} holds {info['n_replicates']} replicates of another scenario or number; "
                             "continue them with --resume, or choose another --out")
    interrupted = [f.path.name for f in study.replicates() if f.state() is RunState.INTERRUPTED]
    if interrupted and not resume:
        raise ValueError(f"{study.path} holds interrupted replicates ({', '.join(interrupted)}); continue them with "
                         f"--resume {study.path} or choose another --out")
    study.write_replicates_info({
        "voxelbone_version": __version__,
        "scenario": scenario.to_dict(),
        "n_replicates": n,
        "seeds": [s.seed for s in replicate_scenarios(scenario, n)],
        "seed_rule": "numpy.random.SeedSequence(seed, spawn_key=(i,)).generate_state(1)[0] & 0x7FFFFFFF",
    })


def simulate_replicates(scenario: Scenario, out_dir: str | Path, n: int, *, options: RunOptions | None = None,
                        resume: bool = False) -> ReplicatesResult:
    """Run ``n`` replicates of ``scenario`` in parallel and write ``out_dir/summary.csv``.

    Parameters
    ----------
    scenario : Scenario
        What to simulate; its ``seed`` seeds the replicates' seeds.
    out_dir : path
        The folder of the replicates (``runs/rep_NN/``, ``replicates.json``, ``summary.csv``).
    n : int
        Number of replicates (≥ 1).
    options : RunOptions, optional
        How the replicates run (:class:`voxelbone.sweep.RunOptions`, as in
        :func:`voxelbone.sweep.run_jobs`: a local cluster with at most one worker per
        replicate and core by default). With ``options.render``, each replicate's plots and
        renders, and the set's plots with 95 % bands (``out_dir/plots/``).
    resume : bool
        Continue interrupted replicates (without it, a folder holding one is refused).

    Returns
    -------
    ReplicatesResult
        Statuses, seeds, the worker process of each replicate and the summary rows.

    Raises
    ------
    ValueError
        A bad count, a preset that changes the load with mechanics off
        (:func:`~voxelbone.presets.check_load_needs_mechanics`), or a folder that cannot take
        these replicates (see :func:`prepare_folder`): raised before anything is written.
    """
    n = check_replicate_count(n)
    check_load_needs_mechanics(scenario)
    study = StudyFolder(out_dir)
    prepare_folder(study, scenario, n, resume=resume)
    jobs = replicate_jobs(scenario, study, n)
    opts = options or RunOptions()
    done = run_jobs(jobs, options=opts)
    result = ReplicatesResult(study, [j.scenario.seed for j in jobs], {k: v["status"] for k, v in done.items()},
                              {k: v["error"] for k, v in done.items() if v["error"]},
                              {k: v["pid"] for k, v in done.items()}, [])
    if result.completed:
        result.summary = write_summary(study)
        if opts.render:
            draw_replicate_figures(study)
    return result


def resume_replicates(out_dir: str | Path, *, options: RunOptions | None = None) -> ReplicatesResult:
    """Continue every unfinished replicate of ``out_dir`` (its recorded scenario and count), run as ``options`` says.

    Raises
    ------
    FileNotFoundError
        When ``out_dir`` holds no replicates.
    """
    study = StudyFolder(out_dir)
    info = study.replicates_info()
    scenario = Scenario.from_dict(info["scenario"], source=str(study.replicates_json))
    return simulate_replicates(scenario, study.path, int(info["n_replicates"]), options=options, resume=True)


def _metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [k for k, v in rows[0].items() if k not in _NOT_METRICS and not k.startswith(_NOT_METRIC_PREFIXES)
            and isinstance(v, float)]


def summarize(replicate_rows: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of ``summary.csv`` from each replicate's metrics rows.

    Parameters
    ----------
    replicate_rows
        One metrics table (rows of ``metrics.csv``, first row day 0) per replicate.

    Returns
    -------
    list of dict
        One row per metric (columns :data:`SUMMARY_COLUMNS`): means of the first and last
        values, mean annualised change in %/yr with its 95 % Student-t interval, the
        number of replicates, and ``resolved`` (the interval excludes zero).
    """
    if not replicate_rows or any(len(rows) < 2 for rows in replicate_rows):
        raise ValueError("a summary needs at least one replicate, each with at least two metrics rows")
    metrics = [m for m in _metric_columns(replicate_rows[0]) if all(m in rows[0] for rows in replicate_rows)]
    out = []
    for m in metrics:
        change = t_interval([annual_change_pct(rows, m) for rows in replicate_rows])
        out.append({
            "metric": m,
            "start_mean": float(np.mean([_num(rows[0][m]) for rows in replicate_rows])),
            "end_mean": float(np.mean([_num(rows[-1][m]) for rows in replicate_rows])),
            "change_pct_per_yr_mean": change.mean,
            "change_pct_per_yr_ci_low": change.low,
            "change_pct_per_yr_ci_high": change.high,
            "n_replicates": len(replicate_rows),
            "resolved": change.resolved,
        })
    return out


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def write_summary(study: StudyFolder) -> list[dict[str, Any]]:
    """Summarise the completed replicates of ``study`` into its ``summary.csv``; returns the rows."""
    folders = study.replicates()
    not_done = [f.path.name for f in folders if f.state() is not RunState.COMPLETED]
    if not folders or not_done:
        raise ValueError(f"{study.path}: every replicate must be completed to summarise them "
                         f"(not completed: {', '.join(not_done) or 'no replicates'})")
    rows = summarize([f.read_metrics() for f in folders])
    study.write_summary(list(SUMMARY_COLUMNS), rows)
    return rows


def summary_intervals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Interval]:
    """Metric → interval of its annualised change, from ``summary.csv`` rows."""
    return {str(r["metric"]): Interval(float(r["change_pct_per_yr_mean"]), float(r["change_pct_per_yr_ci_low"]),
                                       float(r["change_pct_per_yr_ci_high"]), int(r["n_replicates"])) for r in rows}


def replicate_changes(study: StudyFolder) -> tuple[list[int], dict[str, list[float]]]:
    """Each replicate's seed and, per metric, its annualised change in %/yr (replicate order)."""
    folders = study.replicates()
    tables = [f.read_metrics() for f in folders]
    seeds = [int(f.info()["seed"]) for f in folders]
    metrics = _metric_columns(tables[0]) if tables and tables[0] else []
    return seeds, {m: [annual_change_pct(rows, m) for rows in tables] for m in metrics}
