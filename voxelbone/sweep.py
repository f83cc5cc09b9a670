"""Sweeps: a grid of scenarios run on Dask, gathered into one tidy table.

A sweep file has a ``[base]`` table of scenario fields and a ``[grid]`` table of lists:

.. code-block:: toml

    [base]
    site = "lumbar_spine"
    years = 0.5
    size = 48

    [grid]
    preset = ["postmenopausal_untreated", "trt"]
    seed = [1, 2]

``preset`` and ``years`` are shorthands for a single therapy period; any other
:class:`~voxelbone.scenario.Scenario` field may appear in either table. The grid expands
to the Cartesian product (in file order), each run written to ``OUT/runs/<run id>/`` as an
ordinary results folder. Runs execute on a Dask cluster: a local one by default (worker
processes; one worker per GPU, pinned with ``CUDA_VISIBLE_DEVICES``, when GPUs are
present) or an existing one (``scheduler``). A finished run is not run again, an
interrupted one resumes from its checkpoint, a failing run is reported and does not stop
the others, and a run on a worker that dies is retried on another.

The gathered table (``OUT/sweep.csv`` and ``OUT/sweep.parquet``) has one row per run and
time point: the grid values, the run id and status, then the run's metrics row. The
layout of ``OUT`` and of each run folder is :mod:`voxelbone.runfolder`'s.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ._version import __version__
from .backend import cupy_available
from .results import atomic_write, csv_text, write_json
from .runfolder import RunFolder, RunState, StudyFolder, git_commit
from .scenario import Scenario
from .simulate import simulate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Job", "RunOptions", "RunSpec", "Sweep", "SweepReport", "expand_grid", "load_sweep", "local_cluster", "run_jobs", "run_sweep"]

SHORTHANDS = ("preset", "years")


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its id, the grid values that made it, and the scenario."""

    run_id: str
    values: dict[str, Any]
    scenario: Scenario


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file."""

    base: dict[str, Any]
    grid: dict[str, list[Any]]
    source: str = "sweep"

    def runs(self) -> list[RunSpec]:
        """The expanded runs, in grid order."""
        return expand_grid(self.base, self.grid, self.source)


@dataclass
class SweepReport:
    """Outcome of :func:`run_sweep`."""

    out_dir: Path
    statuses: dict[str, str]
    errors: dict[str, str]
    table_csv: Path | None
    table_parquet: Path | None

    @property
    def failed(self) -> list[str]:
        """Run ids that failed."""
        return [k for k, v in self.statuses.items() if v == "failed"]


def _scenario_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(Scenario)} - {"periods"}


def _slug(value: Any) -> str:
    text = Path(str(value)).stem if isinstance(value, str) and value.endswith(".toml") else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def _scenario_from(values: Mapping[str, Any], source: str) -> Scenario:
    fields = dict(values)
    preset = fields.pop("preset", None)
    years = fields.pop("years", None)
    if preset is not None or years is not None:
        if "periods" in fields:
            raise ValueError(f"{source}: give either preset/years or periods, not both")
        fields["periods"] = [{"preset": str(preset or "postmenopausal_untreated"),
                              "years": float(years if years is not None else 2.0)}]
    return Scenario.from_dict(fields, source=source)


def expand_grid(base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]], source: str = "sweep") -> list[RunSpec]:
    """Cartesian product of ``grid`` over ``base``; run ids name the grid values.

    Raises
    ------
    ValueError
        For an unknown field, a grid entry that is not a non-empty list, or an empty grid.
    """
    known = _scenario_fields() | set(SHORTHANDS) | {"periods", "period"}
    for table, data in (("base", base), ("grid", grid)):
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) in [{table}]: {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known - {'period'}))}")
    if not grid:
        raise ValueError(f"{source}: the [grid] table is empty; list at least one field with values to sweep")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ValueError(f"{source}: grid field {k!r} must be a non-empty list, got {v!r}")
    keys = list(grid)
    runs = []
    seen: set[str] = set()
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        run_id = "__".join(f"{k}={_slug(v)}" for k, v in values.items())
        if run_id in seen:
            raise ValueError(f"{source}: grid values repeat ({run_id})")
        seen.add(run_id)
        scenario = _scenario_from({**base, **values, "name": run_id}, f"{source} run {run_id}")
        runs.append(RunSpec(run_id, values, scenario))
    return runs


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep TOML file (``[base]`` and ``[grid]`` tables)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"sweep file not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"base", "grid"})
    if extra:
        raise ValueError(f"{p}: unknown table(s) {', '.join(extra)}; a sweep has [base] and [grid]")
    sweep = Sweep(dict(data.get("base", {})), dict(data.get("grid", {})), str(p))
    sweep.runs()  # validate now, before anything runs
    return sweep


# ------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One run to execute on the cluster: a name, its scenario and its results folder."""

    name: str
    scenario: Scenario
    run_dir: Path


