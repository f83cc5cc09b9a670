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
    adders: list[Callable[[argparse._SubParsersAction], None]] = [_add_run, _add_presets]
    for add in adders:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voxelbone`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, BackendError, FileNotFoundError, ValueError) as exc:
        print(f"voxelbone {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"voxelbone {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
