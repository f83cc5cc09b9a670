"""The results folder of a run, and of a set of runs: the one place that knows their layout.

A run's folder (a stable contract; scripts and other tools read it)::

    DIR/run.json          what made the run (scenario, seed, backend, device, version, git
                          commit, command, timings), its status and the figures that failed
    DIR/scenario.toml     the scenario, re-runnable with ``voxelbone run --scenario``
    DIR/metrics.csv       one row per metric evaluation, first row day 0
    DIR/hormones.csv      daily hormone levels;  DIR/activity.csv  daily remodeling rates
    DIR/snapshots/day_NNNNN.npz   (or .zarr for large volumes) bone, mineral, region, voxel size
    DIR/checkpoint.npz    only while a run is unfinished (its resume point)
    DIR/error.txt         the traceback of a run that failed (sweeps)
    DIR/plots/NAME.png    DIR/renders/NAME.png (and the animation's .gif/.mp4)

A folder of several runs (a sweep, a preset comparison)::

    OUT/runs/<run id>/    one run folder each
    OUT/sweep.json, sweep.toml, sweep.csv, sweep.parquet   (a sweep)
    OUT/report.html, OUT/images/                            (a comparison)

Replicates of one scenario (``--replicates N``) are a folder of several runs too::

    OUT/runs/rep_00/ ... rep_NN/   one run folder per replicate (its own seed)
    OUT/replicates.json            the scenario, the number of replicates and their seeds
    OUT/summary.csv                one row per metric: means and 95 % intervals
    OUT/plots/NAME.png             the metrics over time, mean and 95 % band

and a comparison or a sweep with replicates keeps one such folder per preset or grid
point under its ``runs/``.

:class:`RunFolder` reads and writes every file of a run folder (``run.json``, the metrics
table, checkpoints, snapshots, the daily courses) and says what state the run is in
(:class:`RunState`); :class:`StudyFolder` holds the runs of a sweep or a comparison and
the files about all of them. Every file is written atomically (temporary name, then
rename), so an interruption never leaves a half-written file under its final name.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ._version import __version__
from .backend import Backend
from .results import atomic_write, csv_text, load_rows, save_snapshot, write_json
from .scenario import Scenario, scenario_to_toml
from .volume import BoneVolume

__all__ = ["Checkpoint", "MetricsTable", "RunFolder", "RunState", "StudyFolder", "git_commit"]

_RUN_JSON = "run.json"
_SCENARIO_TOML = "scenario.toml"
_METRICS_CSV = "metrics.csv"
_HORMONES_CSV = "hormones.csv"
_ACTIVITY_CSV = "activity.csv"
_CHECKPOINT = "checkpoint.npz"
_ERROR_TXT = "error.txt"
_SNAPSHOTS = "snapshots"
_SNAPSHOT_PREFIX = "day_"
#: Fields of ``run.json`` written once when a run starts and kept by later status writes
#: (the input scan's provenance: format, voxel size and its source, calibration; what the sample
#: makes less certain; the figure errors).
_KEPT_FIELDS = ("input_scan", "caveats", "figure_errors")
_PLOTS = "plots"
_RENDERS = "renders"
_CHECKPOINT_META = "__meta__"
_RUNS = "runs"
_REPLICATE_PREFIX = "rep_"
_REPLICATES_JSON = "replicates.json"
_SUMMARY_CSV = "summary.csv"
_RVE_JSON = "rve.json"


class RunState(str, enum.Enum):
    """What state a run's folder is in.

    ``EMPTY``
        No ``run.json`` (a new folder, or not a voxelbone results folder).
    ``RUNNING``
        ``run.json`` says running and there is no checkpoint: a run in progress, or one
        that died before its first checkpoint (nothing to resume; start it again).
    ``INTERRUPTED``
        Not completed, with a checkpoint: resumable (``voxelbone run --resume DIR``).
    ``COMPLETED``
        The run reached its last day: metrics, snapshots and ``run.json`` are final
        (figures are drawn after this point; their failures are listed in ``run.json``).
    ``FAILED``
        The run stopped on an error without a checkpoint to resume from.
    """

    EMPTY = "empty"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    COMPLETED = "completed"
    FAILED = "failed"


def git_commit() -> str | None:
    """The git commit of the source tree voxelbone runs from (``-dirty`` when modified), or None."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


@dataclass(frozen=True)
class Checkpoint:
    """A run's resume point: the step to continue from and the engine's state."""

    next_step: int
    arrays: dict[str, np.ndarray]
    engine: dict[str, Any]


