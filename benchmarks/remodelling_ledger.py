"""Where a preset's trabecular bone comes from in one year, by kind of voxel, at each voxel size.

    python benchmarks/remodelling_ledger.py [--preset trt] [--edge-mm 1.92] [--voxel-sizes-um 20 40]
        [--seeds 1 2 3] [--in labels|voi|near] [--margin-from centres|faces] [--workers 2] [--json F]

One year of the preset on the lumbar cube of the invariance matrix (``study_volume``: 20 µm
phantoms block-averaged for 40 µm, the same bone at both voxel sizes), as
``voxelbone.calibration.bmd_change`` runs it. The NumPy engine's steps are watched (in the
study's process only; nothing of the package changes): every change of bone inside day 0's
trabecular labels (``--in labels``), day 0's trabecular VOI (``--in voi``) or the labels' part
near the cortex, outside the VOI (``--in near``) is booked, in
per cent of the bone there on day 0, to

* ``day0_cavities``: voxels of cavities still at work on day 0 (the remodelling space the
  spin-up left) and not claimed again in the year: bone resorbed before day 0
  (``day0_resorbed_before``), formed before day 0 (``day0_formed_before``), resorbed and formed
  in the year (``day0_resorbed``, ``day0_formed``);
* ``year_cavities``: cavities started in the year (``year_resorbed``, ``year_formed``);
* ``overfill``: marrow claimed above a cavity's opening (``FLAG_OVERFILL``) and filled;
* ``perforated`` cavities, ``fragments`` removed, ``modelling``-based formation, and the
  ``other`` changes (mostly day-0 cavities before a new cavity claimed them);

and the year's change itself (``gain``); the absolute volumes (mm³) of the bone and the region
on day 0 and of the main classes go beside (``mm3``). With the day-0 cavities booked whole, their formed
over resorbed bone (``day0_formed_over_resorbed``) shows what a change of balance at day 0
does to the cavities already at work. About 5 s per run at 1.92 mm / 40 µm, 10 s at 20 µm, on
one core.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

#: What the year's change is booked to (``other``: the rest, mostly day-0 cavities claimed again
#: in the year before the new claim).
BOOKED = ("day0_resorbed", "day0_formed", "year_resorbed", "year_formed", "overfill", "perforated", "fragments",
          "modelling")
CLASSES = ("gain", "day0_resorbed_before", "day0_formed_before", *BOOKED, "other", "day0_formed_over_resorbed")
#: The classes whose absolute volume (mm³) the record gives beside the percentages.
ABSOLUTE = ("gain", "day0_resorbed_before", "day0_formed_before", "day0_resorbed", "day0_formed", "year_resorbed",
            "year_formed")
_NEVER = np.uint8(16)  # a voxel no cavity claimed in the run
_IN_YEAR = np.uint8(32)  # claimed after day 0


def _voi_from_faces(region: Any, voxel_size_um: float) -> Any:
    """The trabecular VOI with its margin counted from the cortex's voxel faces, i.e. half a voxel
    farther from the cortex voxels' centres than ``trabecular_voi`` counts it: a probe of the
    band's quantisation, not the package's rule."""
    from voxelbone.compartments import ContourParams, trabecular_voi  # noqa: PLC0415

    margin = ContourParams().trabecular_close_um + 0.5 * float(voxel_size_um)
    return trabecular_voi(region, voxel_size_um, params=ContourParams(trabecular_close_um=margin))


def run(job: tuple[str, float, float, int, str, str]) -> dict[str, Any]:
    """One run: ``(preset, edge_mm, voxel_size_um, seed, where, margin_from)``; returns its ledger (% of day 0's bone)."""
    preset, edge_mm, voxel_size_um, seed, where, margin_from = job
    import numba  # noqa: PLC0415

    numba.set_num_threads(1)
    import voxelbone.calibration as cal  # noqa: PLC0415
    from voxelbone.compartments import contoured_regions, trabecular_voi  # noqa: PLC0415
    from voxelbone.remodel import cpu  # noqa: PLC0415
    from voxelbone.remodel import engine as eng  # noqa: PLC0415
    from voxelbone.remodel.state import CLAIM_FLAGS_SHIFT, FLAG_OVERFILL, FLAG_PERFORATED  # noqa: PLC0415
    from voxelbone.volume import Region  # noqa: PLC0415

    book: dict[str, float] = {}
    w: dict[str, Any] = {}  # the watch: tags, per-voxel resorbed/formed bone, day 0's masks

    def add(key: str, x: float) -> None:
        if w.get("started"):
            book[key] = book.get(key, 0.0) + float(x)

    plain_update, plain_model, plain_fragments, plain_measures = (cpu.update, cpu.model, eng.Remodeler.remove_fragments,
                                                                  cal.site_measures)

    def update(state, claimed, codes, sc, refill_mod=None):
        if "tag" not in w:
            w.update(state=state, tag=np.full(state.bone.shape, _NEVER, np.uint8),
                     resorbed=np.zeros(state.bone.shape), formed=np.zeros(state.bone.shape))
        tag, res, form = w["tag"].ravel(), w["resorbed"].ravel(), w["formed"].ravel()
        if claimed.size:
            flags = ((codes >> np.uint64(CLAIM_FLAGS_SHIFT)) & np.uint64(15)).astype(np.uint8)
            tag[claimed] = flags | (_IN_YEAR if w.get("started") else np.uint8(0))
            res[claimed] = 0.0
            form[claimed] = 0.0
        before = state.bone.copy()
        plain_update(state, claimed, codes, sc, refill_mod)
        d = (state.bone - before).astype(np.float64)
        w["resorbed"] += np.where(d < 0, -d, 0.0)
        w["formed"] += np.where(d > 0, d, 0.0)
        if not w.get("started"):
            return
        inside, t = w["inside"], w["tag"]
        over = inside & ((t & FLAG_OVERFILL) != 0)
        perforated = inside & ((t & FLAG_PERFORATED) != 0) & ~over
        dug = inside & ((t & (FLAG_OVERFILL | FLAG_PERFORATED | _NEVER)) == 0)
        add("overfill", d[over].sum())
        add("perforated", d[perforated].sum())
        add("year_resorbed", d[dug & ((t & _IN_YEAR) != 0) & (d < 0)].sum())
        add("year_formed", d[dug & ((t & _IN_YEAR) != 0) & (d > 0)].sum())

    def model(state, sc):
        before = state.bone.copy()
        plain_model(state, sc)
        add("modelling", (state.bone - before)[w["inside"]].sum(dtype=np.float64))

    def fragments(self):
        before = self.state.bone.copy()
        plain_fragments(self)
        if "inside" in w:
            add("fragments", (self.state.bone - before)[w["inside"]].sum(dtype=np.float64))

    def measures(v, *, contour: bool = True):
        bone = np.asarray(v.bone)
        if not w.get("started"):  # day 0: after the spin-up, before the preset's first step
            inside = np.asarray(v.region) == int(Region.TRABECULAR)
            if where != "labels":
                voi_rule = trabecular_voi if margin_from == "centres" else _voi_from_faces
                voi = np.asarray(voi_rule(contoured_regions(v.bone, v.region, v.voxel_size_um), v.voxel_size_um))
                inside = voi if where == "voi" else inside & ~voi
            at_work = (w["state"].bmu_day >= 0) & inside & ((w["tag"] & (FLAG_OVERFILL | FLAG_PERFORATED | _NEVER)) == 0)
            w.update(started=True, inside=inside, at_work=at_work, bone0=float(bone[inside].sum(dtype=np.float64)),
                     volume0=float(inside.sum()), voxel_um3=float(v.voxel_size_um) ** 3)
            book["day0_resorbed_before"] = -float(w["resorbed"][at_work].sum())
            book["day0_formed_before"] = float(w["formed"][at_work].sum())
            w["resorbed"][...] = 0.0
            w["formed"][...] = 0.0
        kept = w["at_work"] & ((w["tag"] & _IN_YEAR) == 0)  # not claimed again in the year
        book["day0_resorbed"] = -float(w["resorbed"][kept].sum())
        book["day0_formed"] = float(w["formed"][kept].sum())
        book["gain"] = float(bone[w["inside"]].sum(dtype=np.float64)) - w["bone0"]
        return plain_measures(v, contour=contour)

    cpu.update, cpu.model, eng.Remodeler.remove_fragments, cal.site_measures = update, model, fragments, measures
    try:
        vol = cal.study_volume("lumbar_spine", edge_mm, voxel_size_um, seed)
        kw = dict(volume=vol) if vol is not None else dict(size=cal._edge_voxels(edge_mm, voxel_size_um),
                                                           voxel_size_um=voxel_size_um)
        cal.bmd_change(preset, "lumbar_spine", seed=seed, years=1.0, backend="numpy",
                       measure_every_days=cal.STUDY_SAMPLE_DAYS, **kw)
    finally:
        cpu.update, cpu.model, eng.Remodeler.remove_fragments, cal.site_measures = (plain_update, plain_model,
                                                                                     plain_fragments, plain_measures)
    pct = {k: 100.0 * v / w["bone0"] for k, v in book.items()}
    pct["other"] = pct["gain"] - sum(pct.get(k, 0.0) for k in BOOKED)
    pct["day0_formed_over_resorbed"] = ((pct["day0_formed_before"] + pct["day0_formed"])
                                        / -(pct["day0_resorbed_before"] + pct["day0_resorbed"]))
    return {"preset": preset, "edge_mm": edge_mm, "voxel_size_um": voxel_size_um, "seed": seed, "in": where,
            "voi_margin_from": margin_from,
            "pct_of_day0_bone": {k: pct.get(k, 0.0) for k in CLASSES},
            "mm3": {"day0_bone": w["bone0"] * w["voxel_um3"] * 1e-9, "region": w["volume0"] * w["voxel_um3"] * 1e-9,
                    **{k: book.get(k, 0.0) * w["voxel_um3"] * 1e-9 for k in ABSOLUTE}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="trt")
    ap.add_argument("--edge-mm", type=float, default=1.92)
    ap.add_argument("--voxel-sizes-um", type=float, nargs="+", default=[20.0, 40.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--in", dest="where", default="labels", choices=["labels", "voi", "near"])
    ap.add_argument("--margin-from", default="centres", choices=["centres", "faces"],
                    help="the VOI's 150 µm margin from the cortex voxels' centres (the package's rule) or faces (a probe)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the records here")
    args = ap.parse_args()
    from study_records import run_jobs, write_record  # noqa: PLC0415

    jobs = [(args.preset, args.edge_mm, v, s, args.where, args.margin_from) for v in args.voxel_sizes_um
            for s in args.seeds]
    records, wall_s, commit = run_jobs(run, jobs, args.workers)
    print(f"{args.preset}, lumbar spine, {args.edge_mm:g} mm, one year, seeds {args.seeds}, in day 0's "
          f"trabecular {args.where}: % of day 0's bone there (seed mean ± SD)")
    print("class | " + " | ".join(f"{v:g} µm" for v in args.voxel_sizes_um))
    for c in CLASSES:
        cells = []
        for v in args.voxel_sizes_um:
            x = np.array([r["pct_of_day0_bone"][c] for r in records if r["voxel_size_um"] == v])
            cells.append(f"{x.mean():+.2f} ± {x.std(ddof=1) if x.size > 1 else 0.0:.2f}")
        print(f"{c} | " + " | ".join(cells), flush=True)
    write_record(args.json, records, wall_s, args.workers, commit)


if __name__ == "__main__":
    main()
