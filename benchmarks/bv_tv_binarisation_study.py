"""Why TRT's BV/TV depends on the voxel size while its bone does not (docs/user-guide/invariance.md).

    python benchmarks/bv_tv_binarisation_study.py [--preset trt] [--edge-mm 1.92]
        [--voxel-sizes-um 20 30 40] [--seeds 1 2 3] [--workers 2] [--variant model] [--json F]

One year of the preset on the lumbar cube of the invariance matrix (``study_volume``: 20 µm
phantoms block-averaged for 40 µm), per voxel size the seed mean of the annual change of
BV/TV binarised at bone fractions 0.4, 0.5 (the model's ``BONE_THRESHOLD``) and 0.6, of the
trabecular bone fraction (partial voxels counted as they are) and of Tb.vBMD, all in the
trabecular VOI as the studies measure them (``site_measures``), and of the bone fraction in
day 0's trabecular VOI and day 0's trabecular labels held fixed (``_voi0``, ``_labels0``: the
same voxels at the start and the end, so a change of the contour does not count). About
10-20 s per run on one core at 1.92 mm. ``--variant overfill_on_surface`` runs the NumPy engine with the prototype
overfill rule of ``overfill_on_surface.py`` (a diagnostic, not the model).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

THRESHOLDS = (0.4, 0.5, 0.6)
COLUMNS = ("bv_tv_0.4", "bv_tv_0.5", "bv_tv_0.6", "tb_bone_fraction", "tb_vbmd_mg_cm3", "tb_bone_fraction_voi0",
           "tb_bone_fraction_labels0")


def run(job: tuple[str, float, float, int, str]) -> dict[str, Any]:
    """One run: ``(preset, edge_mm, voxel_size_um, seed, variant)``; returns its record."""
    preset, edge_mm, voxel_size_um, seed, variant = job
    import numba  # noqa: PLC0415
    from overfill_on_surface import VARIANTS  # noqa: PLC0415

    numba.set_num_threads(1)
    import voxelbone.calibration as cal  # noqa: PLC0415
    from voxelbone.compartments import contoured_regions, trabecular_voi  # noqa: PLC0415
    from voxelbone.volume import Region  # noqa: PLC0415

    plain = cal.site_measures
    day0: dict[str, np.ndarray] = {}

    def measures(v: Any, *, contour: bool = True) -> dict[str, float]:
        # the trabecular VOI of site_measures (contoured), or the labels
        trab = (trabecular_voi(contoured_regions(v.bone, v.region, v.voxel_size_um), v.voxel_size_um) if contour
                else v.region == int(Region.TRABECULAR))
        # the first measurement is day 0's: its VOI and its labels, held fixed for the later ones
        if not day0:
            day0.update(voi=trab, labels=np.asarray(v.region) == int(Region.TRABECULAR))
        return {**plain(v, contour=contour),
                **{f"bv_tv_{t:g}": float(((v.bone >= t) & trab).sum() / trab.sum()) for t in THRESHOLDS},
                "tb_bone_fraction_voi0": float(np.asarray(v.bone)[day0["voi"]].mean()),
                "tb_bone_fraction_labels0": float(np.asarray(v.bone)[day0["labels"]].mean())}

    cal.site_measures = measures  # bmd_change measures with the module's function
    try:
        vol = cal.study_volume("lumbar_spine", edge_mm, voxel_size_um, seed)
        kw = dict(volume=vol) if vol is not None else dict(size=cal._edge_voxels(edge_mm, voxel_size_um),
                                                           voxel_size_um=voxel_size_um)
        with VARIANTS[variant]():
            r = cal.bmd_change(preset, "lumbar_spine", seed=seed, years=1.0, backend="numpy", **kw)
    finally:
        cal.site_measures = plain
    return {"preset": preset, "edge_mm": edge_mm, "voxel_size_um": voxel_size_um, "seed": seed, "variant": variant,
            "change_pct_per_yr": {c: r.annual_change_pct(c) for c in COLUMNS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="trt")
    ap.add_argument("--edge-mm", type=float, default=1.92)
    ap.add_argument("--voxel-sizes-um", type=float, nargs="+", default=[20.0, 30.0, 40.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variant", default="model", choices=["model", "overfill_on_surface"])
    ap.add_argument("--json", default=None, help="write the records here")
    args = ap.parse_args()
    from study_records import run_jobs, write_record  # noqa: PLC0415

    jobs = [(args.preset, args.edge_mm, v, s, args.variant) for v in args.voxel_sizes_um for s in args.seeds]
    records, wall_s, commit = run_jobs(run, jobs, args.workers)
    print(f"{args.preset}, lumbar spine, {args.edge_mm:g} mm, one year, seeds {args.seeds}, {args.variant}: change %/yr")
    print("voxel size | " + " | ".join(COLUMNS))
    for v in args.voxel_sizes_um:
        rs = [r["change_pct_per_yr"] for r in records if r["voxel_size_um"] == v]
        print(f"{v:g} µm | " + " | ".join(f"{np.mean([r[c] for r in rs]):+.2f}" for c in COLUMNS), flush=True)
    write_record(args.json, records, wall_s, args.workers, commit)


if __name__ == "__main__":
    main()
