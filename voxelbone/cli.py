"""Command line: ``voxelbone run|presets|compare|render|sweep|bench|calibrate``.

All argument parsing and printing lives here; each subcommand is a thin layer over the
Python API (library modules take typed arguments and return values). Errors a user can
fix (bad arguments or combinations of them, missing files, a GPU that is not there) are
printed as one line and exit with status 2, never as a traceback. The scripts in
``benchmarks/`` and ``python -m voxelbone.calibration`` call :func:`main`.

The subcommands' heavy modules (simulation, figures, sweeps, benchmark cases) are imported
when the subcommand runs: ``voxelbone --help`` and argument errors then answer without
importing Numba, matplotlib, PyVista or Dask (~2 s).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from ._version import __version__
from .backend import BackendError, cupy_available, get_backend
from .bench import compare_records, format_table, load_record, write_record
from .runfolder import RunFolder, RunState, StudyFolder
from .intervals import POINT_METRICS
from .rve import rve_warnings
from .scenario import SUGGESTED_FE_EVERY_DAYS, Period, Scenario, load_scenario
from .units import DAYS_PER_YEAR
from .volume import COMPARTMENT_CHOICES

__all__ = ["UsageError", "build_parser", "main", "replicates_summary_table", "summary_table"]

#: (column, label, unit, scale) of the table printed at the end of ``voxelbone run``
SUMMARY_METRICS: tuple[tuple[str, str, str, float], ...] = (
    ("bv_tv", "BV/TV", "", 1.0),
    ("tb_th_um", "Tb.Th", "µm", 1.0),
    ("tb_sp_um", "Tb.Sp", "µm", 1.0),
    ("tb_n_per_mm", "Tb.N", "/mm", 1.0),
    ("conn_d_per_mm3", "Conn.D", "/mm³", 1.0),
    ("ct_th_um", "Ct.Th", "µm", 1.0),
    ("ct_po", "Ct.Po", "%", 100.0),
    ("tb_vbmd_mg_cm3", "Tb.vBMD", "mg HA/cm³", 1.0),
    ("ct_vbmd_mg_cm3", "Ct.vBMD", "mg HA/cm³", 1.0),
    ("bmd_mg_cm3", "BMD cube", "mg HA/cm³", 1.0),
    ("abmd_pct", "aBMD", "% of day 0 (DXA-equivalent): change in points/yr", 1.0),
)
#: Metrics that are already a change from day 0 (their annual change is a difference, not a ratio).
DEFAULT_RUN_DIR = Path("results/run")

EPILOG = """examples:
  voxelbone run                                  default scenario into results/run
  voxelbone run --preset trt --site femoral_neck --years 2 --out results/trt
  voxelbone presets                              list therapy presets
  voxelbone presets show trt                     regimen, mean hormone levels, hormone plot
  voxelbone compare postmenopausal_untreated mht_estradiol_progesterone --years 2 --out results/cmp
  voxelbone render results/run                   re-render a finished run
  voxelbone render results/run --color sed       bone coloured by strain energy density (micro-FE)
  voxelbone run --preset bed_rest --fe-every-days 28 --out results/bed   disuse: load-driven remodelling on
  voxelbone run --replicates 4 --size 96 --years 1 --out results/reps   4 seeds in parallel, 95 % intervals
  voxelbone sweep samples/sweep_small.toml --out results/sweep
  voxelbone bench --quick --json bench.json      benchmark (table + JSON record)
  voxelbone calibrate --seeds 1                  model vs clinical BMD changes
