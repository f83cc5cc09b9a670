"""The invariance matrix: annual changes at every sample edge and voxel size, into docs/user-guide/invariance.md.

    python benchmarks/invariance_matrix.py [--edges 1.92,3.84,7.68] [--voxels 20,30,40] [--presets a,b]
                                           [--seeds 1,2,3] [--workers 2] [--record FILE] [--from-record]

Each cell runs one preset for one year at the lumbar spine (10-day steps) on cubes of the
given edge and voxel size (20 and 30 µm: the site's phantoms; 40 µm: 20 µm phantoms
block-averaged ×2, ``voxelbone.calibration.VOXEL_RECIPES``), on every seed, in parallel
worker processes, and records the annual change of ``abmd_pct``, Tb.vBMD and BV/TV per seed
(each edge's seeds: ``voxelbone.calibration.INVARIANCE_SEEDS``, 24 at 1.92 mm, 9 at 3.84 mm,
3 at 7.68 mm; a cell recorded with other seeds runs again).
The record (default ``benchmarks/invariance_matrix.json``) is extended, never overwritten:
cells already in it are not run again, so the matrix can be filled piece by piece; it is
rewritten as each volume finishes, so an interrupted run continues where it stopped (the
finished seeds of an unfinished cell are kept when the same commit, with no uncommitted
changes, runs again). The page
always lists the full matrix (every preset of the calibration table plus teriparatide,
hyperparathyroidism and glucocorticoid_excess; 1.92, 3.84 and 7.68 mm; 20, 30 and 40 µm;
each edge's seeds) and marks the cells not in the record "not run here". With no option it runs the
full matrix (7.68 mm at 20 µm is 384³: hours on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from voxelbone.calibration import invariance_cells, invariance_markdown, replace_between_markers, run_study, write_record

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "user-guide" / "invariance.md"
MARKER = "invariance-matrix"
COMMAND = "python benchmarks/invariance_matrix.py"


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--edges", type=_floats, default=None, help="cube edges in mm (default 1.92,3.84,7.68)")
    ap.add_argument("--voxels", type=_floats, default=None, help="voxel sizes in µm (default 20,30,40)")
    ap.add_argument("--presets", default=None, help="comma-separated presets (default: the matrix's)")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated seeds for every cell (default: each edge's, INVARIANCE_SEEDS)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--record", type=Path, default=ROOT / "benchmarks" / "invariance_matrix.json")
    ap.add_argument("--from-record", action="store_true", help="rewrite the page from the record, run nothing")
    ap.add_argument("--reuse", type=Path, action="append", default=[],
                    help="another study record (e.g. benchmarks/calibration_table.json) whose cells of the matrix "
                         "(same preset, site, edge, voxel size, years and seeds) are taken instead of run again")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    record = json.loads(args.record.read_text(encoding="utf-8")) if args.record.is_file() else None
    matrix = {c.key: c for c in invariance_cells(seeds=seeds)}
    for path in args.reuse:
        other = json.loads(path.read_text(encoding="utf-8"))
        record = record or {"cells": {}, "wall_s": 0.0}
        for key, cell in other["cells"].items():
            if key in matrix and key not in record["cells"] and tuple(cell["seeds"]) == matrix[key].seeds:
                record["cells"][key] = {"git_commit": other.get("git_commit"), "date": other.get("date"),
                                        **cell, "from": path.name}
    if not args.from_record:
        kw = {k: v for k, v in (("edges_mm", args.edges), ("voxel_sizes_um", args.voxels)) if v is not None}
        cells = invariance_cells(args.presets.split(",") if args.presets else None, seeds=seeds, **kw)
        previous = record["wall_s"] if record else 0.0
        # the record is rewritten as each volume finishes: an interrupted matrix continues from it
        record = run_study(cells, n_workers=args.workers, record=record, progress=lambda t: print(t, flush=True),
                           checkpoint=lambda r: write_record(args.record, r))
        print(f"this run: {(record['wall_s'] - previous) / 60:.1f} min", flush=True)
        write_record(args.record, record)
    if record is None:
        raise SystemExit(f"no record at {args.record}; run without --from-record first")
    table = invariance_markdown(record, invariance_cells(seeds=seeds), COMMAND)
    PAGE.write_text(replace_between_markers(PAGE.read_text(encoding="utf-8"), MARKER, table), encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
