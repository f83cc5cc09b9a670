"""The time loop: Scenario → results folder.

``simulate`` is the one place where time advances. It

1. builds the starting volume (phantom or micro-CT file) and moves it to the device once;
2. turns the scenario's therapy periods into a hormone course and that into remodeling
   rates (cheap, host side, precomputed for the whole run);
3. steps the remodeling engine, handing it scalars only (no host↔device traffic per step);
4. every ``metrics_every_days`` computes the morphometry on the device and copies the
   scalars back, appending one row to ``metrics.csv`` (flushed, so an interruption loses
   nothing already measured);
5. writes snapshots when asked, checkpoints every ``checkpoint_every_days`` (atomic: temp
   file then rename) and on SIGINT/SIGTERM, so ``--resume`` continues to a result identical
   to an uninterrupted run (every random draw is keyed by (seed, step, voxel));
6. ends with ``run.json``, plots and renders.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .backend import Backend, asnumpy, get_backend
from .results import atomic_write, csv_text, load_rows, save_snapshot, write_json
from .scenario import DAYS_PER_YEAR, Period, Scenario, load_scenario
from .volume import BoneVolume

__all__ = ["Result", "RunInterrupted", "simulate"]

CHECKPOINT = "checkpoint.npz"
RUN_JSON = "run.json"
METRICS_CSV = "metrics.csv"
SUMMARY_METRICS = (
    ("bv_tv", "BV/TV", "", 1.0),
    ("tb_th_um", "Tb.Th", "µm", 1.0),
    ("tb_sp_um", "Tb.Sp", "µm", 1.0),
    ("tb_n_per_mm", "Tb.N", "/mm", 1.0),
    ("conn_d_per_mm3", "Conn.D", "/mm³", 1.0),
    ("ct_th_um", "Ct.Th", "µm", 1.0),
    ("ct_po", "Ct.Po", "%", 100.0),
    ("bmd_mg_cm3", "BMD", "mg HA/cm³", 1.0),
)


class RunInterrupted(Exception):
    """The run stopped on SIGINT/SIGTERM after writing a checkpoint."""

    def __init__(self, out_dir: Path, day: int) -> None:
        super().__init__(
            f"interrupted on day {day}; the folder {out_dir} holds a checkpoint — "
            f"continue with: voxelbone run --resume {out_dir}"
        )
        self.out_dir = out_dir
        self.day = day


@dataclass
class Result:
    """What a finished run returns (the results folder holds the same and more)."""

    scenario: Scenario
    out_dir: Path | None
    rows: list[dict[str, float]]
    volume: BoneVolume
    backend: str
    device: str
    timings_s: dict[str, float] = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        """One metric over time, as a float array."""
        return np.array([float(r[name]) for r in self.rows])


# ------------------------------------------------------------------------------------
# stages (each a plain function of plain inputs)
# ------------------------------------------------------------------------------------
def starting_volume(scenario: Scenario) -> BoneVolume:
    """The volume on day 0 before spin-up: a phantom of the site, or the input file."""
    if scenario.input:
        from .io import load_volume  # noqa: PLC0415

        vol = load_volume(scenario.input, voxel_size_um=scenario.voxel_size_um, compartments=scenario.compartments)
        vol.site = vol.site or scenario.site
        return vol
    from .phantom import make_phantom  # noqa: PLC0415

    return make_phantom(scenario.site, size=scenario.size, voxel_size_um=scenario.voxel_size_um, seed=scenario.seed)


def activity_for(scenario: Scenario) -> tuple[Any, Any]:
    """Hormone course (hourly) and cell activity (daily) for the scenario's chain of periods."""
    from .biology import cell_activity  # noqa: PLC0415
    from .presets import course_for_periods  # noqa: PLC0415

    periods = [(p.preset, p.years) for p in scenario.periods]
    course = course_for_periods(periods, extra_days=scenario.step_days + 1)
    return course, cell_activity(course, scenario.site)


def git_commit() -> str | None:
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