"""


class UsageError(Exception):
    """A bad argument or combination of arguments; printed without a traceback, exit status 2."""


def _positive_int(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return v


def _days_between_solves(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of days >= 0 (0: mechanics off), got {text}")
    return v


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _replicate_count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of replicates ≥ 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of replicates ≥ 1, got {text}")
    return v


def _add_replicate_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replicates", type=_replicate_count, default=None, metavar="N",
                   help="run N independent replicates (own seeds, derived from --seed) in parallel and report means "
                        "with 95 %% intervals (OUT/summary.csv)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="local worker processes for the replicates (default: one per core or GPU)")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="simulate a scenario and write metrics, plots and renders",
        description=(
            "Simulate bone remodeling under a therapy preset (or a scenario file) and write "
            "DIR/metrics.csv (one row per metric evaluation), DIR/run.json (what made the run), "
            "plots and renders as PNG."
        ),
    )
    p.add_argument("--preset", default=None, help="therapy preset name (see 'voxelbone presets'); default postmenopausal_untreated")
    p.add_argument("--scenario", type=Path, default=None, help="scenario TOML file (overrides the defaults; flags override the file)")
    p.add_argument("--site", default=None, help="phantom site: lumbar_spine or femoral_neck")
    p.add_argument("--input", type=Path, default=None,
                   help="start from a micro-CT scan instead of a phantom: .npy/.npz, TIFF stack or folder, NIfTI, NRRD, "
                        ".mha/.mhd, Scanco .aim/.isq, or a DICOM series folder (NRRD/MHA/Scanco/DICOM need "
                        "'pip install voxelbone[scans]'); voxel sizes 5-100 µm, with a warning outside 10-40 µm")
    p.add_argument("--compartments", default=None, metavar="auto|trabecular|FILE",
                   help="compartments of --input: auto (default: contour the bone; a volume cut inside trabecular "
                        "bone, with no periosteal shell, is all trabecular), trabecular, or a region file of the "
                        "scan's shape (0 outside, 1 trabecular, 2 cortical)")
    p.add_argument("--seed", type=int, default=None, help="random seed (structure and remodeling)")
    p.add_argument("--size", type=_positive_int, default=None, help="phantom edge length in voxels")
    p.add_argument("--voxel-size-um", type=_positive_float, default=None,
                   help="voxel edge in micrometres, 5-100 (10-40 is the calibrated range; outside it a warning says "
                        "what is less accurate); with --input it overrides the file's header, with a warning")
    p.add_argument("--years", type=_positive_float, default=None, help="simulated time in years")
    p.add_argument("--step-days", type=_positive_int, default=None, help="remodeling time step in days (default 1)")
    p.add_argument("--metrics-every-days", type=_positive_int, default=None, help="days between metric evaluations")
    p.add_argument("--snapshot-every-days", type=_positive_int, default=None, help="days between saved volumes")
    p.add_argument("--fe-every-days", type=_days_between_solves, default=None, metavar="N",
                   help=f"load-driven remodelling: days between micro-FE solves (suggested {SUGGESTED_FE_EVERY_DAYS}; "
                        "0: off, the default); needed by presets that change the load (bed_rest, spaceflight)")
    p.add_argument("--backend", choices=["auto", "numpy", "cupy"], default=None, help="array backend (default: $VOXELBONE_BACKEND or auto)")
    p.add_argument("--no-render", action="store_true", help="skip 3-D renders (plots and metrics only)")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue an interrupted run from its folder (a completed run: says so, exit 0)")
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_RUN_DIR})")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    _add_replicate_flags(p)
    p.set_defaults(func=_cmd_run)


#: ``run`` flags that define a scenario, which ``--resume`` takes from the folder instead
_SCENARIO_FLAGS = ("preset", "scenario", "site", "input", "seed", "size", "voxel_size_um", "years", "step_days",
                   "metrics_every_days", "snapshot_every_days", "fe_every_days", "out")


def _absolute(path: str | Path | None) -> str | None:
    """A file the command line names, as an absolute path: the run's ``scenario.toml`` then
    reproduces it from any folder."""
    return None if path is None else str(Path(path).resolve())


def _compartments(value: str | None) -> str | None:
    """``--compartments``: a choice as it is, a region file as an absolute path."""
    return value if value in (None, *COMPARTMENT_CHOICES) else _absolute(value)


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario of ``voxelbone run`` arguments (flags override the scenario file)."""
    base = load_scenario(args.scenario) if args.scenario else Scenario(name="default")
    periods = base.periods
    if args.preset:
        periods = (Period(args.preset, args.years or base.years),)
    elif args.years:
        if len(base.periods) > 1:
            raise UsageError("--years cannot change a scenario with several periods; edit its [[period]] tables")
        periods = (Period(base.periods[0].preset, args.years),)
    name = base.name
    if args.preset and not args.scenario:
        name = args.preset
    from .presets import check_load_needs_mechanics, load_preset  # deferred, see the module docstring  # noqa: PLC0415

    for period in periods:  # an unknown preset fails here, before the run is announced
        load_preset(period.preset)
    scenario = base.with_overrides(
        name=name, periods=periods, site=args.site, seed=args.seed, size=args.size,
        voxel_size_um=args.voxel_size_um, step_days=args.step_days, metrics_every_days=args.metrics_every_days,
        snapshot_every_days=args.snapshot_every_days, input=_absolute(args.input),
        compartments=_compartments(args.compartments),
        fe_every_days=args.fe_every_days,
    )
    check_load_needs_mechanics(scenario)  # so is a disuse preset with mechanics off
    if scenario.input is None:  # and a phantom too small for its site, before the sample-size warnings
        from .phantom import check_phantom_fits  # deferred, see the module docstring  # noqa: PLC0415

        check_phantom_fits(scenario.site, scenario.size, scenario.voxel_size_um)
    return scenario


