"""How much pore wall and trabecular surface the engine sees, at 20 µm and on the same bone at 40 µm.

    python benchmarks/pore_wall_density.py [--preset hyperparathyroidism] [--seeds 1,2,3]
                                           [--edge-mm 1.92] [--years 1] [--record FILE]

A pore-wall (osteonal) BMU starts on a cortical bone voxel with a marrow face-neighbour and
no trabecular-marrow one (``cpu.activate``), with a probability per voxel that turns the
cortical activation frequency into BMUs per µm² through κ, the trabecular surface voxels per
voxel-face area of true surface (``RemodelParams.surface_voxels_per_area``, measured on the
starting volume: ``engine.measure_surface_density(volume).trabecular``). Per seed, each lumbar phantom is built
at 20 µm and block-averaged ×2 to 40 µm (the same bone, as in ``tests/test_invariance.py``),
and on the starting volume and after ``--years`` of ``--preset`` (``calibration.study_run``:
the calibration's run settings) this prints and records:

* the candidate pore-wall voxels and their voxel-face area;
* the marching-cubes area of the bone surface nearest them or the intracortical pores (the
  true wall), κ_wall = candidate voxels per voxel-face area of it, and κ (trabecular);
* ``activated_area_mm2`` = candidates · v² / κ: the wall area the engine activates as if it
  were trabecular surface (BMUs per year ∝ it); its ratio to the true wall is κ_wall / κ;
* the trabecular compartment's bone surface (marching cubes, measured as κ is), the
  trabecular and endocortical BMU candidates and the surface they activate (``tb_*``);
* the same for the 20 µm run's end volume block-averaged to 40 µm (``seen_at_um`` 40): the
  surfaces of the 20 µm run's bone as a 40 µm grid holds them, beside the 40 µm run's own.

"Activated" uses the engine's κ: the one measured on a run's starting volume (for the
block-averaged end volume, the 40 µm starting volume's).

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

from voxelbone.calibration import STUDY_SAMPLE_DAYS, study_run
from voxelbone.metrics.surface import bone_surface_mm2
from voxelbone.phantom import make_phantom
from voxelbone.remodel import cpu
from voxelbone.remodel.engine import measure_surface_density
from voxelbone.volume import BoneVolume, Region, coarsen


def pore_wall(volume: BoneVolume, kappa: float | None = None) -> dict[str, float]:
    """Candidate pore-wall voxels, the true wall area (mm²), κ_wall, and the wall activated at ``kappa``.

    ``kappa``: the engine's κ (measured on a run's starting volume); None measures it on ``volume``.
    """
    b = np.ascontiguousarray(volume.bone, dtype=np.float32)
    cand, near = cpu.pore_wall_voxels(b, np.ascontiguousarray(volume.region))
    n = int(cand.sum())
    face_mm2 = (volume.voxel_size_um / 1000.0) ** 2
    wall_mm2 = bone_surface_mm2(b, volume.voxel_size_um, within=near, drop_cut_planes=False)
    kappa = measure_surface_density(volume).trabecular if kappa is None else kappa
    k_wall = n * face_mm2 / wall_mm2 if wall_mm2 > 0 else float("nan")
    return {"candidates": n, "candidate_face_mm2": n * face_mm2, "wall_mm2": float(wall_mm2),
            "kappa_wall": float(k_wall), "kappa": float(kappa) if kappa else float("nan"),
            "activated_area_mm2": n * face_mm2 / kappa if kappa else float("nan"),
            "activated_over_true": float(k_wall / kappa) if kappa else float("nan")}


def trabecular_surface(volume: BoneVolume, kappa: float) -> dict[str, float]:
    """The trabecular and endocortical BMU candidates, the trabecular compartment's bone surface
    (mm², marching cubes, measured as κ is) and the surface they activate at ``kappa``."""
    b = np.ascontiguousarray(volume.bone, dtype=np.float32)
    r = np.ascontiguousarray(volume.region)
    _, any_tm = cpu.surface_flags(b, r)
    trab = r == int(Region.TRABECULAR)
    n = int(((b >= 0.5) & any_tm & (r != int(Region.OUTSIDE))).sum())
    face_mm2 = (volume.voxel_size_um / 1000.0) ** 2
    area = bone_surface_mm2(b * trab, volume.voxel_size_um, within=trab, drop_cut_planes=False)
    return {"tb_candidates": n, "tb_surface_mm2": float(area), "tb_activated_area_mm2": n * face_mm2 / kappa}


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
        starts = {20.0: fine, 40.0: coarsen(fine, 2)}
        kappa = {v: measure_surface_density(vol).trabecular for v, vol in starts.items()}  # per voxel size
        for voxel_um, start in starts.items():
            end = study_run(args.preset, seed=seed, years=args.years, volume=start, backend="numpy",
                            measure_every_days=STUDY_SAMPLE_DAYS).volume
            cases = [("start", voxel_um, start), (f"after {args.years:g} y", voxel_um, end)]
            if voxel_um == 20.0:  # the 20 µm run's bone as a 40 µm grid holds it (at a 40 µm run's κ)
                cases.append((f"after {args.years:g} y, 20 µm run seen at 40 µm", 40.0, coarsen(end, 2)))
            for when, seen_um, vol in cases:
                row = {"seed": seed, "voxel_um": voxel_um, "seen_at_um": seen_um, "when": when,
                       **pore_wall(vol, kappa[seen_um]), **trabecular_surface(vol, kappa[seen_um])}
                rows.append(row)
                print(f"seed {seed} {voxel_um:g} µm {when:>10}: {row['candidates']:6d} candidates, wall "
                      f"{row['wall_mm2']:.3f} mm², κ_wall {row['kappa_wall']:.3f}, κ {row['kappa']:.3f}, activated "
                      f"{row['activated_area_mm2']:.3f} mm² ({row['activated_over_true']:.2f}× the wall)", flush=True)
    print("\nseed means, 20 µm / 40 µm:")
    summary = {}
    for when in dict.fromkeys(r["when"] for r in rows if r["voxel_um"] == 40.0):
        m = {v: {k: float(np.mean([r[k] for r in rows if r["when"] == when and r["voxel_um"] == v]))
                 for k in ("wall_mm2", "kappa_wall", "kappa", "activated_area_mm2", "activated_over_true",
                           "tb_surface_mm2", "tb_activated_area_mm2")}
             for v in (20.0, 40.0)}
        summary[when] = m
        print(f"{when:>10}: wall {m[20.0]['wall_mm2']:.2f} / {m[40.0]['wall_mm2']:.2f} mm², activated "
              f"{m[20.0]['activated_area_mm2']:.2f} / {m[40.0]['activated_area_mm2']:.2f} mm² (ratio "
              f"{m[20.0]['activated_area_mm2'] / m[40.0]['activated_area_mm2']:.2f}), activated/true "
              f"{m[20.0]['activated_over_true']:.2f} / {m[40.0]['activated_over_true']:.2f}; trabecular surface "
              f"{m[20.0]['tb_surface_mm2']:.2f} / {m[40.0]['tb_surface_mm2']:.2f} mm², activated "
              f"{m[20.0]['tb_activated_area_mm2']:.2f} / {m[40.0]['tb_activated_area_mm2']:.2f} mm²")
    seen = [r for r in rows if r["seen_at_um"] != r["voxel_um"]]
    if seen:
        means = {k: float(np.mean([r[k] for r in seen]))
                 for k in ("wall_mm2", "activated_area_mm2", "tb_surface_mm2", "tb_activated_area_mm2")}
        summary[seen[0]["when"]] = means
        print(f"{seen[0]['when']}: wall {means['wall_mm2']:.2f} mm², activated {means['activated_area_mm2']:.2f} mm²; "
              f"trabecular surface {means['tb_surface_mm2']:.2f} mm², activated {means['tb_activated_area_mm2']:.2f} mm²")
    args.record.parent.mkdir(parents=True, exist_ok=True)
    record = {"preset": args.preset, "seeds": seeds, "edge_mm": args.edge_mm, "years": args.years,
              "wall_s": time.perf_counter() - t0, "rows": rows, "seed_means": summary}
    args.record.write_text(json.dumps(record, indent=1) + "\n")
    print(f"record: {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