class _MetricsTable:
    """metrics.csv, appended and flushed one row at a time."""

    def __init__(self, path: Path, resume_day: int | None = None) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] | None = None
        if resume_day is not None and path.exists():
            self.rows = [r for r in load_rows(path) if float(r["day"]) <= resume_day]
            if self.rows:
                self.columns = list(self.rows[0].keys())
            self._rewrite()

    def _rewrite(self) -> None:
        def write(fh: Any) -> None:
            text = csv_text(self.columns or [], self.rows)
            fh.write(text.encode())
        atomic_write(self.path, write)

    def append(self, row: dict[str, Any]) -> None:
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


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop stops after the current step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _crossed(day0: int, day1: int, every: int | None) -> bool:
    return every is not None and (day1 // every) > (day0 // every)


# ------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------
def simulate(
    scenario: Scenario,
    out_dir: str | Path | None = None,
    *,
    backend: str | Backend | None = None,
    progress: bool = True,
    resume: bool = False,
    render: bool = True,
    measure: Callable[[BoneVolume], dict[str, float]] | None = None,
    volume: BoneVolume | None = None,
    equilibrate: bool | None = None,
) -> Result:
    """Run a scenario.

    Parameters
    ----------
    scenario : Scenario
        What to simulate.
    out_dir : path, optional
        Results folder (created). ``None`` keeps everything in memory (no files, no
        checkpoints).
    backend : str or Backend, optional
        ``"numpy"``, ``"cupy"`` or ``"auto"`` (default: ``$VOXELBONE_BACKEND`` or auto).
    progress : bool
        Show a progress bar.
    resume : bool
        Continue from ``out_dir``'s checkpoint (scenario must equal the recorded one).
    render : bool
        Write plots and 3-D renders at the end (needs ``out_dir``).
    measure : callable, optional
        Replaces the default morphometry (volume → dict of scalars); for tests and
        custom studies.
    volume : BoneVolume, optional
        Start from this volume instead of the scenario's phantom or input file.
    equilibrate : bool, optional
        Set the starting mineral to the steady state of the starting remodeling rates
        (tissue ages of a bone in equilibrium). Default: for phantoms yes, for measured
        volumes (an input file or ``volume``) no.

    Returns
    -------
    Result

    Raises
    ------
    RunInterrupted
        After SIGINT/SIGTERM, once a checkpoint is written.
    """
    from .remodel import RemodelParams, Remodeler  # noqa: PLC0415
    from .remodel.initial import equilibrate_mineral  # noqa: PLC0415

    t_start = time.perf_counter()
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    xp = be.xp
    out = Path(out_dir) if out_dir is not None else None
    measure = measure or _default_measure

    dt = scenario.step_days
    n_steps = scenario.n_steps
    spin_steps = int(math.ceil(scenario.spin_up_days / dt))
    course, activity = activity_for(scenario)

    start_step = 0
    checkpoint_state: dict[str, Any] | None = None
    if resume:
        if out is None:
            raise ValueError("resume needs the results folder of the interrupted run")
        checkpoint_state = _read_checkpoint(out, scenario)
        start_step = int(checkpoint_state["next_step"])

    params = RemodelParams()
    timings = {"setup": 0.0, "spin_up": 0.0, "steps": 0.0, "metrics": 0.0, "io": 0.0}
    if checkpoint_state is not None:
        rem = Remodeler.from_state(checkpoint_state["arrays"], params, scenario.seed, xp=xp, meta=checkpoint_state["engine"])
    else:
        host_volume = starting_volume(scenario) if volume is None else volume.to(np).copy()  # never alter the caller's
        if equilibrate if equilibrate is not None else (scenario.input is None and volume is None):
            host_volume = equilibrate_mineral(host_volume, activity.initial_rates, params, scenario.seed)
        Remodeler.check_fits(host_volume.shape, xp)
        rem = Remodeler(host_volume.to(xp), params, scenario.seed)
    timings["setup"] = time.perf_counter() - t_start

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "snapshots").mkdir(exist_ok=True)
        _write_run_json(out, scenario, be, status="running", timings=timings)
        if not resume:
            _write_courses(out, course, activity, scenario)
    table = _MetricsTable(out / METRICS_CSV, resume_day=start_step * dt if resume else None) if out else None
    rows: list[dict[str, Any]] = table.rows if table is not None else []

    def evaluate(day: int) -> None:
        t0 = time.perf_counter()
        period = scenario.period_at(day)
        row: dict[str, Any] = {"day": day, "year": round(day / DAYS_PER_YEAR, 6), "period": period.preset,
                               "preset": period.preset}
        row.update(measure(rem.volume))
        row.update({f"engine_{k}": v for k, v in dataclasses.asdict(rem.stats()).items()})
        rates = activity.at(float(day))
        row.update({f"rate_{k}": float(v) for k, v in dataclasses.asdict(rates).items()})
        state = course.at(float(day))
        row.update({k: float(v) for k, v in dataclasses.asdict(state).items() if isinstance(v, (int, float))})
        timings["metrics"] += time.perf_counter() - t0
        if table is not None:
            table.append(row)
        else:
            rows.append(row)

    with _StopFlag() as stop:
        if checkpoint_state is None:
            t0 = time.perf_counter()
            balanced = dataclasses.replace(activity.initial_rates, refill_trabecular=1.0, refill_cortical=1.0)
            for k in range(spin_steps):
                rem.step(k, balanced, dt)
            be.synchronize()
            timings["spin_up"] = time.perf_counter() - t0
            evaluate(0)
            if out is not None:
                save_snapshot(rem.volume, out / "snapshots" / "day_00000", 0)

        bar = _progress(n_steps, start_step, scenario, enabled=progress)
        t_loop = time.perf_counter()
        try:
            for k in range(start_step, n_steps):
                day0, day1 = k * dt, min((k + 1) * dt, scenario.days)
                rem.step(spin_steps + k, activity.at(day0 + 0.5 * dt), dt)
                if _crossed(day0, day1, scenario.fragments_every_days):
                    rem.remove_fragments()
                last = k == n_steps - 1
                if _crossed(day0, day1, scenario.metrics_every_days) or last:
                    evaluate(day1)
                    bar.set_postfix_str(_postfix(rows[-1]), refresh=False)
                if out is not None:
                    t_io = time.perf_counter()
                    if _crossed(day0, day1, scenario.snapshot_every_days) or last:
                        save_snapshot(rem.volume, out / "snapshots" / f"day_{day1:05d}", day1)
                    if (_crossed(day0, day1, scenario.checkpoint_every_days) or stop.signum is not None) and not last:
                        _write_checkpoint(out, rem, k + 1, scenario)
                    timings["io"] += time.perf_counter() - t_io
                bar.update(1)
                if stop.signum is not None and not last:
                    bar.close()
                    if out is None:
                        raise KeyboardInterrupt
                    timings["steps"] += time.perf_counter() - t_loop
                    _write_run_json(out, scenario, be, status="interrupted", timings=timings, day=day1)
                    raise RunInterrupted(out, day1)
        finally:
            bar.close()
    be.synchronize()
    timings["steps"] += time.perf_counter() - t_loop - timings["metrics"]
    final = rem.volume.to(np)
    result = Result(scenario, out, rows, final, be.name, be.device, timings)
    if out is not None:
        ckpt = out / CHECKPOINT
        if ckpt.exists():
            ckpt.unlink()
        if render:
            t0 = time.perf_counter()
            _write_figures(out, result, course, activity)
            timings["figures"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        _write_run_json(out, scenario, be, status="completed", timings=timings, day=scenario.days)
    return result


def _default_measure(volume: BoneVolume) -> dict[str, float]:
    from .metrics import morphometry  # noqa: PLC0415

    return morphometry(volume).as_row()


def _postfix(row: dict[str, Any]) -> str:
    parts = [f"year {row['year']:.2f}"]
    for key, label in (("bv_tv", "BV/TV"), ("bmd_mg_cm3", "BMD")):
        if key in row and isinstance(row[key], float):
            parts.append(f"{label} {row[key]:.4g}")
    return ", ".join(parts)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, scenario: Scenario, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, initial=initial, unit="step", desc=f"{scenario.name} {scenario.years:g} yr",
                dynamic_ncols=True, file=sys.stderr)


