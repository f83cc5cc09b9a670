"""Where GH therapy's extra trabecular gain in small cubes lies: near the cortex, or everywhere.

    python benchmarks/gh_edge_trace.py [--preset gh_peptide_sermorelin] [--seeds 1 2 3 4 5 6]
        [--json benchmarks/gh_edge_trace.json]
    python benchmarks/gh_edge_trace.py --matrix [--workers 2] [--json benchmarks/gh_edge_trace_matrix.json]

One year at the lumbar spine, 40 µm voxels (the invariance matrix's recipe: 20 µm phantoms
block-averaged ×2), 10-day steps, for three samples of each seed:

* ``cube 1.92 mm`` and ``cube 3.84 mm``: the matrix's cubes, a band of cortex along one face;
* ``core 1.92 mm``: a 1.92 mm cube cut from the middle of the seed's 3.84 mm phantom on the
  side away from the cortex, all of it trabecular (no cortex in the sample).

For each run: Tb.vBMD's change with the engine's day-0 compartments (the matrix's measure until
studies contoured the compartments at each sample) and with
the trabecular compartment contoured again from the bone at the end
(:func:`voxelbone.compartments.contoured_regions`, as HR-pQCT does at each scan); the share
of the trabecular bone gained that lies within 80 µm of the day-0 cortex; and the endocortical
surface (cortical bone voxels facing the trabecular compartment) per trabecular surface voxel.
A minute or two on one core.

``--matrix`` runs the preset on every geometry of the invariance matrix with its seeds
(``voxelbone.calibration.INVARIANCE_SEEDS``) and prints, per geometry, Tb.vBMD and BV/TV with
the day-0 compartments (the matrix's measures until then) and with the trabecular compartment contoured
at each end, and the matrix's verdict for each (about 15 minutes on 2 worker processes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import time
from typing import Any

import numpy as np
from scipy import ndimage

from voxelbone.calibration import (INVARIANCE_EDGES_MM, INVARIANCE_SEEDS, INVARIANCE_VOXEL_SIZES_UM,
                                   invariance_verdict, study_volume)
from voxelbone.compartments import contoured_regions
from voxelbone.phantom import make_phantom
from voxelbone.scenario import Period, Scenario
from voxelbone.simulate import simulate
from voxelbone.volume import BoneVolume, Region

VOXEL_UM = 40.0
NEAR_CORTEX_UM = 80.0


def _core(seed: int) -> BoneVolume:
    """A 1.92 mm all-trabecular cube from the middle of the 3.84 mm phantom, away from its cortex."""
    big = study_volume("lumbar_spine", 3.84, VOXEL_UM, seed)
    region = np.asarray(big.region)
    n = region.shape[0]
    cortex_rows = np.nonzero((region == Region.CORTICAL).any(axis=(0, 2)))[0]  # the cortex is a band along y
    y0 = n // 2 if cortex_rows.mean() < n / 2 else 0
    sl = (slice(n // 4, n // 4 + n // 2), slice(y0, y0 + n // 2), slice(n // 4, n // 4 + n // 2))
    trab = np.full(region[sl].shape, int(Region.TRABECULAR), dtype=np.uint8)
    return dataclasses.replace(big, bone=np.ascontiguousarray(np.asarray(big.bone)[sl]),
                               mineral=np.ascontiguousarray(np.asarray(big.mineral)[sl]), region=trab)


def one_year(volume: BoneVolume, preset: str, seed: int) -> tuple[np.ndarray, ...]:
    """One year of ``preset`` at the lumbar spine on ``volume`` (the invariance matrix's steps):
    bone, mineral and labels on day 0 (after the mineral's spin-up), bone and mineral at the end."""
    day0: dict[str, np.ndarray] = {}

    def measure(v: BoneVolume) -> dict[str, float]:
        if not day0:  # the first row is day 0, after the mineral's spin-up
            day0.update(bone=np.asarray(v.bone, np.float64).copy(), mineral=np.asarray(v.mineral, np.float64).copy(),
                        region=np.asarray(v.region).copy())
        return {}  # the measures are taken from the two volumes

    sc = Scenario(name="one-year-trace", site="lumbar_spine", periods=(Period(preset, 1.0),), seed=seed, step_days=10,
                  metrics_every_days=365, checkpoint_every_days=10**6, fragments_every_days=30)
    res = simulate(sc, None, backend="numpy", progress=False, render=False, measure=measure, volume=volume,
                   equilibrate=True)
    return (day0["bone"], day0["mineral"], day0["region"], np.asarray(res.volume.bone, np.float64),
            np.asarray(res.volume.mineral, np.float64))


def trace(volume: BoneVolume, preset: str, seed: int, near_cortex: bool = True) -> dict[str, float]:
    """One year of ``preset`` on ``volume``: the measures of the module docstring."""
    b0, m0, r0, b1, m1 = one_year(volume, preset, seed)
    trab, cort = r0 == Region.TRABECULAR, r0 == Region.CORTICAL
    out = {"tb_vbmd_pct": 100.0 * (m1[trab].mean() / m0[trab].mean() - 1.0)}
    v = float(volume.voxel_size_um)
    # the whole contoured compartment (the package's measure before the trabecular VOI)
    t0 = contoured_regions(b0, r0, v) == Region.TRABECULAR
    t1 = contoured_regions(b1, r0, v) == Region.TRABECULAR
    out["tb_vbmd_contoured_pct"] = 100.0 * (m1[t1].mean() / m0[t0].mean() - 1.0)
    out["bv_tv_pct"] = 100.0 * ((b1[trab] >= 0.5).mean() / (b0[trab] >= 0.5).mean() - 1.0)
    out["bv_tv_contoured_pct"] = 100.0 * ((b1[t1] >= 0.5).mean() / (b0[t0] >= 0.5).mean() - 1.0)
    if not near_cortex:
        return out
    gain = b1 - b0
    solid = b0 >= 0.5
    surface = solid & ~ndimage.binary_erosion(solid, border_value=1)
    if cort.any():
        near = trab & (ndimage.distance_transform_edt(~cort) * v <= NEAR_CORTEX_UM)
        out["near_cortex_share_of_gain"] = float(gain[near].sum() / gain[trab].sum())
        endocortical = surface & cort & ndimage.binary_dilation(trab)
        out["endocortical_per_trabecular_surface"] = float(endocortical.sum() / (surface & trab).sum())
    return out


def _matrix_job(job: tuple[str, float, float, int]) -> dict[str, Any]:
    """One seed of one geometry of the invariance matrix (in a worker)."""
    import numba  # noqa: PLC0415

    numba.set_num_threads(1)
    preset, edge, voxel, seed = job
    volume = study_volume("lumbar_spine", edge, voxel, seed)
    if volume is None:  # a native voxel size: the site's phantom
        volume = make_phantom("lumbar_spine", int(round(edge * 1000.0 / voxel)), voxel, seed=seed)
    return {"edge_mm": edge, "voxel_size_um": voxel, "seed": seed, **trace(volume, preset, seed, near_cortex=False)}


def matrix(preset: str, workers: int) -> list[dict[str, Any]]:
    """Every geometry of the invariance matrix with its seeds; prints the table and the verdicts."""
    jobs = [(preset, e, v, s) for e in INVARIANCE_EDGES_MM for v in INVARIANCE_VOXEL_SIZES_UM
            for s in INVARIANCE_SEEDS[e]]
    jobs.sort(key=lambda j: -(j[1] / j[2]) ** 3)  # the largest volumes first
    with mp.get_context("spawn").Pool(workers) as pool:
        rows = pool.map(_matrix_job, jobs, chunksize=1)
    keys = ("tb_vbmd_pct", "tb_vbmd_contoured_pct", "bv_tv_pct", "bv_tv_contoured_pct")
    print(f"\n{preset}, one year, lumbar: seed means, %/yr")
    print("| edge | voxel | seeds | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 3) + "|")
    means: dict[str, list[float]] = {k: [] for k in keys}
    for e in INVARIANCE_EDGES_MM:
        for v in INVARIANCE_VOXEL_SIZES_UM:
            sel = [r for r in rows if r["edge_mm"] == e and r["voxel_size_um"] == v]
            cells = []
            for k in keys:
                m = float(np.mean([r[k] for r in sel]))
                means[k].append(m)
                cells.append(f"{m:+.2f}")
            print(f"| {e:.2f} mm | {v:g} µm | {len(sel)} | " + " | ".join(cells) + " |")
    for k in keys:
        effect, worst, tol, agree = invariance_verdict(means[k])
        print(f"{k}: effect {effect:+.2f}, largest distance {worst:.2f} (±{tol:.2f}): "
              f"{'agree' if agree else 'disagree'}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gh_peptide_sermorelin")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    ap.add_argument("--json", default=None)
    ap.add_argument("--matrix", action="store_true", help="every geometry of the invariance matrix")
    ap.add_argument("--workers", type=int, default=2, help="with --matrix: worker processes (default 2)")
    args = ap.parse_args()
    from voxelbone.runfolder import git_commit  # noqa: PLC0415

    commit = git_commit()  # before the record is opened: rewriting it would count as a change
    if args.matrix:
        t0 = time.perf_counter()
        rows = matrix(args.preset, args.workers)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump({"preset": args.preset, "rows": rows, "git_commit": commit, "date": time.strftime("%Y-%m-%d"),
                           "wall_s": time.perf_counter() - t0, "workers": args.workers}, fh, indent=1)
        return
    samples = {"cube 1.92 mm": lambda s: study_volume("lumbar_spine", 1.92, VOXEL_UM, s),
               "core 1.92 mm": _core,
               "cube 3.84 mm": lambda s: study_volume("lumbar_spine", 3.84, VOXEL_UM, s)}
    t0 = time.perf_counter()
    rows = []
    for name, make in samples.items():
        for seed in args.seeds:
            row = {"sample": name, "seed": seed, **trace(make(seed), args.preset, seed)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.preset}, one year, {VOXEL_UM:g} µm, seeds {args.seeds}: mean ± SD over seeds")
    keys = ("tb_vbmd_pct", "tb_vbmd_contoured_pct", "near_cortex_share_of_gain", "endocortical_per_trabecular_surface")
    print("| sample | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name in samples:
        cells = []
        for k in keys:
            vals = [r[k] for r in rows if r["sample"] == name and k in r]
            cells.append(f"{np.mean(vals):.3g} ± {np.std(vals, ddof=1):.2g}" if vals else "–")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"preset": args.preset, "voxel_size_um": VOXEL_UM, "rows": rows, "git_commit": commit,
                       "date": time.strftime("%Y-%m-%d"), "wall_s": time.perf_counter() - t0}, fh, indent=1)


if __name__ == "__main__":
    main()