def _run_one(job: Job, backend: str | None, render: bool) -> dict[str, Any]:
    """Executed on a worker: run (or resume) one scenario, never raise for a model error."""
    folder = RunFolder(job.run_dir)
    state = folder.state()
    done = {"name": job.name, "status": RunState.COMPLETED.value, "error": "", "pid": os.getpid()}
    if state is RunState.COMPLETED:
        return done
    try:
        simulate(job.scenario, folder.path, backend=backend, progress=False, resume=state is RunState.INTERRUPTED,
                 render=render)
    except Exception as exc:  # reported per run; the sweep goes on
        folder.write_error(traceback.format_exc())
        return {**done, "status": RunState.FAILED.value, "error": f"{type(exc).__name__}: {exc}"}
    return done


@dataclass(frozen=True)
class RunOptions:
    """How the runs of a sweep, a set of replicates or a comparison are executed.

    Parameters
    ----------
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``); default a local cluster.
    n_workers : int, optional
        Worker processes of the local cluster (default: one per CPU core, or one per GPU;
        never more than there are runs).
    backend : str, optional
        Array backend for every run.
    render : bool
        Write plots and renders for every run.
    retries : int
        Extra attempts for a run whose worker died (the local cluster's
        ``distributed.scheduler.allowed-failures``; an existing scheduler keeps its own
        setting). A run resumes from its last checkpoint when attempted again.
    progress : callable, optional
        Called as ``progress(run name, status)`` as runs finish.
    """

    scheduler: str | None = None
    n_workers: int | None = None
    backend: str | None = None
    render: bool = False
    retries: int = 2
    progress: Callable[[str, str], None] | None = None