def _write_run_json(out: Path, scenario: Scenario, be: Backend, *, status: str, timings: dict[str, float],
                    day: int | None = None) -> None:
    import platform  # noqa: PLC0415

    data = {
        "status": status,
        "day_reached": day,
        "scenario": scenario.to_dict(),
        "seed": scenario.seed,
        "backend": be.name,
        "device": be.device,
        "device_details": be.details,
        "voxelbone_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "command": sys.argv,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "reproduce": f"voxelbone run --scenario {out / 'scenario.toml'} --out {out}",
    }
    from .scenario import scenario_to_toml  # noqa: PLC0415

    atomic_write(out / "scenario.toml", lambda fh: fh.write(scenario_to_toml(scenario).encode()))
    write_json(out / RUN_JSON, data)


def _write_courses(out: Path, course: Any, activity: Any, scenario: Scenario) -> None:
    """Daily hormone levels and remodeling rates as CSV."""
    daily = course.daily_mean()
    n = min(scenario.days + 1, daily.days.size, activity.days.size)
    htab = daily.as_table()
    hrows = [{k: float(v[i]) for k, v in htab.items()} for i in range(n)]
    arows = []
    for i in range(n):
        a = {"day": float(activity.days[i])}
        a.update({k: float(v) for k, v in dataclasses.asdict(activity.at(float(i))).items()})
        a.update({f"cells_{k}": float(v[i]) for k, v in activity.cells.items()})
        arows.append(a)
    for name, rws in (("hormones.csv", hrows), ("activity.csv", arows)):
        text = csv_text(list(rws[0].keys()), rws)
        atomic_write(out / name, lambda fh, t=text: fh.write(t.encode()))


def _write_checkpoint(out: Path, rem: Any, next_step: int, scenario: Scenario) -> None:
    arrays = {k: asnumpy(v) for k, v in rem.state_arrays().items()}
    meta = {"next_step": next_step, "scenario": scenario.to_dict(), "voxelbone_version": __version__,
            "engine": rem.state_meta()}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(out / CHECKPOINT, lambda fh: np.savez(fh, **arrays))


