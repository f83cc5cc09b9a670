"""The time loop: Scenario → results folder.

``simulate`` is the one place where time advances. It

1. builds the starting volume (phantom or micro-CT file) and moves it to the device once;
2. turns the scenario's therapy periods into a hormone course and that into remodeling
   rates (cheap, host side, precomputed for the whole run);
3. steps the remodeling engine, handing it scalars only (no host↔device traffic per step);
4. every ``metrics_every_days`` computes the morphometry on the device and copies the
   scalars back, appending one row to the metrics table (flushed, so an interruption loses
   nothing already measured);
5. writes snapshots when asked, checkpoints every ``checkpoint_every_days`` and on
   SIGINT/SIGTERM, so ``--resume`` continues to a result identical to an uninterrupted run
   (every random draw is keyed by (seed, step, voxel));
6. records the run as completed (the checkpoint removed), then draws the figures, each on
   its own: a figure that fails is reported and does not undo the run.

What goes where in the results folder is :class:`~voxelbone.runfolder.RunFolder`'s
business; the command line is in :mod:`voxelbone.cli`.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .backend import Backend, StepTimer, asnumpy, get_backend
from .progress import progress_bar
from .runfolder import RunFolder, RunState
from .scenario import Scenario
from .units import DAYS_PER_YEAR
from .volume import BoneVolume

__all__ = ["Result", "RunInterrupted", "simulate"]


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
    from .io import load_volume  # noqa: PLC0415 — numba/scipy/scikit-image cost; `import voxelbone` loads this module
    from .phantom import make_phantom  # noqa: PLC0415 — numba/scipy/scikit-image cost; `import voxelbone` loads this module
    if scenario.input:
        vol = load_volume(scenario.input, voxel_size_um=scenario.voxel_size_um, compartments=scenario.compartments)
        vol.site = vol.site or scenario.site
        return vol
    return make_phantom(scenario.site, size=scenario.size, voxel_size_um=scenario.voxel_size_um, seed=scenario.seed)


def activity_for(scenario: Scenario) -> tuple[Any, Any]:
    """Hormone course (hourly) and cell activity (daily) for the scenario's chain of periods."""
    from .biology import cell_activity  # noqa: PLC0415 — numba/scipy/scikit-image cost; `import voxelbone` loads this module
    from .presets import course_for_periods  # noqa: PLC0415 — numba/scipy/scikit-image cost; `import voxelbone` loads this module
    periods = [(p.preset, p.years) for p in scenario.periods]
    course = course_for_periods(periods, extra_days=scenario.step_days + 1)
    return course, cell_activity(course, scenario.site)


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
def _caveats(scenario: Scenario) -> list[str]:
    """What the sample makes less certain, for ``run.json``: a phantom's voxel size outside the
    calibrated range (a scan's own caveats are in its ``input_scan``) and every metric whose
    representative volume exceeds the sample (:func:`voxelbone.rve.rve_warnings`)."""
    from .rve import rve_warnings  # noqa: PLC0415
    from .voxel_sizes import voxel_size_caveat  # noqa: PLC0415

    out = []
    if scenario.input is None and scenario.voxel_size_um is not None:
        caveat = voxel_size_caveat(scenario.voxel_size_um)
        out += [caveat] if caveat else []
    return out + rve_warnings(scenario)


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
        checkpoints). A folder holding a run of another scenario is refused and left as
        it is; one holding a run of this scenario is run again.
    backend : str or Backend, optional
        ``"numpy"``, ``"cupy"`` or ``"auto"`` (default: ``$VOXELBONE_BACKEND`` or auto).
    progress : bool
        Show the progress on stderr (a bar on a terminal, a plain line every 5 % otherwise).
    resume : bool
        Continue from ``out_dir``'s checkpoint (scenario must equal the recorded one).
    render : bool
        Draw the plots and 3-D renders once the run is recorded as completed (needs
        ``out_dir``); each figure is drawn on its own, and one that fails is named with its
        error in ``run.json`` (``figure_errors``) and on stderr.
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
    ValueError
        A step longer than a remodeling phase, a preset that changes the load with mechanics
        off (:func:`~voxelbone.presets.check_load_needs_mechanics`), or ``out_dir`` holding a
        run of another scenario: raised before anything is written.
    """
    from .figures import draw_run_figures  # noqa: PLC0415 — numba/scipy/scikit-image cost; `import voxelbone` loads this module
    from .remodel import RemodelParams, Remodeler  # noqa: PLC0415 — numba/scipy/scikit-image cost; `import voxelbone` loads this module
    from .remodel.initial import equilibrate_mineral  # noqa: PLC0415 — numba/scipy/scikit-image cost; `import voxelbone` loads this module
    from .presets import check_load_needs_mechanics  # noqa: PLC0415 — the hormone layer's Numba cost, as above
    t_start = time.perf_counter()
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    folder = RunFolder(out_dir) if out_dir is not None else None
    measure = measure or _default_measure

    dt = scenario.step_days
    n_steps = scenario.n_steps
    spin_steps = int(math.ceil(scenario.spin_up_days / dt))
    course, activity = activity_for(scenario)

    params = RemodelParams()
    params.check_step(dt)  # bad input fails before the folder is touched
    check_load_needs_mechanics(scenario)
    checkpoint = None
    if resume:
        if folder is None:
            raise ValueError("resume needs the results folder of the interrupted run")
        checkpoint = folder.read_checkpoint(scenario)
    elif folder is not None:
        folder.refuse_other_scenario(scenario)
    start_step = checkpoint.next_step if checkpoint is not None else 0

    timings = {"setup": 0.0, "spin_up": 0.0, "steps": 0.0, "metrics": 0.0, "io": 0.0}
    if checkpoint is not None:
        rem = Remodeler.from_state(checkpoint.arrays, params, scenario.seed, xp=be.xp, meta=checkpoint.engine)
    else:
        host_volume = starting_volume(scenario) if volume is None else volume.to(np).copy()  # never alter the caller's
        if equilibrate if equilibrate is not None else (scenario.input is None and volume is None):
            host_volume = equilibrate_mineral(host_volume, activity.initial_rates, params, scenario.seed)
        Remodeler.check_fits(host_volume.shape, be.xp)
        rem = Remodeler(host_volume.to(be.xp), params, scenario.seed)
    timings["setup"] = time.perf_counter() - t_start

    if folder is not None:
        folder.create()
        folder.write_status(RunState.RUNNING, scenario=scenario, backend=be, timings=timings)
        if not resume:
            folder.write_courses(course, activity, scenario.days)
            folder.update_info(input_scan=host_volume.meta.get("scan"), caveats=_caveats(scenario))
    table = folder.metrics_table(resume_day=start_step * dt if resume else None) if folder is not None else None
    rows: list[dict[str, Any]] = table.rows if table is not None else []
    mech = _Mechanics(scenario, rem, course, timings, checkpoint.engine if checkpoint is not None else None) \
        if scenario.fe_every_days > 0 else None

    # the site's DXA-equivalent change is measured against the day-0 compartments; a resumed
    # run rebuilds them from the day-0 snapshot, so it reports the same numbers
    reference = _day0_reference(folder, scenario, be.xp) if checkpoint is not None else None

    def evaluate(day: int) -> None:
        nonlocal reference
        be.synchronize()  # queued steps are charged to the steps, not to the metrics
        t0 = time.perf_counter()
        period = scenario.period_at(day)
        row: dict[str, Any] = {"day": day, "year": round(day / DAYS_PER_YEAR, 6), "period": period.preset,
                               "preset": period.preset}
        if reference is None:
            reference = _areal_reference(rem.volume, scenario)
        row.update(measure(rem.volume))
        row["abmd_pct"] = reference.abmd_pct(rem.volume)
        if mech is not None:
            row["e_app_z_mpa"] = mech.e_app_mpa(day)
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

    def write_files(day0: int, day1: int, last: bool, k: int, stopping: bool) -> None:
        snapshot = _crossed(day0, day1, scenario.snapshot_every_days) or last
        ckpt = (_crossed(day0, day1, scenario.checkpoint_every_days) or stopping) and not last
        if folder is None or not (snapshot or ckpt):
            return
        be.synchronize()
        t0 = time.perf_counter()
        if snapshot:
            folder.save_snapshot(rem.volume, day1)
        if ckpt:
            engine = rem.state_meta() if mech is None else {**rem.state_meta(), "mechanostat": mech.state()}
            folder.write_checkpoint({name: asnumpy(a) for name, a in rem.state_arrays().items()}, next_step=k + 1,
                                    scenario=scenario, engine=engine)
        timings["io"] += time.perf_counter() - t0

    timer = StepTimer(be)
    try:
        with _StopFlag() as stop:
            if checkpoint is None:
                t0 = time.perf_counter()
                balanced = dataclasses.replace(activity.initial_rates, refill_trabecular=1.0, refill_cortical=1.0)
                if mech is not None and spin_steps > 0:
                    mech.before_spin_up()
                for k in range(spin_steps):
                    rem.step(k, balanced, dt)
                be.synchronize()
                timings["spin_up"] = time.perf_counter() - t0
                if mech is not None:
                    mech.update(0, calibrate=True)
                evaluate(0)
                if folder is not None:
                    folder.save_snapshot(rem.volume, 0)
            elif mech is not None:
                mech.update(start_step * dt)
            bar = progress_bar(n_steps, start_step, desc=f"{scenario.name} {scenario.years:g} yr", enabled=progress)
            try:
                for k in range(start_step, n_steps):
                    day0, day1 = k * dt, min((k + 1) * dt, scenario.days)
                    last = k == n_steps - 1
                    if mech is not None:
                        mech.follow_load(day0)
                    with timer:  # the last step ends with the run: it is cut short when the days are not whole steps
                        rem.step(spin_steps + k, activity.at(0.5 * (day0 + day1)), day1 - day0)
                        if _crossed(day0, day1, scenario.fragments_every_days):
                            rem.remove_fragments()
                    if mech is not None and _crossed(day0, day1, scenario.fe_every_days) and not last:
                        mech.update(day1)
                    if _crossed(day0, day1, scenario.metrics_every_days) or last:
                        evaluate(day1)
                        bar.set_postfix_str(_postfix(rows[-1]), refresh=False)
                    write_files(day0, day1, last, k, stop.signum is not None)
                    bar.update(1)
                    if stop.signum is not None and not last:
                        bar.close()
                        if folder is None:
                            raise KeyboardInterrupt
                        timings["steps"] = timer.total_s()
                        folder.write_status(RunState.INTERRUPTED, scenario=scenario, backend=be, timings=timings,
                                            day=day1)
                        raise RunInterrupted(folder.path, day1)
            finally:
                bar.close()
    except (RunInterrupted, KeyboardInterrupt):
        raise
    except Exception as exc:
        if folder is not None:
            folder.write_status(RunState.FAILED, scenario=scenario, backend=be, timings=timings,
                                error=f"{type(exc).__name__}: {exc}")
        raise
    timings["steps"] = timer.total_s()
    result = Result(scenario, folder.path if folder is not None else None, rows, rem.volume.to(np), be.name, be.device,
                    timings)
    if folder is not None:
        # the results are final before any figure is drawn: a figure that fails loses nothing
        timings["total"] = time.perf_counter() - t_start
        folder.write_status(RunState.COMPLETED, scenario=scenario, backend=be, timings=timings, day=scenario.days)
        folder.remove_checkpoint()
        if render:
            t0 = time.perf_counter()
            drawn = draw_run_figures(folder)
            timings["figures"] = time.perf_counter() - t0
            timings["total"] = time.perf_counter() - t_start
            folder.update_info(figure_errors=drawn.errors, timings_s=timings)
    return result


class _Mechanics:
    """Load-driven remodelling in the loop (:mod:`voxelbone.remodel.mechanostat`).

    ``before_spin_up()`` solves the starting volume and steers the spin-up's BMUs at the
    habitual load, so the remodelling space open on day 0 lies where the mechanostat puts
    it (BMUs started by blind activation and refilled by the mechanostat would, in flight,
    refill the loaded struts more than the mean: a spurious gain in the first months).
    ``update(day)`` solves the load case on the current volume (warm-started), fixes the
    set points on day 0 (``calibrate=True``), and hands the engine its modulation; ``follow_load``
    refreshes the modulation when a period with another ``load_scale`` begins. Metric
    evaluations report ``e_app_z_mpa`` of the volume they measure (a solve of its own on
    days between mechanics solves). A resumed run solves again on the day it resumes, so
    it matches an uninterrupted run to the solver tolerance, not bit for bit.
    """

    def __init__(self, scenario: Scenario, rem: Any, course: Any, timings: dict[str, float],
                 engine_meta: dict[str, Any] | None) -> None:
        from .presets import load_preset  # noqa: PLC0415
        from .remodel.mechanostat import Mechanostat  # noqa: PLC0415

        self.scenario, self.rem, self.course, self.timings = scenario, rem, course, timings
        self.mech = Mechanostat()
        if engine_meta and engine_meta.get("mechanostat"):
            self.mech.restore(engine_meta["mechanostat"])
        self.load = {p.preset: load_preset(p.preset).load_scale for p in scenario.periods}
        self.solved_day: int | None = None
        self.load_used: float | None = None
        timings.setdefault("mechanics", 0.0)

    def _cavities(self) -> Any:
        from .remodel.mechanostat import bmus_in_flight  # noqa: PLC0415

        return bmus_in_flight(self.rem.state)

    def _solve(self, day: int) -> None:
        t0 = time.perf_counter()
        self.mech.solve(self.rem.volume, cavities=self._cavities())
        self.solved_day = day
        self.timings["mechanics"] += time.perf_counter() - t0

    def _modulate(self, day: int) -> None:
        e2 = float(self.course.at(float(day)).estradiol_pg_ml)
        if self.mech.setpoint_resorption is None:
            self.mech.calibrate(self.rem.volume, e2, cavities=self._cavities())
        self.load_used = self.load[self.scenario.period_at(day).preset]
        self.rem.modulation = self.mech.modulation(self.load_used, e2)

    def before_spin_up(self) -> None:
        """Solve the starting volume and steer the spin-up at the habitual load (``load_scale`` 1)."""
        self._solve(0)
        e2 = float(self.course.at(0.0).estradiol_pg_ml)
        self.mech.calibrate(self.rem.volume, e2, cavities=self._cavities())
        self.rem.modulation = self.mech.modulation(1.0, e2)

    def update(self, day: int, calibrate: bool = False) -> None:
        """Solve on today's volume and steer the BMUs by its signal (``calibrate``: set points from it)."""
        self._solve(day)
        if calibrate:
            self.mech.setpoint_resorption = None
        self._modulate(day)

    def follow_load(self, day: int) -> None:
        """New modulation (same signal) when the period's load scale differs from the one in use."""
        if self.load[self.scenario.period_at(day).preset] != self.load_used:
            self._modulate(day)

    def e_app_mpa(self, day: int) -> float:
        """Apparent modulus along z of the current volume (MPa)."""
        if self.solved_day == day:
            return float(self.mech.result.e_app_mpa)
        t0 = time.perf_counter()
        res = self.mech.solve(self.rem.volume, keep=False)  # a measurement: the BMUs' signal stays
        self.timings["mechanics"] += time.perf_counter() - t0
        return float(res.e_app_mpa)

    def state(self) -> dict[str, Any]:
        """Set points for the checkpoint."""
        return self.mech.state()


