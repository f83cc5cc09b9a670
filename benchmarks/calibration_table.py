"""The README's calibration table: ``abmd_pct`` of every clinical preset at both sites, with 95 % intervals.

    python benchmarks/calibration_table.py [--workers 2] [--record FILE] [--from-record]
    python benchmarks/calibration_table.py --fe-every-days 28 [--workers 2] [--resume] [--voxels 30,40]
                                           [--presets gh_peptide_sermorelin,...]

Runs every preset of ``voxelbone.calibration.CLINICAL_TARGETS`` at the lumbar spine and the
femoral neck in the geometry of ``tests/test_calibration.py`` (a 3.84 mm cube: 128³ phantoms
at 30 µm; 192³ phantoms at 20 µm block-averaged to 96³ at 40 µm; 10-day steps; seeds 1, 2, 3;
one year, two for GH therapy), in parallel worker processes. Writes the record (per-seed
annual changes, machine, date, commit, wall time; default ``benchmarks/calibration_table.json``)
and puts the table between the ``calibration-table`` marker comments of README.md and
docs/user-guide/calibration.md. ``--from-record`` rewrites the tables from the record
without running anything.

With ``--fe-every-days N`` the same cells run with load-driven remodelling on (a micro-FE
solve every N days); the record goes to ``benchmarks/calibration_table_mechanics.json`` and
the table — mechanics off (from the mechanics-off record) beside on, with the paired
difference — between the ``calibration-table-mechanics`` markers of
docs/user-guide/mechanics.md. ``--voxels 40`` runs only the 40 µm cells (a quarter of the
cost); the table then marks the others "not run", and ``--resume`` adds them later.
``--presets`` likewise runs only the presets named (with ``--resume`` the record keeps the
others' cells). With ``--fe-every-days`` the record is rewritten as each volume finishes
(cells whose every seed has run, and the finished seeds of the others); ``--resume`` after an
interruption runs only what is missing (finished seeds are taken only from the same commit,
with no uncommitted changes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from voxelbone.calibration import (CALIBRATED_VOXEL_SIZES_UM, CLINICAL_TARGETS, calibration_cells, calibration_markdown,
                                   mechanics_calibration_markdown, provenance_text, replace_between_markers,
                                   run_study, write_record)

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", ROOT / "docs" / "user-guide" / "calibration.md")
MARKER = "calibration-table"
MECHANICS_PAGE = ROOT / "docs" / "user-guide" / "mechanics.md"
MECHANICS_MARKER = "calibration-table-mechanics"


def caption(record: dict, command: str = "python benchmarks/calibration_table.py") -> str:
    """The line under the table: where, when, how long and the command that makes it."""
    return (f"Measured {provenance_text(record)}, {record['n_workers']} worker processes: "
            f"{record['wall_s'] / 60:.1f} min wall time. Regenerate: `{command}`.")


def write_pages(record: dict) -> None:
    """Put the table and its caption between the markers of every page."""
    block = calibration_markdown(record) + "\n\n" + caption(record)
    for page in PAGES:
        page.write_text(replace_between_markers(page.read_text(encoding="utf-8"), MARKER, block), encoding="utf-8")


def _voxels(text: str) -> tuple[float, ...]:
    """``--voxels``: calibrated voxel sizes only (the table's rows)."""
    try:
        sizes = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"voxel sizes are numbers in µm separated by commas, got {text!r}") from None
    unknown = [v for v in sizes if v not in CALIBRATED_VOXEL_SIZES_UM]
    if unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(f'{v:g}' for v in unknown)} µm: the calibration table has "
                                         f"{', '.join(f'{v:g}' for v in CALIBRATED_VOXEL_SIZES_UM)} µm")
    return sizes


def _presets(text: str) -> tuple[str, ...]:
    """``--presets``: presets of the table only (those with a clinical target)."""
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [p for p in names if p not in CLINICAL_TARGETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown) or repr(text)}: the calibration table has "
                                         f"{', '.join(CLINICAL_TARGETS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--record", type=Path, default=None,
                    help="the record (default benchmarks/calibration_table.json; with --fe-every-days "
                         "benchmarks/calibration_table_mechanics.json)")
    ap.add_argument("--from-record", action="store_true", help="rewrite the tables from the record, run nothing")
    ap.add_argument("--resume", action="store_true",
                    help="with --fe-every-days: keep the cells (and the finished seeds of an interrupted run) "
                         "already in the record, run on the same model; without it every cell runs again")
    ap.add_argument("--fe-every-days", type=int, default=0,
                    help="load-driven remodelling on: a micro-FE solve every N days (default 0: off)")
    ap.add_argument("--voxels", type=_voxels, default=None,
                    help=f"with --fe-every-days: run only these voxel sizes in µm, comma-separated "
                         f"(default all: {','.join(f'{v:g}' for v in CALIBRATED_VOXEL_SIZES_UM)})")
    ap.add_argument("--presets", type=_presets, default=None,
                    help="with --fe-every-days: run only these presets, comma-separated (default all)")
    args = ap.parse_args(argv)
    if args.fe_every_days < 0:
        ap.error(f"--fe-every-days must be ≥ 0, got {args.fe_every_days}")
    if args.voxels is not None and not args.fe_every_days:
        ap.error("--voxels needs --fe-every-days: the README's table has every calibrated voxel size")
    if args.presets is not None and not args.fe_every_days:
        ap.error("--presets needs --fe-every-days: the README's table has every preset")
    if args.fe_every_days:
        return mechanics_main(args)
    args.record = args.record or ROOT / "benchmarks" / "calibration_table.json"
    if args.from_record:
        record = json.loads(args.record.read_text(encoding="utf-8"))
    else:
        record = run_study(calibration_cells(), n_workers=args.workers, progress=lambda t: print(t, flush=True))
        write_record(args.record, record)
    write_pages(record)
    print(calibration_markdown(record))
    print(caption(record))
    return 0



def mechanics_main(args: argparse.Namespace) -> int:
    """The cells with mechanics on; the table beside the mechanics-off record."""
    record_path = args.record or ROOT / "benchmarks" / "calibration_table_mechanics.json"
    off = json.loads((ROOT / "benchmarks" / "calibration_table.json").read_text(encoding="utf-8"))
    if args.from_record:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    else:
        # a record of another model must not stand in for this one: reuse its cells only when asked
        old = json.loads(record_path.read_text(encoding="utf-8")) if args.resume and record_path.exists() else None
        voxels = args.voxels or CALIBRATED_VOXEL_SIZES_UM
        # the record is rewritten as each volume finishes: --resume continues an interrupted run
        record = run_study(calibration_cells(args.presets, voxel_sizes_um=voxels, fe_every_days=args.fe_every_days),
                           n_workers=args.workers, record=old, progress=lambda t: print(t, flush=True),
                           checkpoint=lambda r: write_record(record_path, r))
        write_record(record_path, record)
    block = (mechanics_calibration_markdown(off, record, args.fe_every_days) + "\n\n"
             + caption(record, f"python benchmarks/calibration_table.py --fe-every-days {args.fe_every_days}"))
    MECHANICS_PAGE.write_text(replace_between_markers(MECHANICS_PAGE.read_text(encoding="utf-8"), MECHANICS_MARKER,
                                                      block), encoding="utf-8")
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