class MetricsTable:
    """``metrics.csv``, appended and flushed one row at a time (an interruption loses no row).

    A row with columns the table has not seen yet rewrites the file with the wider header.
    """

    def __init__(self, path: Path, resume_day: float | None = None) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] | None = None
        if resume_day is not None and path.exists():
            self.rows = [r for r in load_rows(path) if float(r["day"]) <= resume_day]
            if self.rows:
                self.columns = list(self.rows[0].keys())
            self._rewrite()

    def _rewrite(self) -> None:
        text = csv_text(self.columns or [], self.rows)
        atomic_write(self.path, lambda fh: fh.write(text.encode()))

    def append(self, row: dict[str, Any]) -> None:
        """Add one row (written to disk before returning)."""
        if self.columns is None:
            self.columns = list(row.keys())
            self.rows.append(row)
            self._rewrite()
            return
        new = [k for k in row if k not in self.columns]
        self.rows.append(row)
        if new:
            self.columns += new
            self._rewrite()
            return
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=self.columns, restval="").writerow(row)
            fh.flush()


@dataclass(frozen=True)
class RunFolder:
    """The results folder of one run.

    Parameters
    ----------
    path : path
        The folder (need not exist yet).

    Examples
    --------
    >>> import tempfile
    >>> folder = RunFolder(tempfile.mkdtemp())
    >>> folder.state()
    <RunState.EMPTY: 'empty'>
    """

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    # ---------------------------------------------------------------- layout
    @property
    def run_json(self) -> Path:
        """``run.json``: what made the run, its status and timings."""
        return self.path / _RUN_JSON

    @property
    def scenario_toml(self) -> Path:
        """``scenario.toml``: the scenario, re-runnable."""
        return self.path / _SCENARIO_TOML

    @property
    def metrics_csv(self) -> Path:
        """``metrics.csv``: one row per metric evaluation."""
        return self.path / _METRICS_CSV

    @property
    def hormones_csv(self) -> Path:
        """``hormones.csv``: daily hormone levels."""
        return self.path / _HORMONES_CSV

    @property
    def activity_csv(self) -> Path:
        """``activity.csv``: daily remodeling rates and cell populations."""
        return self.path / _ACTIVITY_CSV

    @property
    def checkpoint(self) -> Path:
        """The checkpoint (present only while the run is unfinished)."""
        return self.path / _CHECKPOINT

    @property
    def error_txt(self) -> Path:
        """The traceback of a failed run."""
        return self.path / _ERROR_TXT

    @property
    def snapshots_dir(self) -> Path:
        """Folder of the saved volumes."""
        return self.path / _SNAPSHOTS

    @property
    def plots_dir(self) -> Path:
        """Folder of the PNG plots."""
        return self.path / _PLOTS

    @property
    def renders_dir(self) -> Path:
        """Folder of the 3-D renders and the animation."""
        return self.path / _RENDERS

    def plot_path(self, name: str) -> Path:
        """Where the plot ``name`` goes (``plots/NAME.png``)."""
        return self.plots_dir / f"{name}.png"

    def render_path(self, name: str, suffix: str = ".png") -> Path:
        """Where the render ``name`` goes (``renders/NAME.png``; ``suffix=""`` for a stem)."""
        return self.renders_dir / f"{name}{suffix}"

    # ---------------------------------------------------------------- state
    def info(self) -> dict[str, Any]:
        """The content of ``run.json``.

        Raises
        ------
        FileNotFoundError
            When the folder holds no ``run.json`` (not a voxelbone results folder).
        """
        if not self.run_json.is_file():
            raise FileNotFoundError(f"{self.path} is not a voxelbone results folder (no {_RUN_JSON})")
        return json.loads(self.run_json.read_text(encoding="utf-8"))

    def state(self) -> RunState:
        """What state the run is in (see :class:`RunState`)."""
        try:
            status = str(self.info().get("status", ""))
        except (FileNotFoundError, OSError, ValueError):
            return RunState.EMPTY
        if status == RunState.COMPLETED.value:
            return RunState.COMPLETED
        if self.checkpoint.exists():
            return RunState.INTERRUPTED
        if status == RunState.FAILED.value:
            return RunState.FAILED
        return RunState.RUNNING

    def recorded_scenario(self) -> Scenario:
        """The scenario recorded in ``run.json``."""
        return Scenario.from_dict(self.info()["scenario"], source=str(self.run_json))

    def holds(self, scenario: Scenario) -> bool:
        """True when the folder holds a completed run of exactly ``scenario`` (reusable)."""
        if self.state() is not RunState.COMPLETED or not self.metrics_csv.exists():
            return False
        try:
            return self.recorded_scenario() == scenario
        except (KeyError, ValueError, TypeError):
            return False

    def refuse_other_scenario(self, scenario: Scenario) -> None:
        """Raise unless the folder is empty or holds a run of exactly ``scenario``.

        A run of the same scenario may be continued or run again (the results are the same);
        a run of another scenario is kept as it is, in whatever state it is in.

        Raises
        ------
        ValueError
            The folder holds a run of another scenario (the fields that differ are named), or
            a ``run.json`` that does not describe a scenario.
        """
        state = self.state()
        if state is RunState.EMPTY:
            return
        try:
            recorded = self.recorded_scenario()
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{self.run_json} does not describe a scenario ({exc}); the folder is left as it is: "
                             "choose another --out") from None
        if recorded == scenario:
            return
        old, new = recorded.to_dict(), scenario.to_dict()
        differ = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in new if old.get(k) != new.get(k))
        article = "an" if state.value[0] in "aeiou" else "a"
        raise ValueError(f"{self.path} holds {article} {state.value} run of another scenario ({differ}); it is left "
                         "as it is: choose another --out, or remove that folder to replace it")

    # ---------------------------------------------------------------- run.json
    def create(self) -> None:
        """Create the folder and its ``snapshots/``."""
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)

    def write_status(self, status: RunState, *, scenario: Scenario, backend: Backend, timings: Mapping[str, float],
                     day: int | None = None, **extra: Any) -> None:
        """Write ``run.json`` (and ``scenario.toml``) with the given status.

        Parameters
        ----------
        status
            ``RUNNING``, ``INTERRUPTED``, ``COMPLETED`` or ``FAILED``.
        scenario, backend
            What the run is made of.
        timings
            Seconds per stage so far.
        day
            The last simulated day reached.
        **extra
            More fields (e.g. ``error``).
        """
        kept = {k: v for k, v in self.info().items() if k in _KEPT_FIELDS} if self.run_json.exists() else {}
        data = {
            **kept,
            "status": RunState(status).value,
            "day_reached": day,
            "scenario": scenario.to_dict(),
            "seed": scenario.seed,
            "backend": backend.name,
            "device": backend.device,
            "device_details": backend.details,
            "voxelbone_version": __version__,
            "git_commit": git_commit(),
            "python": platform.python_version(),
            "command": sys.argv,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "timings_s": _rounded(timings),
            "reproduce": f"voxelbone run --scenario {self.scenario_toml} --out {self.path}",
            **extra,
        }
        atomic_write(self.scenario_toml, lambda fh: fh.write(scenario_to_toml(scenario).encode()))
        write_json(self.run_json, data)

    def update_info(self, **fields: Any) -> None:
        """Add or replace fields of ``run.json`` (``timings_s`` entries are merged)."""
        data = self.info()
        timings = fields.pop("timings_s", None)
        if timings is not None:
            data["timings_s"] = {**data.get("timings_s", {}), **_rounded(timings)}
        data.update(fields)
        write_json(self.run_json, data)

    def write_error(self, text: str) -> None:
        """Keep the traceback of a failed run in ``error.txt``."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.error_txt, lambda fh: fh.write(text.encode()))

    # ---------------------------------------------------------------- tables
    def metrics_table(self, resume_day: float | None = None) -> MetricsTable:
        """The metrics table to append to; ``resume_day`` keeps the rows up to that day."""
        return MetricsTable(self.metrics_csv, resume_day=resume_day)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Rows of ``metrics.csv`` (numbers as floats); empty when there is none."""
        return load_rows(self.metrics_csv) if self.metrics_csv.exists() else []

    def read_hormones(self) -> list[dict[str, Any]]:
        """Rows of ``hormones.csv``; empty when there is none."""
        return load_rows(self.hormones_csv) if self.hormones_csv.exists() else []

    def read_activity(self) -> list[dict[str, Any]]:
        """Rows of ``activity.csv``; empty when there is none."""
        return load_rows(self.activity_csv) if self.activity_csv.exists() else []

    def write_courses(self, course: Any, activity: Any, days: int) -> None:
        """Daily hormone levels (``hormones.csv``) and remodeling rates (``activity.csv``).

        Parameters
        ----------
        course
            The :class:`~voxelbone.hormones.HormoneCourse` of the run.
        activity
            The cell activity of the run (:func:`voxelbone.biology.cell_activity`).
        days
            Simulated days (rows for days 0..days).
        """
        daily = course.daily_mean()
        n = min(days + 1, daily.days.size, activity.days.size)
        htab = daily.as_table()
        hrows = [{k: float(v[i]) for k, v in htab.items()} for i in range(n)]
        arows = []
        for i in range(n):
            a = {"day": float(activity.days[i])}
            a.update({k: float(v) for k, v in dataclasses.asdict(activity.at(float(i))).items()})
            a.update({f"cells_{k}": float(v[i]) for k, v in activity.cells.items()})
            arows.append(a)
        for path, rows in ((self.hormones_csv, hrows), (self.activity_csv, arows)):
            text = csv_text(list(rows[0].keys()), rows)
            atomic_write(path, lambda fh, t=text: fh.write(t.encode()))

    # ---------------------------------------------------------------- snapshots
    def save_snapshot(self, volume: BoneVolume, day: int) -> Path:
        """Save the volume of ``day`` (``snapshots/day_NNNNN.npz`` or ``.zarr``)."""
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        return save_snapshot(volume, self.snapshots_dir / f"{_SNAPSHOT_PREFIX}{int(day):05d}", int(day))

    def snapshots(self) -> list[tuple[int, Path]]:
        """``(day, path)`` of the saved volumes, in time order."""
        return sorted(self._iter_snapshots())

    def _iter_snapshots(self) -> Iterator[tuple[int, Path]]:
        if not self.snapshots_dir.is_dir():
            return
        for p in self.snapshots_dir.iterdir():
            if p.name.startswith(_SNAPSHOT_PREFIX) and p.suffix in (".npz", ".zarr"):
                yield int(p.stem[len(_SNAPSHOT_PREFIX):]), p

    # ---------------------------------------------------------------- checkpoints
    def write_checkpoint(self, arrays: Mapping[str, np.ndarray], *, next_step: int, scenario: Scenario,
                         engine: Mapping[str, Any]) -> None:
        """Write the resume point atomically (host arrays, the next step, the engine's metadata)."""
        meta = {"next_step": int(next_step), "scenario": scenario.to_dict(), "voxelbone_version": __version__,
                "engine": dict(engine)}
        payload = dict(arrays)
        payload[_CHECKPOINT_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        atomic_write(self.checkpoint, lambda fh: np.savez(fh, **payload))

    def read_checkpoint(self, scenario: Scenario) -> Checkpoint:
        """The resume point, checked against this version and ``scenario``.

        Raises
        ------
        FileNotFoundError
            No checkpoint (the run stopped before its first one).
        ValueError
            The run is completed, or was written by another version, or for another scenario.
        """
        if not self.checkpoint.exists():
            if self.state() is RunState.COMPLETED:
                raise ValueError(f"{self.path} holds a completed run; nothing to resume")
            raise FileNotFoundError(f"no checkpoint in {self.path}: the run stopped before its first checkpoint; "
                                    "start it again")
        with np.load(self.checkpoint) as z:
            meta = json.loads(bytes(z[_CHECKPOINT_META]).decode())
            arrays = {k: z[k] for k in z.files if k != _CHECKPOINT_META}
        if meta["voxelbone_version"] != __version__:
            raise ValueError(f"{self.path} was written by voxelbone {meta['voxelbone_version']}, this is "
                             f"{__version__}; resume it with that version or start again")
        if Scenario.from_dict(meta["scenario"]) != scenario:
            raise ValueError(f"the scenario differs from the one recorded in {self.path}; resume without changing it")
        return Checkpoint(int(meta["next_step"]), arrays, meta["engine"])

    def remove_checkpoint(self) -> None:
        """Delete the checkpoint (once the run is recorded as completed)."""
        self.checkpoint.unlink(missing_ok=True)


@dataclass(frozen=True)
class StudyFolder:
    """A folder of several runs (``runs/<run id>/``) and the files about all of them.

    A sweep keeps its description and gathered table here, a comparison its report.
    Replicates of one scenario fit the same shape: one run folder per replicate under
    ``runs/rep_NN/``, ``replicates.json`` (what made them) and ``summary.csv`` (their
    means and intervals).
    """

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def runs_dir(self) -> Path:
        """Folder of the run folders."""
        return self.path / _RUNS

    def run(self, run_id: str) -> RunFolder:
        """The folder of run ``run_id``."""
        return RunFolder(self.runs_dir / run_id)

    def states(self, run_ids: list[str]) -> dict[str, RunState]:
        """The state of each run."""
        return {rid: self.run(rid).state() for rid in run_ids}

    @property
    def sweep_json(self) -> Path:
        """A sweep's description (version, grid, run ids)."""
        return self.path / "sweep.json"

    @property
    def sweep_toml(self) -> Path:
        """A copy of the sweep file."""
        return self.path / "sweep.toml"

    @property
    def table_csv(self) -> Path:
        """The gathered table of a sweep (one row per run and time point)."""
        return self.path / "sweep.csv"

    @property
    def table_parquet(self) -> Path:
        """The gathered table as Parquet."""
        return self.path / "sweep.parquet"

    @property
    def report_html(self) -> Path:
        """A comparison's HTML report."""
        return self.path / "report.html"

    @property
    def images_dir(self) -> Path:
        """The report's images."""
        return self.path / "images"

    # ---------------------------------------------------------------- replicates
    def study(self, run_id: str) -> StudyFolder:
        """The folder ``runs/<run id>/`` as a folder of runs itself (a preset's or a grid point's replicates)."""
        return StudyFolder(self.runs_dir / run_id)

    @staticmethod
    def replicate_id(index: int) -> str:
        """The run id of replicate ``index`` (``rep_00``, ``rep_01``, ...)."""
        if index < 0:
            raise ValueError(f"a replicate index is ≥ 0, got {index}")
        return f"{_REPLICATE_PREFIX}{index:02d}"

    def replicate(self, index: int) -> RunFolder:
        """The run folder of replicate ``index``."""
        return self.run(self.replicate_id(index))

    def replicates(self) -> list[RunFolder]:
        """The replicate run folders present, in replicate order."""
        if not self.runs_dir.is_dir():
            return []
        found = []
        for p in self.runs_dir.iterdir():
            tail = p.name[len(_REPLICATE_PREFIX):]
            if p.is_dir() and p.name.startswith(_REPLICATE_PREFIX) and tail.isdigit():
                found.append((int(tail), RunFolder(p)))
        return [f for _, f in sorted(found, key=lambda t: t[0])]

    def holds_replicates(self) -> bool:
        """True when the folder is a set of replicates (``replicates.json`` or ``runs/rep_NN/``)."""
        return self.replicates_json.is_file() or bool(self.replicates())

    @property
    def replicates_json(self) -> Path:
        """What made a set of replicates: the scenario, their number and seeds."""
        return self.path / _REPLICATES_JSON

    def write_replicates_info(self, data: Mapping[str, Any]) -> None:
        """Write ``replicates.json`` (creates the folder)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.replicates_json, data)

    def replicates_info(self) -> dict[str, Any]:
        """The content of ``replicates.json``.

        Raises
        ------
        FileNotFoundError
            When the folder is not a set of replicates.
        """
        if not self.replicates_json.is_file():
            raise FileNotFoundError(f"{self.path} holds no replicates (no {_REPLICATES_JSON})")
        return json.loads(self.replicates_json.read_text(encoding="utf-8"))

    def plot_path(self, name: str) -> Path:
        """Where the plot ``name`` of the whole set goes (``plots/NAME.png``)."""
        return self.path / _PLOTS / f"{name}.png"

    @property
    def summary_csv(self) -> Path:
        """The replicates' summary: one row per metric, means and 95 % intervals."""
        return self.path / _SUMMARY_CSV

    def write_summary(self, columns: list[str], rows: list[Mapping[str, Any]]) -> Path:
        """Write ``summary.csv`` atomically; returns its path."""
        self.path.mkdir(parents=True, exist_ok=True)
        text = csv_text(columns, list(rows))
        atomic_write(self.summary_csv, lambda fh: fh.write(text.encode()))
        return self.summary_csv

    @property
    def rve_json(self) -> Path:
        """The result of a representative-volume study (``python -m voxelbone.rve``)."""
        return self.path / _RVE_JSON

    def read_summary(self) -> list[dict[str, Any]]:
        """Rows of ``summary.csv`` (numbers as floats); empty when there is none."""
        return load_rows(self.summary_csv) if self.summary_csv.exists() else []


def _rounded(timings: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 3) for k, v in timings.items()}
