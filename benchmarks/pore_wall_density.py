"""How much intracortical pore wall the engine sees, at 20 µm and on the same bone at 40 µm.

    python benchmarks/pore_wall_density.py [--preset hyperparathyroidism] [--seeds 1,2,3]
                                           [--edge-mm 1.92] [--years 1] [--record FILE]

A pore-wall (osteonal) BMU starts on a cortical bone voxel with a marrow face-neighbour and
no trabecular-marrow one (``cpu.activate``), with a probability per voxel that turns the
cortical activation frequency into BMUs per µm² through κ, the trabecular surface voxels per
voxel-face area of true surface (``RemodelParams.surface_voxels_per_area``, measured on the
starting volume: ``engine.measure_surface_density``). Per seed, each lumbar phantom is built
at 20 µm and block-averaged ×2 to 40 µm (the same bone, as in ``tests/test_invariance.py``),
and on the starting volume and after ``--years`` of ``--preset`` (10-day steps, the
calibration's run settings) this prints and records:

* the candidate pore-wall voxels and their voxel-face area;
* the marching-cubes area of the bone surface nearest them or the intracortical pores (the
  true wall), κ_wall = candidate voxels per voxel-face area of it, and κ (trabecular);
* ``activated_area_mm2`` = candidates · v² / κ: the wall area the engine activates as if it
  were trabecular surface (BMUs per year ∝ it); its ratio to the true wall is κ_wall / κ;
* the same for the 20 µm run's end volume block-averaged to 40 µm (``seen_at_um`` 40): the
  wall of the 20 µm run's bone as a 40 µm grid holds it, beside the 40 µm run's own.

The results are written to ``--record`` (JSON; default ``results/pore_wall_density.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from voxelbone.calibration import site_measures
from voxelbone.metrics.surface import bone_surface_mm2
from voxelbone.phantom import make_phantom
from voxelbone.remodel import cpu
from voxelbone.remodel.engine import measure_surface_density
from voxelbone.scenario import Period, Scenario
from voxelbone.simulate import simulate
from voxelbone.volume import BoneVolume, Region, coarsen


def pore_wall(volume: BoneVolume) -> dict[str, float]:
    """Candidate pore-wall voxels, the true wall area (mm²) and κ_wall, κ of ``volume``."""
    b = np.ascontiguousarray(volume.bone, dtype=np.float32)
    r = np.ascontiguousarray(volume.region)
    any_m, any_tm = cpu.surface_flags(b, r)
    cort = r == int(Region.CORTICAL)
    cand = cort & (b >= 0.5) & any_m & ~any_tm
    pores = cort & (b < 0.5)
    n = int(cand.sum())
    face_mm2 = (volume.voxel_size_um / 1000.0) ** 2
    wall_mm2 = bone_surface_mm2(b, volume.voxel_size_um, within=cand | pores, drop_cut_planes=False)
    kappa = measure_surface_density(volume)
    k_wall = n * face_mm2 / wall_mm2 if wall_mm2 > 0 else float("nan")
    return {"candidates": n, "candidate_face_mm2": n * face_mm2, "wall_mm2": float(wall_mm2),
            "kappa_wall": float(k_wall), "kappa": float(kappa) if kappa else float("nan"),
            "activated_area_mm2": n * face_mm2 / kappa if kappa else float("nan"),
            "activated_over_true": float(k_wall / kappa) if kappa else float("nan")}


def after_run(volume: BoneVolume, preset: str, seed: int, years: float) -> BoneVolume:
    """``volume`` after ``years`` of ``preset`` with the calibration's run settings (:func:`bmd_change`)."""
    scenario = Scenario(name=f"pore-wall-{preset}", site="lumbar_spine", periods=(Period(preset, years),), seed=seed,
                        step_days=10, metrics_every_days=int(round(365.25 * years)), checkpoint_every_days=10**6,
                        fragments_every_days=30)
    return simulate(scenario, None, backend="numpy", progress=False, render=False, measure=site_measures,
                    volume=volume, equilibrate=True).volume


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="hyperparathyroidism")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--edge-mm", type=float, default=1.92)
    ap.add_argument("--years", type=float, default=1.0)
    ap.add_argument("--record", type=Path, default=Path("results/pore_wall_density.json"))
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    edge = int(round(args.edge_mm * 1000.0 / 20.0))
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for seed in seeds:
        fine = make_phantom("lumbar_spine", edge, 20.0, seed=seed)
        for voxel_um, start in ((20.0, fine), (40.0, coarsen(fine, 2))):
            end = after_run(start, args.preset, seed, args.years)
            cases = [("start", voxel_um, start), (f"after {args.years:g} y", voxel_um, end)]
            if voxel_um == 20.0:  # the 20 µm run's bone as a 40 µm grid holds it
                cases.append((f"after {args.years:g} y, 20 µm run seen at 40 µm", 40.0, coarsen(end, 2)))
            for when, seen_um, vol in cases:
                row = {"seed": seed, "voxel_um": voxel_um, "seen_at_um": seen_um, "when": when, **pore_wall(vol)}
                rows.append(row)
                print(f"seed {seed} {voxel_um:g} µm {when:>10}: {row['candidates']:6d} candidates, wall "
                      f"{row['wall_mm2']:.3f} mm², κ_wall {row['kappa_wall']:.3f}, κ {row['kappa']:.3f}, activated "
                      f"{row['activated_area_mm2']:.3f} mm² ({row['activated_over_true']:.2f}× the wall)", flush=True)
    print("\nseed means, 20 µm / 40 µm:")
    summary = {}
    for when in dict.fromkeys(r["when"] for r in rows if r["voxel_um"] == 40.0):
        m = {v: {k: float(np.mean([r[k] for r in rows if r["when"] == when and r["voxel_um"] == v]))
                 for k in ("wall_mm2", "kappa_wall", "kappa", "activated_area_mm2", "activated_over_true")}
             for v in (20.0, 40.0)}
        summary[when] = m
        print(f"{when:>10}: wall {m[20.0]['wall_mm2']:.2f} / {m[40.0]['wall_mm2']:.2f} mm², activated "
              f"{m[20.0]['activated_area_mm2']:.2f} / {m[40.0]['activated_area_mm2']:.2f} mm² (ratio "
              f"{m[20.0]['activated_area_mm2'] / m[40.0]['activated_area_mm2']:.2f}), activated/true "
              f"{m[20.0]['activated_over_true']:.2f} / {m[40.0]['activated_over_true']:.2f}")
    seen = [r for r in rows if r["seen_at_um"] != r["voxel_um"]]
    if seen:
        s_wall = float(np.mean([r["wall_mm2"] for r in seen]))
        s_act = float(np.mean([r["activated_area_mm2"] for r in seen]))
        summary[seen[0]["when"]] = {"wall_mm2": s_wall, "activated_area_mm2": s_act}
        print(f"{seen[0]['when']}: wall {s_wall:.2f} mm², activated {s_act:.2f} mm²")
    args.record.parent.mkdir(parents=True, exist_ok=True)
    record = {"preset": args.preset, "seeds": seeds, "edge_mm": args.edge_mm, "years": args.years,
              "wall_s": time.perf_counter() - t0, "rows": rows, "seed_means": summary}
    args.record.write_text(json.dumps(record, indent=1) + "\n")
    print(f"record: {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