def summary_table(rows: Sequence[dict[str, Any]], voxel_size_um: float | None = None) -> str:
    """Start, end and annualised change of the key metrics, as aligned text."""
    first, last = rows[0], rows[-1]
    years = max(float(last["year"]) - float(first["year"]), 1e-9)
    lines = [f"{'metric':<8} {'day 0':>12} {'year ' + format(float(last['year']), '.2f'):>12} {'change %/yr':>12}"]
    for key, label, unit, scale in SUMMARY_METRICS:
        if key not in first:
            continue
        a, b = float(first[key]), float(last[key])
        if key in POINT_METRICS:
            rate = (b - a) / years
        else:
            rate = (b - a) / abs(a) / years * 100 if a != 0.0 and math.isfinite(a) and math.isfinite(b) else float("nan")
        lines.append(f"{label:<8} {a * scale:>12.4g} {b * scale:>12.4g} {rate:>+12.2f}   {unit}")
    lines.append(f"(voxel size {rows[0].get('voxel_size_um', voxel_size_um)} µm; one sample, no interval: "
                 "--replicates N gives each change with its 95 % interval)")
    return "\n".join(lines)


def replicates_summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """Means at the start and the end and the mean change with its 95 % interval, from ``summary.csv`` rows.

    A change whose interval includes zero is marked ``unresolved`` (the spread between
    replicates is larger than the change).
    """
    from .replicates import summary_intervals  # deferred, see the module docstring  # noqa: PLC0415

    by_metric = {str(r["metric"]): r for r in rows}
    intervals = summary_intervals(rows)
    n = int(rows[0]["n_replicates"]) if rows else 0
    lines = [f"{'metric':<8} {'day 0':>11} {'end':>11}   change %/yr, mean [95 % interval] of {n} replicates"]
    for key, label, unit, scale in SUMMARY_METRICS:
        if key not in by_metric:
            continue
        r = by_metric[key]
        lines.append(f"{label:<8} {float(r['start_mean']) * scale:>11.4g} {float(r['end_mean']) * scale:>11.4g}   "
                     f"{intervals[key].format():<36} {unit}")
    return "\n".join(lines)


def _print_rve_warnings(scenario: Scenario) -> None:
    for text in rve_warnings(scenario, [key for key, *_ in SUMMARY_METRICS]):
        print(f"voxelbone run: warning: {text}", file=sys.stderr)


def _cmd_run_replicates(args: argparse.Namespace) -> int:
    from .replicates import resume_replicates, simulate_replicates  # deferred, see the module docstring  # noqa: PLC0415
    from .sweep import RunOptions  # noqa: PLC0415

    options = RunOptions(n_workers=args.workers, backend=args.backend, render=not args.no_render,
                         progress=_replicate_progress(args))
    if args.resume:
        study = StudyFolder(args.resume)
        info = study.replicates_info()
        if args.replicates is not None and args.replicates != int(info["n_replicates"]):
            raise UsageError(f"{study.path} holds {info['n_replicates']} replicates; leave out --replicates to "
                             "resume them")
        print(f"voxelbone {__version__}: resuming the replicates in {study.path}", file=sys.stderr)
        result = resume_replicates(study.path, options=options)
    else:
        scenario = scenario_from_args(args)
        study = StudyFolder(args.out or DEFAULT_RUN_DIR)
        get_backend(args.backend)
        _print_rve_warnings(scenario)
        print(f"voxelbone {__version__}: {scenario.name} — {args.replicates} replicates in parallel, site "
              f"{scenario.site}, {' → '.join(f'{p.preset} {p.years:g} yr' for p in scenario.periods)}", file=sys.stderr)
        result = simulate_replicates(scenario, study.path, args.replicates, options=options)
    for rid, err in result.errors.items():
        print(f"voxelbone run: replicate {rid} failed: {err}", file=sys.stderr)
    if not result.completed:
        return 1
    print(replicates_summary_table(result.summary))
    print(f"summary: {study.summary_csv}; one run folder per replicate in {study.runs_dir}/")
    return 0


def _replicate_progress(args: argparse.Namespace) -> Callable[[str, str], None] | None:
    if args.quiet:
        return None
    return lambda rid, status: print(f"{status:>10}  {rid}", file=sys.stderr, flush=True)


