"""Command line: ``voxelbone run|presets|compare|render|bench|sweep``.

Each subcommand is a thin layer over the Python API; errors a user can fix (bad
arguments, missing files, a GPU that is not there) are printed as one line and exit
with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .backend import BackendError, get_backend

__all__ = ["main"]

EPILOG = """examples:
  voxelbone run                                  default scenario into results/run
  voxelbone run --preset trt --site femoral_neck --years 2 --out results/trt
  voxelbone presets                              list therapy presets
  voxelbone presets show trt                     regimen, mean hormone levels, hormone plot
  voxelbone compare postmenopausal_untreated mht_estradiol_progesterone --years 2 --out results/cmp
  voxelbone render results/run                   re-render a finished run
  voxelbone sweep samples/sweep_small.toml --out results/sweep
  voxelbone bench --quick --json bench.json      benchmark (table + JSON record)
"""


class UsageError(Exception):
    """An error the user can fix; printed without a traceback."""


def _positive_int(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return v


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


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
    p.add_argument("--input", type=Path, default=None, help="start from a micro-CT file (.npy/.npz, TIFF stack, NIfTI) instead of a phantom")
    p.add_argument("--seed", type=int, default=None, help="random seed (structure and remodeling)")
    p.add_argument("--size", type=_positive_int, default=None, help="phantom edge length in voxels")
    p.add_argument("--voxel-size-um", type=_positive_float, default=None, help="voxel edge in micrometres (10-40)")
    p.add_argument("--years", type=_positive_float, default=None, help="simulated time in years")
    p.add_argument("--step-days", type=_positive_int, default=None, help="remodeling time step in days (default 1)")
    p.add_argument("--metrics-every-days", type=_positive_int, default=None, help="days between metric evaluations")
    p.add_argument("--snapshot-every-days", type=_positive_int, default=None, help="days between saved volumes")
    p.add_argument("--backend", choices=["auto", "numpy", "cupy"], default=None, help="array backend (default: $VOXELBONE_BACKEND or auto)")
    p.add_argument("--no-render", action="store_true", help="skip 3-D renders (plots and metrics only)")
    p.add_argument("--resume", type=Path, default=None, help="continue an interrupted run from its folder")
    p.add_argument("--out", type=Path, default=Path("results/run"), help="output folder (default results/run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    backend = get_backend(args.backend)  # fail early and clearly on a forced, unusable backend
    from .simulate import run_cli  # noqa: PLC0415

    return run_cli(args, backend)


def _add_presets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list therapy presets, or show one", description="List therapy presets with population, evidence level and what they do; 'presets show NAME' prints the regimen and mean hormone levels and plots the hormone time courses.")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="preset name or TOML file (for 'show')")
    p.add_argument("--years", type=_positive_float, default=1.0, help="years of hormone course to plot (show)")
    p.add_argument("--out", type=Path, default=None, help="folder for the hormone plot (show; default results/presets)")
    p.set_defaults(func=_cmd_presets)


def _cmd_presets(args: argparse.Namespace) -> int:
    from .presets import presets_cli  # noqa: PLC0415

    return presets_cli(args)


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="re-render a finished run from its snapshots",
                       description="Write DIR/plots/*.png and DIR/renders/*.png|gif|mp4 from a results folder's metrics and snapshots.")
    p.add_argument("result_dir", type=Path, help="results folder of 'voxelbone run'")
    p.add_argument("--width", type=_positive_int, default=800, help="panel width in pixels")
    p.add_argument("--height", type=_positive_int, default=800, help="panel height in pixels")
    p.add_argument("--max-voxels", type=_positive_int, default=192**3, help="block-average larger volumes before meshing")
    p.add_argument("--no-plots", action="store_true", help="renders only")
    p.set_defaults(func=_cmd_render)


def _cmd_render(args: argparse.Namespace) -> int:
    from .plots import plot_run  # noqa: PLC0415
    from .render import RenderOptions, render_results  # noqa: PLC0415

    if not args.result_dir.is_dir():
        raise FileNotFoundError(f"no results folder at {args.result_dir}")
    written = [] if args.no_plots else plot_run(args.result_dir)
    written += render_results(args.result_dir, options=RenderOptions(window_size=(args.width, args.height),
                                                                     max_voxels=args.max_voxels))
    for path in written:
        print(path)
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="run presets on one starting volume and write an HTML report",
                       description="Run (or reuse) each preset with the same site, size, voxel size and seed, then write "
                                   "OUT/report.html: metrics at each year with differences from the first preset, plots, "
                                   "and renders side by side.")
    p.add_argument("presets", nargs="+", help="preset names; the first is the reference")
    p.add_argument("--years", type=_positive_float, default=2.0, help="simulated years (default 2)")
    p.add_argument("--site", default="lumbar_spine", help="lumbar_spine or femoral_neck")
    p.add_argument("--size", type=_positive_int, default=None, help="phantom edge in voxels")
    p.add_argument("--voxel-size-um", type=_positive_float, default=None, help="voxel edge in micrometres")
    p.add_argument("--seed", type=int, default=0, help="random seed shared by every run")
    p.add_argument("--step-days", type=_positive_int, default=1, help="remodeling step in days")
    p.add_argument("--metrics-every-days", type=_positive_int, default=30, help="days between metric evaluations")
    p.add_argument("--backend", choices=["auto", "numpy", "cupy"], default=None)
    p.add_argument("--no-render", action="store_true", help="leave out the 3-D renders")
    p.add_argument("--out", type=Path, default=Path("results/compare"), help="report folder (default results/compare)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    get_backend(args.backend)
    from .report import compare  # noqa: PLC0415

    path = compare(args.presets, args.out, years=args.years, site=args.site, size=args.size,
                   voxel_size_um=args.voxel_size_um, seed=args.seed, step_days=args.step_days,
                   metrics_every_days=args.metrics_every_days, backend=args.backend, progress=not args.quiet,
                   render=not args.no_render)
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
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import load_sweep, run_sweep  # noqa: PLC0415

    sweep = load_sweep(args.sweep_file)
    report = run_sweep(sweep, args.out, scheduler=args.scheduler, n_workers=args.workers, backend=args.backend,
                       render=args.render, progress=lambda rid, st: print(f"{st:>10}  {rid}", flush=True))
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
    p.add_argument("--cases", default=None, help="comma-separated case names or groups (kernels, metrics, scenario, transfer)")
    p.add_argument("--repeats", type=_positive_int, default=None, help="timed repeats per case")
    p.add_argument("--json", type=Path, default=None, help="write the JSON record here")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="print the ratios of two JSON records")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench_cases import bench_cli  # noqa: PLC0415

    return bench_cli(args)


def _add_stiffness(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stiffness", help="apparent modulus of a micro-CT volume by voxel micro-FE",
                       description="Uniaxial compression (strain -1 %%) of the bone of FILE by linear-elastic voxel "
                                   "micro-finite elements; prints the apparent modulus E_app in MPa.")
    p.add_argument("file", help=".npy/.npz/.tif/.nii volume (as 'voxelbone run --volume')")
    p.add_argument("--voxel-size-um", type=_positive_float, default=None, help="voxel edge (µm) if the file lacks it")
    p.add_argument("--axis", choices=("z", "y", "x"), default="z", help="load axis (default z)")
    p.add_argument("--boundary", choices=("constrained", "frictionless"), default="constrained",
                   help="faces fixed laterally (default) or free to slide")
    p.add_argument("--tissue-modulus-mpa", type=_positive_float, default=None,
                   help="one tissue modulus for all bone (default: from mineral, E = 20 GPa x mineralisation^2.5)")
    p.add_argument("--rtol", type=_positive_float, default=1e-6, help="relative residual to reach (default 1e-6)")
    p.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto", help="array backend")
    p.add_argument("--json", metavar="F", default=None, help="also write the result's numbers to this JSON file")
    p.set_defaults(func=_cmd_stiffness)


def _cmd_stiffness(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from .io import load_volume  # noqa: PLC0415
    from .mechanics import apparent_modulus  # noqa: PLC0415
    from .volume import BONE_THRESHOLD  # noqa: PLC0415

    if not Path(args.file).exists():
        raise FileNotFoundError(f"no such file or folder: {args.file}")
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
                                                                   _add_sweep, _add_bench]
    adders.append(_add_stiffness)
    for add in adders:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voxelbone`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, BackendError, FileNotFoundError, ValueError, ConnectionError) as exc:
        print(f"voxelbone {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"voxelbone {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
