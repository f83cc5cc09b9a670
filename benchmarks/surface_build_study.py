"""What a positive balance builds on a flat surface remodelled by many BMUs, at each voxel size.

    python benchmarks/surface_build_study.py [--voxels 20 30 40] [--refill 1.4]
        [--fractions 0.1 0.3 0.5 0.7 0.9] [--seeds 1 2 3 4] [--years 2] [--activation-per-yr 0.5]
        [--variant model] [--json benchmarks/surface_build_study.json]

:func:`voxelbone.remodel.balance.surface_build_um` runs the engine on a 1.92 mm slab whose
surface lies at ``fraction`` of a voxel layer, once at ``--refill`` and once at a refill of
1 (same seed, so the same activations at first); the difference is the bone the positive
balance built, µm of thickness. It is a property of the balance and should be the same at
every voxel size and surface position. The table gives, per voxel size, the seed mean at
each surface position and the mean over all positions. About 2 min on one core.
``--variant overfill_on_surface`` runs the prototype overfill rule of
``overfill_on_surface.py`` (a diagnostic, not the model).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from overfill_on_surface import VARIANTS

from voxelbone.remodel.balance import surface_build_um


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=float, nargs="+", default=[20.0, 30.0, 40.0])
    ap.add_argument("--refill", type=float, default=1.4)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--years", type=float, default=2.0)
    ap.add_argument("--activation-per-yr", type=float, default=0.5)
    ap.add_argument("--variant", default="model", choices=sorted(VARIANTS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    print(f"built by refill {args.refill:g} over refill 1, µm ({args.years:g} years, Ac.f {args.activation_per_yr:g}/yr, "
          f"seeds {' '.join(map(str, args.seeds))}; {args.variant})")
    print("voxel µm | " + " | ".join(f"surface at {f:g}" for f in args.fractions) + " | all positions (± s.e.)")
    t0 = time.perf_counter()
    with VARIANTS[args.variant]():
        for v in args.voxels:
            cells, every = [], []
            for f in args.fractions:
                kw = dict(surface_fraction=f, years=args.years, activation_per_yr=args.activation_per_yr)
                built = [surface_build_um(args.refill, v, seed=s, **kw) - surface_build_um(1.0, v, seed=s, **kw)
                         for s in args.seeds]
                rows.append({"voxel_size_um": v, "surface_fraction": f, "built_um": built})
                every += built
                cells.append(f"{np.mean(built):+.2f}")
            se = float(np.std(every, ddof=1) / np.sqrt(len(every)))
            print(f"{v:g} | " + " | ".join(cells) + f" | {np.mean(every):+.2f} ± {se:.2f}", flush=True)
    wall = time.perf_counter() - t0
    print(f"{wall:.0f} s")
    if args.json:
        from voxelbone.runfolder import git_commit  # noqa: PLC0415

        commit = git_commit()
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": rows, "variant": args.variant, "refill": args.refill, "years": args.years,
                       "activation_per_yr": args.activation_per_yr, "seeds": args.seeds, "wall_s": wall,
                       "git_commit": commit, "date": time.strftime("%Y-%m-%d")}, fh, indent=1)


if __name__ == "__main__":
    main()