def _cmd_run(args: argparse.Namespace) -> int:
    from .simulate import RunInterrupted, simulate  # deferred, see the module docstring  # noqa: PLC0415

    replicated = bool(args.resume) and StudyFolder(args.resume).holds_replicates()
    if args.resume and args.replicates is not None and not replicated:
        raise UsageError(f"{args.resume} holds no replicates (no replicates.json); resume it without "
                         "--replicates, or start replicates in a new --out folder")
    if args.workers is not None and args.replicates is None and not replicated:
        raise UsageError("--workers sizes the cluster of --replicates; give --replicates N too")
    if args.replicates is not None or replicated:
        if args.resume:
            given = [f"--{name.replace('_', '-')}" for name in _SCENARIO_FLAGS if getattr(args, name) is not None]
            if given:
                raise UsageError(f"--resume continues the replicates recorded in {args.resume}; "
                                 f"leave out {', '.join(given)}")
        return _cmd_run_replicates(args)
    backend = get_backend(args.backend)  # fail early and clearly on a forced, unusable backend
    if args.resume:
        given = [f"--{name.replace('_', '-')}" for name in _SCENARIO_FLAGS if getattr(args, name) is not None]
        if given:
            raise UsageError(f"--resume continues the run recorded in {args.resume} (its scenario and folder); "
                             f"leave out {', '.join(given)}")
        folder = RunFolder(args.resume)
        state = folder.state()
        if state is RunState.EMPTY:
            raise FileNotFoundError(f"{args.resume} is not a voxelbone results folder (no run.json there)")
        scenario = folder.recorded_scenario()
        if state is RunState.COMPLETED:
            print(f"voxelbone run: {folder.path} holds a completed run ({scenario.name}, day "
                  f"{folder.info().get('day_reached')}); nothing to resume", file=sys.stderr)
            rows = folder.read_metrics()
            if rows:
                print(summary_table(rows, scenario.voxel_size_um))
            return 0
        if state is not RunState.INTERRUPTED:
            raise FileNotFoundError(f"{folder.path} holds no checkpoint (the run is {state.value}: it stopped before "
                                    "its first checkpoint); start it again with --out")
    else:
        scenario = scenario_from_args(args)
        folder = RunFolder(args.out or DEFAULT_RUN_DIR)
        if folder.state() is RunState.INTERRUPTED:
            raise UsageError(f"{folder.path} holds an interrupted run; continue it with --resume {folder.path} "
                             "or choose another --out")
        if StudyFolder(folder.path).holds_replicates():
            raise UsageError(f"{folder.path} holds replicates; add --replicates N, --resume {folder.path}, "
                             "or choose another --out")
        folder.refuse_other_scenario(scenario)
        _print_rve_warnings(scenario)
    print(f"voxelbone {__version__}: {scenario.name} — site {scenario.site}, "
          f"{' → '.join(f'{p.preset} {p.years:g} yr' for p in scenario.periods)}, backend {backend.name} ({backend.device})",
          file=sys.stderr)
    try:
        result = simulate(scenario, folder.path, backend=backend, progress=not args.quiet, resume=bool(args.resume),
                          render=not args.no_render)
    except RunInterrupted as exc:
        print(f"voxelbone run: {exc}", file=sys.stderr)
        return 130
    print(summary_table(result.rows, scenario.voxel_size_um))
    print(f"results in {folder.path}/")
    return 0


def _add_presets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list therapy presets, or show one", description="List therapy presets with population, evidence level and what they do; 'presets show NAME' prints the regimen and mean hormone levels and plots the hormone time courses.")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="preset name or TOML file (for 'show')")
    p.add_argument("--years", type=_positive_float, default=1.0, help="years of hormone course to plot (show)")
    p.add_argument("--out", type=Path, default=None, help="folder for the hormone plot (show; default results/presets)")
    p.set_defaults(func=_cmd_presets)


def _regimen_lines(preset: Any) -> list[str]:
    if not preset.drugs:
        return ["  (no drugs: the population's own hormone levels)"]
    out = []
    for d in preset.drugs:
        dose = f"{d.dosing.dose_mg * 1000:g} µg" if d.dosing.dose_mg < 1 else f"{d.dosing.dose_mg:g} mg"
        every = "daily" if d.dosing.every_days == 1 else f"every {d.dosing.every_days:g} days"
        extra = f" from day {d.dosing.start_day:g}" if d.dosing.start_day else ""
        extra += f" for {d.dosing.duration_days:g} days" if d.dosing.duration_days else ""
        out.append(f"  {d.spec.name:<26} {dose:>9} {every:<16} {d.dosing.route}{extra}")
    return out