def _areal_reference(volume: BoneVolume, scenario: Scenario) -> Any:
    """The day-0 compartments and the DXA weights of the scenario's site."""
    from .metrics import ArealBmdReference  # noqa: PLC0415 — numba/scipy/scikit-image cost; `import voxelbone` loads this module
    from .sites import get_site  # noqa: PLC0415

    return ArealBmdReference.of(volume, get_site(scenario.site).dxa)


def _day0_reference(folder: RunFolder | None, scenario: Scenario, xp: Any) -> Any:
    """The day-0 reference of a resumed run, from its day-0 snapshot."""
    from .results import load_snapshot  # noqa: PLC0415

    day0 = [path for day, path in (folder.snapshots() if folder is not None else []) if day == 0]
    if not day0:
        raise ValueError(f"cannot resume {folder}: its day-0 snapshot (the reference of abmd_pct) is missing")
    return _areal_reference(load_snapshot(day0[0]).to(xp), scenario)


def _default_measure(volume: BoneVolume) -> dict[str, float]:
    from .metrics import morphometry  # noqa: PLC0415 — numba/scipy/scikit-image cost; `import voxelbone` loads this module

    return morphometry(volume).as_row()


def _postfix(row: dict[str, Any]) -> str:
    parts = [f"year {row['year']:.2f}"]
    for key, label in (("bv_tv", "BV/TV"), ("bmd_mg_cm3", "BMD")):
        if key in row and isinstance(row[key], float):
            parts.append(f"{label} {row[key]:.4g}")
    return ", ".join(parts)
