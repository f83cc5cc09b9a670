"""Where a small cube's voxel-size dependence lies: the trabecular bone near the cortex, or all of it.

    python benchmarks/near_cortex_trace.py [--preset postmenopausal_untreated] [--edge-mm 1.92]
        [--seeds 1 … 18] [--workers 2] [--json benchmarks/near_cortex_trace.json]

The invariance matrix's cube (lumbar spine, ``--edge-mm``) at 20 µm and, block-averaged ×2, at
40 µm — the same structure (``voxelbone.calibration.study_volume``) — one year in 10-day steps
for each seed. From day 0 (after the spin-up) to the end it measures the relative change of the
mineral in the engine's day-0 cortex and in three zones of the day-0 trabecular compartment by
distance from that cortex (< 150, 150–400 and ≥ 400 µm), with each zone's share of the day-0
mineral, and ``abmd_pct``. Prints each zone's mean at both voxel sizes and the paired
difference 20 − 40 µm with its 95 % interval over the seeds (the same seed: the same structure).
About 20 s per seed on 2 worker processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from voxelbone.calibration import _edge_voxels, _machine, site_measures, study_volume
from voxelbone.intervals import paired_interval
from voxelbone.runfolder import git_commit
from voxelbone.scenario import Period, Scenario
from voxelbone.simulate import simulate
from voxelbone.volume import Region

ROOT = Path(__file__).resolve().parents[1]
VOXEL_SIZES_UM = (20.0, 40.0)
ZONES_UM = ((0.0, 150.0), (150.0, 400.0), (400.0, float("inf")))


def _zone_names() -> list[str]:
    return ["cortex"] + [f"trabecular {lo:g}-{hi:g} µm" if np.isfinite(hi) else f"trabecular ≥ {lo:g} µm"
                         for lo, hi in ZONES_UM]


def _run(preset: str, edge_mm: float, voxel_size_um: float, seed: int) -> dict:
    vol = study_volume("lumbar_spine", edge_mm, voxel_size_um, seed)  # None: the site's phantom at this voxel size
    samples = []

    def measure(v):
        samples.append((np.array(v.bone, dtype=np.float64), np.array(v.mineral, dtype=np.float64), np.array(v.region)))
        return site_measures(v, contour=False)

    size = _edge_voxels(edge_mm, voxel_size_um) if vol is None else None
    sc = Scenario(name="near-cortex", site="lumbar_spine", periods=(Period(preset, 1.0),), size=size,
                  voxel_size_um=voxel_size_um, seed=seed, step_days=10, metrics_every_days=10**6,
                  checkpoint_every_days=10**6, fragments_every_days=30)
    res = simulate(sc, None, backend="numpy", progress=False, render=False, volume=vol, equilibrate=True, measure=measure)
    (b0, m0, region), (_, m1, _) = samples[0], samples[-1]
    cortex, trab = region == Region.CORTICAL, region == Region.TRABECULAR
    dist = ndimage.distance_transform_edt(~cortex) * voxel_size_um
    masks = [cortex] + [trab & (dist >= lo) & (dist < hi) for lo, hi in ZONES_UM]
    total = float(m0[cortex | trab].sum())
    first, last = res.rows[0], res.rows[-1]
    trab_bone_mm3 = float(b0[trab].sum()) * (voxel_size_um / 1000.0) ** 3
    return {"seed": seed, "voxel_size_um": voxel_size_um, "abmd_pct": float(last["abmd_pct"]),
            "change_pct": [100.0 * (float(m1[z].sum()) / float(m0[z].sum()) - 1.0) for z in masks],
            "mineral_share": [float(m0[z].sum()) / total for z in masks],
            # over the year (end minus day 0): perforating BMUs per trabecular BMU started, and the bone
            # removed as loose fragments in % of the day-0 trabecular bone volume
            "perforations_per_trabecular_bmu": (float(last["engine_perforations"]) - float(first["engine_perforations"]))
            / max(1.0, float(last["engine_bmus_trabecular"]) - float(first["engine_bmus_trabecular"])),
            "fragments_pct_of_trabecular_bone": 100.0 * (float(last["engine_fragment_volume_mm3"])
                                                         - float(first["engine_fragment_volume_mm3"])) / trab_bone_mm3}


def _task(args: tuple) -> dict:
    import numba  # noqa: PLC0415

    numba.set_num_threads(1)  # one process per core
    return _run(*args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="postmenopausal_untreated")
    ap.add_argument("--edge-mm", type=float, default=1.92)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 19)))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="write the record here (a new file)")
    args = ap.parse_args(argv)
    if args.json is not None and args.json.exists():
        ap.error(f"{args.json} exists; give a new file")
    if len(set(args.seeds)) != len(args.seeds):
        ap.error("a seed is given twice")
    commit = git_commit()  # before the record is written
    t0 = time.perf_counter()
    tasks = [(args.preset, args.edge_mm, v, s) for s in args.seeds for v in VOXEL_SIZES_UM]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        runs = pool.map(_task, tasks)
    by = {(r["seed"], r["voxel_size_um"]): r for r in runs}
    fine, coarse = ([by[s, v] for s in args.seeds] for v in VOXEL_SIZES_UM)
    summary = {}
    print(f"{args.preset}, {args.edge_mm:g} mm cube, seeds {args.seeds[0]}–{args.seeds[-1]} ({len(args.seeds)}), %/yr")
    for i, name in enumerate(["abmd_pct"] + _zone_names()):
        get = (lambda r: r["abmd_pct"]) if i == 0 else (lambda r, k=i - 1: r["change_pct"][k])
        a, b = [get(r) for r in fine], [get(r) for r in coarse]
        diff = paired_interval(b, a)
        share = "" if i == 0 else f"  mineral share {np.mean([r['mineral_share'][i - 1] for r in fine]):.3f}"
        print(f"{name:26s} 20 µm {np.mean(a):+6.2f}  40 µm {np.mean(b):+6.2f}  20 − 40: {diff.format()}{share}")
        summary[name] = {"mean_20um": float(np.mean(a)), "mean_40um": float(np.mean(b)),
                         "paired_20_minus_40": [diff.mean, diff.low, diff.high]}
    for key in ("perforations_per_trabecular_bmu", "fragments_pct_of_trabecular_bone"):
        a, b = [r[key] for r in fine], [r[key] for r in coarse]
        print(f"{key:34s} 20 µm {np.mean(a):.4f}  40 µm {np.mean(b):.4f}  20 − 40: {paired_interval(b, a).format('+.4f')}")
        summary[key] = {"mean_20um": float(np.mean(a)), "mean_40um": float(np.mean(b))}
    wall = time.perf_counter() - t0
    print(f"{wall / 60:.1f} min on {args.workers} worker processes")
    if args.json is not None:
        record = {"preset": args.preset, "edge_mm": args.edge_mm, "seeds": args.seeds, "runs": runs, "summary": summary,
                  "wall_s": wall, "n_workers": args.workers, "git_commit": commit, "machine": _machine(),
                  "date": time.strftime("%Y-%m-%d")}
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