def run_jobs(jobs: Sequence[Job], *, options: RunOptions | None = None) -> dict[str, dict[str, Any]]:
    """Run jobs in parallel on a Dask cluster (a local one unless ``options.scheduler`` is given).

    Finished runs are kept, interrupted ones resume from their checkpoint, a failing run
    is reported and does not stop the others, and a run whose worker dies is retried. A
    job whose folder holds a run of another scenario stops them all before any starts.

    Parameters
    ----------
    jobs
        The runs (unique names).
    options
        How to run them (:class:`RunOptions`; default: a local cluster, the default backend,
        no renders).

    Returns
    -------
    dict
        Job name → ``{"status", "error", "pid"}`` (``pid``: the worker process that ran it,
        ``None`` for a run that was already complete or whose worker died).
    """
    # deferred: distributed is optional (the sweep extra) and costs ~0.4 s to import
    import dask  # noqa: PLC0415
    from distributed import Client, as_completed  # noqa: PLC0415

    opts = options or RunOptions()
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names repeat: {names}")
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for j in jobs:  # before any run starts: a folder holding another scenario's run is never reused or replaced
        RunFolder(j.run_dir).refuse_other_scenario(j.scenario)
    for j in jobs:
        if RunFolder(j.run_dir).state() is RunState.COMPLETED:
            results[j.name] = {"name": j.name, "status": RunState.COMPLETED.value, "error": "", "pid": None}
        else:
            todo.append(j)
    if not todo:
        return results
    cluster = None
    try:
        if opts.scheduler:
            try:
                client = Client(opts.scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(f"cannot reach the Dask scheduler at {opts.scheduler}: {exc}") from None
        else:
            with dask.config.set({"distributed.scheduler.allowed-failures": int(opts.retries)}):
                cluster = local_cluster(opts.n_workers or min(len(todo), max(1, os.cpu_count() or 1)))
            client = Client(cluster)
        with client:
            futures = {
                client.submit(_run_one, j, opts.backend, opts.render, key=f"voxelbone-{j.name}-{time.time_ns()}",
                              pure=False): j
                for j in todo
            }
            for fut in as_completed(futures):
                j = futures[fut]
                try:
                    res = fut.result()
                except Exception as exc:  # worker died more often than retries allow
                    res = {"name": j.name, "status": RunState.FAILED.value, "error": f"{type(exc).__name__}: {exc}",
                           "pid": None}
                results[j.name] = res
                if opts.progress:
                    opts.progress(j.name, res["status"])
    finally:
        if cluster is not None:
            cluster.close()
    return results


def _gpu_count() -> int:
    try:
        if not cupy_available():
            return 0
        import cupy  # deferred: only where a GPU answers  # noqa: PLC0415

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


def local_cluster(n_workers: int | None = None, gpus: int | None = None) -> Any:
    """A local Dask cluster of worker processes; one per GPU (pinned) when GPUs are present."""
    # deferred: distributed is optional (the sweep extra) and costs ~0.4 s to import
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster  # noqa: PLC0415

    gpus = _gpu_count() if gpus is None else gpus
    if gpus > 0:
        workers = {
            f"gpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": str(i)}}}
            for i in range(gpus)
        }
        return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
                           silence_logs=40)
    n = n_workers or max(1, (os.cpu_count() or 2) // 1)
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40)


def _check_out_dir(study: StudyFolder) -> None:
    meta = study.sweep_json
    if meta.exists():
        try:
            version = json.loads(meta.read_text()).get("voxelbone_version")
        except ValueError:
            version = "unknown"
        if version != __version__:
            raise ValueError(f"{study.path} holds a sweep made by voxelbone {version}; this is {__version__}. "
                             "Use a new --out folder (finished runs there are kept).")


def run_sweep(sweep: Sweep, out_dir: str | Path, *, options: RunOptions | None = None,
              replicates: int | None = None) -> SweepReport:
    """Run every scenario of a sweep and gather the results.

    Parameters
    ----------
    sweep : Sweep
        The parsed sweep.
    out_dir : path
        Output folder; runs go to ``out_dir/runs/<run id>``.
    options : RunOptions, optional
        Cluster, workers, backend, renders, retries and progress of the runs
        (:class:`RunOptions`; ``progress`` is called with the run id).
    replicates : int, optional
        Run every grid point as this many replicates (:mod:`voxelbone.replicates`): point
        ``<run id>`` becomes a set of replicates in ``out_dir/runs/<run id>/`` with its own
        ``summary.csv``; a point is completed when all its replicates are.
    """
    if replicates is not None:
        from .replicates import check_replicate_count  # deferred: replicates imports this module  # noqa: PLC0415

        check_replicate_count(replicates)
    study = StudyFolder(out_dir)
    runs = sweep.runs()
    _check_out_dir(study)
    from .presets import check_load_needs_mechanics  # noqa: PLC0415 — the hormone layer's Numba cost, not at import

    for r in runs:  # a disuse preset with mechanics off stops the sweep before anything is written
        check_load_needs_mechanics(r.scenario)
    if replicates is None:  # before sweep.json is rewritten: a point holding another scenario's run stops it
        for r in runs:
            study.run(r.run_id).refuse_other_scenario(r.scenario)
    study.runs_dir.mkdir(parents=True, exist_ok=True)
    _write_sweep_json(study, sweep, runs)

    if replicates is not None:
        return _run_replicated_sweep(study, runs, replicates, options)
    statuses: dict[str, str] = {rid: st.value for rid, st in study.states([r.run_id for r in runs]).items()}
    errors: dict[str, str] = {}
    jobs = [Job(r.run_id, r.scenario, study.run(r.run_id).path) for r in runs
            if statuses[r.run_id] != RunState.COMPLETED.value]
    if jobs:
        done = run_jobs(jobs, options=options)
        for name, res in done.items():
            statuses[name] = res["status"]
            if res["error"]:
                errors[name] = res["error"]
    csv_path, pq_path = gather(study, runs, statuses)
    return SweepReport(study.path, statuses, errors, csv_path, pq_path)


