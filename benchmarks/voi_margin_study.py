"""How the trabecular VOI's margin from the cortex changes a preset's trabecular gain, per geometry.

    python benchmarks/voi_margin_study.py [--presets teriparatide,glucocorticoid_excess]
        [--margins 0,100,150,200,300,400] [--workers 2] [--json benchmarks/voi_margin_study.json]

One year at the lumbar spine (the invariance matrix's recipe: 10-day steps; 40 µm cubes are
20 µm phantoms block-averaged ×2) on four geometries of the matrix: 1.92 mm at 20 µm (seeds
1–6) and at 40 µm (seeds 1–12), 3.84 mm at 40 µm (seeds 1–6) and at 20 µm (seeds 1–3). At the
start and at the end the compartments are contoured from the bone
(:func:`voxelbone.compartments.contoured_regions`), and Tb.vBMD and BV/TV are measured in the
trabecular compartment without the band within each margin (µm) of the contoured cortex
(margin 0: the whole compartment; 150 µm, ``ContourParams.trabecular_close_um``: the package's
trabecular VOI, :func:`voxelbone.compartments.trabecular_voi`). A few minutes on 2 workers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from typing import Any

import numpy as np

GEOMETRIES = ((1.92, 20.0, tuple(range(1, 7))), (1.92, 40.0, tuple(range(1, 13))), (3.84, 40.0, tuple(range(1, 7))),
              (3.84, 20.0, (1, 2, 3)))


def _vois(bone: np.ndarray, region: np.ndarray, voxel_size_um: float, margins: tuple[float, ...]) -> list[np.ndarray]:
    """The contoured trabecular compartment without the band within each margin (µm) of the
    cortex; the bone is contoured once."""
    from voxelbone.compartments import ContourParams, contoured_regions, trabecular_voi  # noqa: PLC0415
    from voxelbone.volume import Region  # noqa: PLC0415

    labels = contoured_regions(bone, region, voxel_size_um)
    return [labels == Region.TRABECULAR if m == 0  # ContourParams takes positive distances only
            else trabecular_voi(labels, voxel_size_um, params=ContourParams(trabecular_close_um=m)) for m in margins]


def _job(job: tuple[str, float, float, int, tuple[float, ...]]) -> dict[str, Any]:
    """One preset, geometry and seed (in a worker): the changes at every margin."""
    import numba  # noqa: PLC0415

    numba.set_num_threads(1)
    from voxelbone.calibration import study_volume  # noqa: PLC0415
    from voxelbone.phantom import make_phantom  # noqa: PLC0415
    from gh_edge_trace import one_year  # noqa: PLC0415  (beside this script)

    preset, edge, voxel, seed, margins = job
    volume = study_volume("lumbar_spine", edge, voxel, seed)
    if volume is None:  # a native voxel size: the site's phantom
        volume = make_phantom("lumbar_spine", int(round(edge * 1000.0 / voxel)), voxel, seed=seed)
    b0, m0, r0, b1, m1 = one_year(volume, preset, seed)
    row: dict[str, Any] = {"preset": preset, "edge_mm": edge, "voxel_size_um": voxel, "seed": seed}
    for margin, t0, t1 in zip(margins, _vois(b0, r0, voxel, margins), _vois(b1, r0, voxel, margins)):
        row[f"tb_vbmd_pct@{margin:g}"] = 100.0 * (m1[t1].mean() / m0[t0].mean() - 1.0)
        row[f"bv_tv_pct@{margin:g}"] = 100.0 * ((b1[t1] >= 0.5).mean() / (b0[t0] >= 0.5).mean() - 1.0)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="teriparatide,glucocorticoid_excess")
    ap.add_argument("--margins", default="0,100,150,200,300,400", help="margins from the cortex, µm")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from voxelbone.runfolder import git_commit  # noqa: PLC0415

    commit = git_commit()
    presets = args.presets.split(",")
    margins = tuple(float(m) for m in args.margins.split(","))
    jobs = [(p, e, v, s, margins) for p in presets for e, v, seeds in GEOMETRIES for s in seeds]
    jobs.sort(key=lambda j: -(j[1] / j[2]) ** 3)  # the largest volumes first
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        rows = pool.map(_job, jobs, chunksize=1)
    for measure in ("tb_vbmd_pct", "bv_tv_pct"):
        for p in presets:
            print(f"\n{p}, {measure}: seed means, %/yr, by margin from the cortex (µm)")
            print("| edge | voxel | seeds | " + " | ".join(f"{m:g}" for m in margins) + " |")
            print("|---" * (len(margins) + 3) + "|")
            for e, v, seeds in GEOMETRIES:
                sel = [r for r in rows if r["preset"] == p and r["edge_mm"] == e and r["voxel_size_um"] == v]
                cells = " | ".join(f"{np.mean([r[f'{measure}@{m:g}'] for r in sel]):+.2f}" for m in margins)
                print(f"| {e:.2f} mm | {v:g} µm | {len(seeds)} | {cells} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"presets": presets, "margins_um": margins, "rows": rows, "git_commit": commit,
                       "date": time.strftime("%Y-%m-%d"), "wall_s": time.perf_counter() - t0,
                       "workers": args.workers}, fh, indent=1)


if __name__ == "__main__":
    main()