def _cmd_presets(args: argparse.Namespace) -> int:
    from .plots import plot_hormones  # deferred, see the module docstring  # noqa: PLC0415
    from .presets import list_presets, load_preset  # deferred, see the module docstring  # noqa: PLC0415

    if args.action == "list":
        if args.name:
            raise UsageError(f"'presets list' takes no name; to see one preset: voxelbone presets show {args.name}")
        rows = list_presets()
        w = max(len(p.name) for p in rows)
        print(f"{'preset':<{w}}  {'population':<22} {'evidence':<12} summary")
        for p in rows:
            print(f"{p.name:<{w}}  {p.population.name:<22} {p.evidence:<12} {p.summary}")
        return 0
    if not args.name:
        raise UsageError("'presets show' needs a preset name or file (see 'voxelbone presets')")
    p = load_preset(args.name)
    days = max(args.years * DAYS_PER_YEAR, 7.0)
    course = p.hormone_course(days)
    mean = course.mean(start_day=min(28.0, days / 2))
    print(f"{p.name}: {p.title}")
    print(f"population: {p.population.name} — {p.population.description}")
    print(f"evidence: {p.evidence}" + (f" — mechanism: {p.mechanism}" if p.mechanism else ""))
    print("regimen:")
    print("\n".join(_regimen_lines(p)))
    if p.load_scale != 1.0:
        print(f"mechanical load: {p.load_scale:g}x habitual, acting only with load-driven remodelling on "
              f"(--fe-every-days {SUGGESTED_FE_EVERY_DAYS})")
    print(f"mean levels (after the first 4 weeks, over {args.years:g} yr):")
    for h, v in mean.__dict__.items():
        print(f"  {h:<20} {v:10.1f}")
    print("references:")
    for r in p.references:
        print(f"  - {r}")
    out = Path(args.out or "results/presets")
    out.mkdir(parents=True, exist_ok=True)
    path = plot_hormones({p.name: course}, out / f"{p.name}_hormones.png", days=min(days, 90.0))
    print(f"hormone plot: {path}")
    return 0


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="re-render a finished run from its snapshots",
                       description="Write DIR/plots/*.png and DIR/renders/*.png|gif|mp4 from a results folder's metrics and snapshots.")
    p.add_argument("result_dir", type=Path, help="results folder of 'voxelbone run'")
    p.add_argument("--width", type=_positive_int, default=800, help="panel width in pixels")
    p.add_argument("--height", type=_positive_int, default=800, help="panel height in pixels")
    p.add_argument("--max-voxels", type=_positive_int, default=192**3, help="block-average larger volumes before meshing")
    p.add_argument("--no-plots", action="store_true", help="renders only")
    p.add_argument("--color", choices=["thickness", "sed"], default=None,
                   help="colour the start/end scenes by local thickness, or by strain energy density of a micro-FE "
                        "compression along --axis (one solve per volume); default: thickness, plus sed_end when "
                        "the run had mechanics on")
    p.add_argument("--axis", choices=["z", "y", "x"], default="z", help="load axis of the SED scenes (default z)")
    p.set_defaults(func=_cmd_render)