def _run_replicated_sweep(study: StudyFolder, runs: list[RunSpec], n: int, options: RunOptions | None) -> SweepReport:
    """Every grid point as ``n`` replicates, all on one cluster; a summary per point."""
    from .replicates import prepare_folder, replicate_jobs, write_summary  # deferred: imports this module  # noqa: PLC0415

    jobs: list[Job] = []
    for r in runs:
        point = study.study(r.run_id)
        if study.run(r.run_id).state() is not RunState.EMPTY:
            raise ValueError(f"{point.path} holds a run without replicates; use a new --out folder for --replicates")
        prepare_folder(point, r.scenario, n, resume=True)
        jobs += replicate_jobs(r.scenario, point, n, name_prefix=f"{r.run_id}/")
    done = run_jobs(jobs, options=options)
    statuses: dict[str, str] = {}
    errors: dict[str, str] = {}
    for r in runs:
        mine = {k: v for k, v in done.items() if k.startswith(f"{r.run_id}/")}
        failed = {k: v["error"] for k, v in mine.items() if v["status"] != RunState.COMPLETED.value}
        statuses[r.run_id] = RunState.FAILED.value if failed else RunState.COMPLETED.value
        if failed:
            errors[r.run_id] = "; ".join(f"{k}: {e}" for k, e in failed.items())
        else:
            write_summary(study.study(r.run_id))
    csv_path, pq_path = gather(study, runs, statuses, replicates=True)
    return SweepReport(study.path, statuses, errors, csv_path, pq_path)


def _write_sweep_json(study: StudyFolder, sweep: Sweep, runs: list[RunSpec]) -> None:
    write_json(study.sweep_json, {
        "voxelbone_version": __version__,
        "git_commit": git_commit(),
        "source": sweep.source,
        "base": sweep.base,
        "grid": sweep.grid,
        "runs": [r.run_id for r in runs],
    })
    src = Path(sweep.source)
    if src.is_file() and src.resolve() != study.sweep_toml.resolve():
        shutil.copyfile(src, study.sweep_toml)


def gather(study: StudyFolder, runs: list[RunSpec], statuses: Mapping[str, str], *,
           replicates: bool = False) -> tuple[Path | None, Path | None]:
    """Collect every run's metrics into the sweep's CSV and Parquet tables (one row per run and time).

    With ``replicates``, each grid point is a set of replicates: one row per point,
    replicate and time, with the replicate's index and seed.
    """
    rows: list[dict[str, Any]] = []
    for r in runs:
        status = statuses.get(r.run_id, RunState.EMPTY.value)
        base = {"run_id": r.run_id, "status": status, **{f"grid_{k}": v for k, v in r.values.items()}}
        done = status == RunState.COMPLETED.value
        if replicates:
            folders = study.study(r.run_id).replicates() if done else []
            tables = [({"replicate": i, "seed": f.info().get("seed")}, f.read_metrics()) for i, f in enumerate(folders)]
        else:
            tables = [({}, study.run(r.run_id).read_metrics() if done else [])]
        if any(metrics for _, metrics in tables):
            rows.extend({**base, **extra, **m} for extra, metrics in tables for m in metrics)
        else:
            rows.append(base)
    if not rows:
        return None, None
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    csv_path = study.table_csv
    text = csv_text(columns, rows)
    atomic_write(csv_path, lambda fh: fh.write(text.encode()))
    pq_path: Path | None = study.table_parquet
    try:
        # deferred: pyarrow is optional (the sweep extra) and heavy to import
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
        atomic_write(pq_path, lambda fh: pq.write_table(table, fh))
    except ImportError:
        pq_path = None
    return csv_path, pq_path
