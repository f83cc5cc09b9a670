"""What one BMU leaves behind, against what its refill asks, at each voxel size.

    python benchmarks/overfill_build_study.py [--voxels 20 30 40] [--refills 0.5 1 1.5 2 2.5 3]
        [--reach 1 2] [--json benchmarks/overfill_build_study.json]
    python benchmarks/overfill_build_study.py --rod-radius-um 55 36 [--voxels 20 40] [--refills 1.4 2]

A BMU of refill r should leave r − 1 volumes of its cavity (W.Th/E.De; below 1 a deficit,
above 1 bone built above the old surface). :func:`voxelbone.remodel.balance.one_bmu_build`
runs one hemi-osteonal BMU of 50 µm erosion depth on a flat surface through its cycle with
the engine's rules; this prints the mean and the range over where the surface sits inside
its voxel layer (bone fraction 0.1 … 0.9 of that layer) and over four cavity draws, for each
voxel size, refill and ``RemodelParams.overfill_reach_depths``. Seconds on one core.

``--rod-radius-um R …`` runs the BMU on the top of a rod of radius R instead (the rod's axis
at five places inside its voxel) and prints the absolute bone: the cavity (µm³) and the net
bone after the cycle at each refill, in 10³ µm³ (default reach).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from voxelbone.remodel import RemodelParams
from voxelbone.remodel.balance import one_bmu_build, one_bmu_cavity_um3, one_bmu_net_um3

SURFACE_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
SEEDS = (1, 2, 3, 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=float, nargs="+", default=[20.0, 30.0, 40.0])
    ap.add_argument("--refills", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    ap.add_argument("--reach", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--rod-radius-um", type=float, nargs="+", default=None,
                    help="on rods of these radii: absolute cavity and build (no --json)")
    args = ap.parse_args()
    if args.rod_radius_um:
        rods(args.rod_radius_um, args.voxels, args.refills)
        return
    rows = []
    print("reach | voxel µm | " + " | ".join(f"r {r:g} (ideal {r - 1:+.1f})" for r in args.refills))
    for reach in args.reach:
        params = RemodelParams(overfill_reach_depths=reach)
        for v in args.voxels:
            cells = []
            for r in args.refills:
                vals = [one_bmu_build(r, v, surface_fraction=f, params=params, seed=s)
                        for f in SURFACE_FRACTIONS for s in SEEDS]
                rows.append({"reach": reach, "voxel_size_um": v, "refill": r, "ideal": r - 1.0,
                             "mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals))})
                cells.append(f"{np.mean(vals):+.3f} [{np.min(vals):+.2f}, {np.max(vals):+.2f}]")
            print(f"{reach:g} | {v:g} | " + " | ".join(cells), flush=True)
    if args.json:
        from voxelbone.runfolder import git_commit  # noqa: PLC0415

        commit = git_commit()  # before the record is opened: rewriting it would count as a change
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": rows, "surface_fractions": SURFACE_FRACTIONS, "seeds": SEEDS, "erosion_depth_um": 50.0,
                       "git_commit": commit, "date": time.strftime("%Y-%m-%d")}, fh, indent=1)


def rods(radii: list[float], voxels: list[float], refills: list[float]) -> None:
    """Cavity and net bone of one BMU on rods, 10³ µm³, mean over axis positions and cavity draws."""
    print("rod radius µm | voxel µm | cavity | " + " | ".join(f"net at r {r:g}" for r in refills))
    for radius in radii:
        for v in voxels:
            cases = [(f, s) for f in SURFACE_FRACTIONS for s in SEEDS[:3]]
            cav = [one_bmu_cavity_um3(v, surface_fraction=f, seed=s, rod_radius_um=radius) for f, s in cases]
            cells = [np.mean([one_bmu_net_um3(r, v, surface_fraction=f, seed=s, rod_radius_um=radius)
                              for f, s in cases]) / 1e3 for r in refills]
            print(f"{radius:g} | {v:g} | {np.mean(cav) / 1e3:.0f} | " + " | ".join(f"{x:+.0f}" for x in cells),
                  flush=True)


if __name__ == "__main__":
    main()