def _cmd_render(args: argparse.Namespace) -> int:
    from .figures import draw_run_figures  # deferred, see the module docstring  # noqa: PLC0415
    from .render import RenderOptions  # deferred, see the module docstring  # noqa: PLC0415

    folder = RunFolder(args.result_dir)
    if not folder.path.is_dir():
        raise FileNotFoundError(f"no results folder at {folder.path}")
    if folder.state() is RunState.EMPTY:  # a study (replicates, compare, sweep) or another folder
        study = StudyFolder(folder.path)
        runs = sorted(p for p in study.runs_dir.iterdir() if RunFolder(p).state() is not RunState.EMPTY) \
            if study.runs_dir.is_dir() else []
        hint = (f"; it holds {len(runs)} run folders: render one, e.g. 'voxelbone render {runs[0]}'" if runs
                else "; give a folder that 'voxelbone run --out' wrote")
        raise FileNotFoundError(f"{folder.path} is not a run folder (no run.json){hint}")
    drawn = draw_run_figures(folder, with_plots=not args.no_plots,
                             options=RenderOptions(window_size=(args.width, args.height), max_voxels=args.max_voxels,
                                                         color=args.color, sed_axis=args.axis))
    if folder.state() is RunState.COMPLETED:
        folder.update_info(figure_errors=drawn.errors)
    for path in drawn.written:
        print(path)
    return 1 if drawn.errors else 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="run presets on one starting volume and write an HTML report",
                       description="Run (or reuse) each preset with the same site, size, voxel size and seed, then write "
                                   "OUT/report.html: metrics at each year with differences from the first preset, plots, "
                                   "and renders side by side.")
    p.add_argument("presets", nargs="+", help="preset names; the first is the reference")
    p.add_argument("--years", type=_positive_float, default=2.0, help="simulated years (default 2)")
    p.add_argument("--site", default="lumbar_spine", help="lumbar_spine or femoral_neck")
    p.add_argument("--size", type=_positive_int, default=None, help="phantom edge in voxels")
    p.add_argument("--input", type=Path, default=None,
                   help="start every run from this micro-CT scan instead of a phantom (formats as 'run --input')")
    p.add_argument("--compartments", default=None, metavar="auto|trabecular|FILE",
                   help="compartments of --input (as 'run --compartments')")
    p.add_argument("--voxel-size-um", type=_positive_float, default=None,
                   help="voxel edge in micrometres (with --input: overrides the header, with a warning)")
    p.add_argument("--seed", type=int, default=0, help="random seed shared by every run")
    p.add_argument("--step-days", type=_positive_int, default=1, help="remodeling step in days")
    p.add_argument("--metrics-every-days", type=_positive_int, default=30, help="days between metric evaluations")
    p.add_argument("--backend", choices=["auto", "numpy", "cupy"], default=None)
    p.add_argument("--no-render", action="store_true", help="leave out the 3-D renders")
    p.add_argument("--fe-every-days", type=_days_between_solves, default=0,
                   help="load-driven remodelling: days between micro-FE solves in every run (default 0: off); "
                        "the report then shows stiffness change beside aBMD change")
    p.add_argument("--out", type=Path, default=Path("results/compare"), help="report folder (default results/compare)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_replicate_flags(p)
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.workers is not None and args.replicates is None:
        raise UsageError("--workers sizes the cluster of --replicates; give --replicates N too")
    get_backend(args.backend)
    from .report import compare  # deferred, see the module docstring  # noqa: PLC0415

    path = compare(args.presets, args.out, years=args.years, site=args.site, size=args.size,
                   voxel_size_um=args.voxel_size_um, seed=args.seed, step_days=args.step_days,
                   metrics_every_days=args.metrics_every_days, backend=args.backend, progress=not args.quiet,
                   render=not args.no_render, replicates=args.replicates, n_workers=args.workers,
                   fe_every_days=args.fe_every_days, input=_absolute(args.input),
                   compartments=_compartments(args.compartments))
    print(f"report: {path}")
    return 0


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a grid of scenarios on Dask and gather one table",
                       description="Expand SWEEP.toml ([base] scenario fields, [grid] lists) into runs on a Dask cluster; "
                                   "finished runs are kept, failed runs reported; results gathered into OUT/sweep.csv and .parquet.")
    p.add_argument("sweep_file", type=Path, help="sweep TOML file")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=_positive_int, default=None, help="local worker processes (default: cores or GPUs)")
    p.add_argument("--backend", choices=["auto", "numpy", "cupy"], default=None)
    p.add_argument("--render", action="store_true", help="plots and renders for every run")
    p.add_argument("--replicates", type=_replicate_count, default=None, metavar="N",
                   help="N replicates of every grid point (own seeds, derived from its seed), with a summary.csv "
                        "of 95 %% intervals per point")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import RunOptions, load_sweep, run_sweep  # deferred, see the module docstring  # noqa: PLC0415

    if args.scheduler and args.workers:
        raise UsageError("--workers sizes the local cluster; with --scheduler the cluster is already there")

    sweep = load_sweep(args.sweep_file)
    options = RunOptions(scheduler=args.scheduler, n_workers=args.workers, backend=args.backend, render=args.render,
                         progress=lambda rid, st: print(f"{st:>10}  {rid}", flush=True))
    report = run_sweep(sweep, args.out, options=options, replicates=args.replicates)
    n_ok = sum(1 for s in report.statuses.values() if s == "completed")
    print(f"{n_ok}/{len(report.statuses)} runs completed; table: {report.table_csv}")
    for rid, err in report.errors.items():
        print(f"failed {rid}: {err}", file=sys.stderr)
    return 0 if n_ok == len(report.statuses) else 1


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark kernels, metrics and a full scenario",
                       description="Time each remodeling kernel, the full step, each metric, the per-step metric set and a "
                                   "scenario, on CPU and GPU, with the memory-bandwidth floor and reference libraries.")
    p.add_argument("--sizes", default=None, help="comma-separated edge lengths (default 128,256,512; quick: 64,96)")
    p.add_argument("--backend", choices=["auto", "numpy", "cupy", "all"], default="all",
                   help="backends to time (default: every one available)")
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (under 2 minutes on 2 cores)")
    p.add_argument("--cases", default=None,
                   help="comma-separated case names or groups: kernels, metrics, scenario, transfer (the default set), "
                        "and mechanics (the fe.* micro-FE solves, run only when named)")
    p.add_argument("--repeats", type=_positive_int, default=None, help="timed repeats per case")
    p.add_argument("--json", type=Path, default=None, help="write the JSON record to this new file (an existing one is kept)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="print the ratios of two JSON records")
    p.set_defaults(func=_cmd_bench)


def _refuse_existing_record(path: str | Path | None) -> None:
    """A ``--json`` record is measured data (a GPU's numbers, say): an existing one is never
    replaced; refused before the measurement starts."""
    if path is not None and Path(path).exists():
        raise UsageError(f"--json {path} exists and is kept: give a new file name, or remove it first")


def _sizes(text: str, flag: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if any(s < 16 for s in sizes):
        raise UsageError(f"{flag}: sizes must be at least 16 voxels, got {sizes}")
    return sizes


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench_cases import DEFAULT_SIZES, QUICK_SIZES, run_bench  # deferred, see the module docstring  # noqa: PLC0415

    if args.compare:
        if args.sizes or args.cases or args.json:
            raise UsageError("--compare prints two existing records; it takes no --sizes, --cases or --json")
        print(compare_records(load_record(args.compare[0]), load_record(args.compare[1])))
        return 0
    sizes = _sizes(args.sizes, "--sizes") if args.sizes else (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    _refuse_existing_record(args.json)
    if args.backend == "all":
        backends = ["numpy", "cupy"] if cupy_available() else ["numpy"]
    elif args.backend == "auto":
        backends = [get_backend("auto").name]
    else:
        backends = [args.backend]
    repeats = args.repeats or (2 if args.quick else 5)
    groups = args.cases.split(",") if args.cases else None
    ms, env = run_bench(sizes, backends, groups=groups, repeats=repeats,
                        progress=lambda s: print(f"  {s}", flush=True), quick_scenario=bool(args.quick))
    print()
    print(format_table(ms))
    for m in ms:
        if m.ok and "achieved_gb_per_s" in m.extra:
            print(f"{m.case} {m.size}³: {m.extra['achieved_gb_per_s']:.1f} GB/s host to device")
        if m.ok and "years_per_second" in m.extra:
            print(f"{m.case} {m.size}³ {m.backend}: {m.extra['years_per_second']:.3g} simulated years per second")
    if env.get("device_copy_bandwidth_bytes_per_s"):
        print(f"device copy bandwidth: {env['device_copy_bandwidth_bytes_per_s'] / 1e9:.0f} GB/s")
    if args.json:
        write_record(args.json, ms, env, {"sizes": list(sizes), "backends": backends, "quick": bool(args.quick)})
        print(f"record: {args.json}")
    return 0


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="check the model's annual BMD changes against the clinical ranges",
                       description="Run each preset of the clinical acceptance table on phantoms of each site and seed "
                                   "and print the annualised change of the site's DXA-equivalent BMD (abmd_pct) "
                                   "beside its clinical range, then each cell's mean of the seeds with its 95 % "
                                   "interval. Exit status 1 when a cell's mean lies outside its range or one of its "
                                   "seeds further outside it than the table allows "
                                   "(voxelbone.calibration.SEED_NOISE_PCT_PER_YR).")
    p.add_argument("--presets", default=None, help="comma-separated presets (default: every preset with a target)")
    p.add_argument("--sites", default="lumbar_spine,femoral_neck", help="comma-separated sites")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    p.add_argument("--size", type=_positive_int, default=None, help="phantom edge in voxels")
    p.add_argument("--voxel-size-um", type=_positive_float, default=None, help="voxel edge in micrometres")
    p.add_argument("--step-days", type=_positive_int, default=10, help="remodeling step in days (default 10)")
    p.add_argument("--backend", choices=["auto", "numpy", "cupy"], default=None)
    p.set_defaults(func=_cmd_calibrate)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import CLINICAL_TARGETS, SEED_NOISE_PCT_PER_YR, CellVerdict, calibration_checks  # deferred, see the module docstring  # noqa: PLC0415

    presets = args.presets.split(",") if args.presets else list(CLINICAL_TARGETS)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    checks = calibration_checks(presets, args.sites.split(","), seeds, size=args.size, voxel_size_um=args.voxel_size_um,
                                step_days=args.step_days, backend=args.backend)  # refuses bad input before the table
    print(f"{'preset':32s} {'site':14s} {'seed':>4s} {'%/yr':>7s} {'target':>14s}")
    bad = 0
    for (_, site), cell in itertools.groupby(checks, key=lambda c: (c.result.preset, c.result.site)):
        values = []
        for c in cell:  # each seed's row as its run finishes
            r = c.result
            print(f"{r.preset:32s} {r.site:14s} {r.seed:4d} {r.percent_per_year:+7.2f} "
                  f"{f'{c.low:+.1f}..{c.high:+.1f}':>14s}", flush=True)
            values.append(r.percent_per_year)
        v = CellVerdict.of(c.low, c.high, seeds, values)
        bad += not v.ok
        if len(seeds) > 1:
            mean = f"mean of {len(seeds)} seeds {v.interval.format()} (95 % interval)"
        else:
            mean = f"one seed {v.interval.mean:+.2f}, no interval (give --seeds 1,2,3)"
        far = f"; seeds {', '.join(map(str, v.seeds_far))} more than {SEED_NOISE_PCT_PER_YR:g} %/yr outside" \
            if v.seeds_far else ""
        print(f"{'':32s} {site:14s} {mean}: {'in range' if v.in_range else 'OUT OF RANGE'}{far}", flush=True)
    return 1 if bad else 0


def _add_stiffness(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stiffness", help="apparent modulus of a micro-CT volume by voxel micro-FE",
                       description="Uniaxial compression (strain -1 %) of the bone of FILE by linear-elastic voxel "
                                   "micro-finite elements; prints the apparent modulus E_app in MPa.")
    p.add_argument("file", help="a micro-CT volume in any format 'voxelbone run --input' reads")
    p.add_argument("--voxel-size-um", type=_positive_float, default=None,
                   help="voxel edge in µm: required when the file does not store it; overrides the file's header, "
                        "with a warning")
    p.add_argument("--axis", choices=("z", "y", "x"), default="z", help="load axis (default z)")
    p.add_argument("--boundary", choices=("constrained", "frictionless", "kinematic"), default="constrained",
                   help="loaded faces fixed laterally (default), free to slide, or every face held to the "
                        "uniform strain (kinematic, KUBC: the stiffest, side faces included)")
    p.add_argument("--tissue-modulus-mpa", type=_positive_float, default=None,
                   help="one tissue modulus for all bone (default: from mineral, E = 20 GPa x mineralisation^2.5)")
    p.add_argument("--rtol", type=_positive_float, default=1e-6, help="relative residual to reach (default 1e-6)")
    p.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto", help="array backend")
    p.add_argument("--json", metavar="F", default=None,
                   help="also write the result's numbers to this new JSON file (an existing one is kept)")
    p.set_defaults(func=_cmd_stiffness)


def _cmd_stiffness(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from .io import load_volume  # noqa: PLC0415
    from .mechanics import apparent_modulus  # noqa: PLC0415
    from .volume import BONE_THRESHOLD  # noqa: PLC0415

    if not Path(args.file).exists():
        raise FileNotFoundError(f"no such file or folder: {args.file}")
    _refuse_existing_record(args.json)
    backend = get_backend(args.backend).name
    vol = load_volume(args.file, args.voxel_size_um)
    sample = vol if args.tissue_modulus_mpa is None else (vol.bone >= BONE_THRESHOLD)
    r = apparent_modulus(sample, vol.voxel_size_um, axis=args.axis, tissue_modulus_mpa=args.tissue_modulus_mpa,
                         rtol=args.rtol, boundary=args.boundary, backend=backend)
    force = "n/a" if r.reaction_force_n is None else f"{r.reaction_force_n:.4g} N"
    print(f"E_app ({args.axis}, {args.boundary}): {r.e_app_mpa:.1f} MPa  (reaction {force}, {r.bone_elements} "
          f"elements, {r.iterations} iterations, residual {r.relative_residual:.2g}, {r.solve_s:.1f} s, {r.backend})")
    if args.json:
        Path(args.json).write_text(json.dumps({"file": str(args.file), **r.summary()}, indent=2) + "\n")
        print(f"record: {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``voxelbone`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="voxelbone",
        description="Voxel simulation of bone microarchitecture under hormone-driven remodeling (GPU with CuPy, CPU with NumPy).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"voxelbone {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    adders: list[Callable[[argparse._SubParsersAction], None]] = [_add_run, _add_presets, _add_compare, _add_render,
                                                                   _add_sweep, _add_bench, _add_calibrate]
    adders.append(_add_stiffness)
    for add in adders:
        add(sub)
    return parser


_PACKAGE_DIR = Path(__file__).resolve().parent


def _warning_printer(prefix: str) -> Callable[..., None]:
    """``warnings.showwarning`` for the command line: voxelbone's own warnings (issued in the package
    or of one of its warning classes) as one line ``PREFIX: warning: MESSAGE`` on stderr, without
    the source line; other libraries' as Python shows them."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        stream = file if file is not None else sys.stderr
        ours = category.__module__.split(".")[0] == __package__ or _PACKAGE_DIR in Path(filename).resolve().parents
        if ours:
            text = f"{prefix}: warning: {message}\n"
        else:
            text = warnings.formatwarning(message, category, filename, lineno, line)
        try:
            stream.write(text)
        except OSError:  # stderr closed: a warning is not worth failing the run
            pass

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voxelbone`` command; returns the exit status.

    Examples
    --------
    >>> main(["bench", "--sizes", "8"])  # sizes under 16 voxels: a usage error, status 2
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(f"voxelbone {args.command}")
            return int(args.func(args) or 0)
    except (UsageError, BackendError, FileNotFoundError, ValueError, ConnectionError) as exc:
        print(f"voxelbone {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"voxelbone {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