def _read_checkpoint(out: Path, scenario: Scenario) -> dict[str, Any]:
    path = out / CHECKPOINT
    if not path.exists():
        status = ""
        if (out / RUN_JSON).exists():
            status = json.loads((out / RUN_JSON).read_text()).get("status", "")
        if status == "completed":
            raise ValueError(f"{out} holds a completed run; nothing to resume")
        raise FileNotFoundError(f"no checkpoint in {out}: the run stopped before its first checkpoint; start it again")
    with np.load(path) as z:
        meta = json.loads(bytes(z["__meta__"]).decode())
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
    if meta["voxelbone_version"] != __version__:
        raise ValueError(f"{out} was written by voxelbone {meta['voxelbone_version']}, this is {__version__}; "
                         "resume it with that version or start again")
    recorded = Scenario.from_dict(meta["scenario"])
    if recorded != scenario:
        raise ValueError(f"the scenario differs from the one recorded in {out}; resume without changing it")
    return {"next_step": meta["next_step"], "arrays": arrays, "engine": meta["engine"]}


def _write_figures(out: Path, result: Result, course: Any, activity: Any) -> None:
    """Plots and renders at the end of a run (best effort per figure, errors reported)."""
    from . import plots, render  # noqa: PLC0415

    plots.plot_run(out)
    render.render_results(out)


# ------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------
def scenario_from_args(args: Any) -> Scenario:
    """Scenario from ``voxelbone run`` arguments (flags override the scenario file)."""
    base = load_scenario(args.scenario) if args.scenario else Scenario(name="default")
    periods = base.periods
    if args.preset:
        periods = (Period(args.preset, args.years or base.years),)
    elif args.years:
        if len(base.periods) > 1:
            raise ValueError("--years cannot change a scenario with several periods; edit its [[period]] tables")
        periods = (Period(base.periods[0].preset, args.years),)
    name = base.name
    if args.preset and not args.scenario:
        name = args.preset
    return base.with_overrides(
        name=name, periods=periods, site=args.site, seed=args.seed, size=args.size,
        voxel_size_um=args.voxel_size_um, step_days=args.step_days, metrics_every_days=args.metrics_every_days,
        snapshot_every_days=args.snapshot_every_days, input=str(args.input) if args.input else None,
        compartments=str(args.compartments) if getattr(args, "compartments", None) else None,
    )


def run_cli(args: Any, backend: Backend) -> int:
    """``voxelbone run``: simulate, print a summary table, return the exit status."""
    if args.resume:
        run_json = Path(args.resume) / RUN_JSON
        if not run_json.exists():
            raise FileNotFoundError(f"{args.resume} is not a voxelbone results folder (no {RUN_JSON})")
        scenario = Scenario.from_dict(json.loads(run_json.read_text())["scenario"])
        out = Path(args.resume)
    else:
        scenario = scenario_from_args(args)
        out = args.out
        if (out / CHECKPOINT).exists():
            raise ValueError(f"{out} holds an interrupted run; continue it with --resume {out} or choose another --out")
    print(f"voxelbone {__version__}: {scenario.name} — site {scenario.site}, "
          f"{' → '.join(f'{p.preset} {p.years:g} yr' for p in scenario.periods)}, backend {backend.name} ({backend.device})",
          file=sys.stderr)
    try:
        result = simulate(scenario, out, backend=backend, progress=not args.quiet, resume=bool(args.resume),
                          render=not args.no_render)
    except RunInterrupted as exc:
        print(f"voxelbone run: {exc}", file=sys.stderr)
        return 130
    print(summary_table(result.rows, scenario))
    print(f"results in {out}/ (metrics.csv, run.json, plots/, renders/)")
    return 0


def summary_table(rows: list[dict[str, Any]], scenario: Scenario) -> str:
    """Start, end and annualised change of the key metrics, as aligned text."""
    first, last = rows[0], rows[-1]
    years = max(float(last["year"]) - float(first["year"]), 1e-9)
    lines = [f"{'metric':<8} {'day 0':>12} {'year ' + format(float(last['year']), '.2f'):>12} {'change %/yr':>12}"]
    for key, label, unit, scale in SUMMARY_METRICS:
        if key not in first:
            continue
        a, b = float(first[key]), float(last[key])
        rate = (b - a) / abs(a) / years * 100 if a not in (0.0,) and math.isfinite(a) and math.isfinite(b) else float("nan")
        lines.append(f"{label:<8} {a * scale:>12.4g} {b * scale:>12.4g} {rate:>+12.2f}   {unit}")
    lines.append(f"(voxel size {rows[0].get('voxel_size_um', scenario.voxel_size_um)} µm)")
    return "\n".join(lines)
