"""Why GH therapy gains less with load-driven remodelling on (docs/user-guide/mechanics.md).

    python benchmarks/gh_mechanics_study.py [--seeds 1 2 3] [--modes off on activation refill]
        [--presets gh_peptide_sermorelin trt] [--igf1-activation X [X ...]] [--overfill-reach R [R ...]]
        [--workers 2] [--json F]

Runs the calibration table's lumbar cell at 40 µm (3.84 mm cube, the 20 µm phantom
block-averaged, 10-day steps; two years for GH therapy, one for the others) with mechanics
off, on (a solve every 28 days), and with one lever of the mechanostat's rule alone
(``MechanostatParams.steer``: ``activation`` or ``refill``). For each run it prints the
annualised ``abmd_pct``, Tb.vBMD and BV/TV, the lowest ``abmd_pct`` of the run (GH therapy's
early dip), the BMUs, perforations and fragments removed,
and, averaged over the solves of the run (mechanics on), the trabecular BMUs in flight
(weighted by the bone they remove): their mean refill factor ``f``, and the share whose
modulated refill ``r·f`` lies above and below level 2 — the cavity refilled plus an overfill
one cavity depth thick, beyond which a BMU's build flattened while the overfill could reach
no farther (``overfill_reach_depths`` 1, until 2026-12; tests/test_mechanostat.py). The cell
layer's refill ``r`` of the day is read from the preset's activity course
(:func:`voxelbone.biology.cell_activity`).
``--igf1-activation`` runs everything again for each value given in place of the fitted
``HormoneEffects.igf1_activation`` (a probe of a re-fit; the model's value is 0.6).
``--overfill-reach`` does the same for ``RemodelParams.overfill_reach_depths`` (how far above
the old surface a BMU may build, in cavity depths; the model's value is 2). About 20 s per
run with mechanics off and 3-4 min with it on, per core; the runs go to ``--workers``
processes of one thread each.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import multiprocessing as mp
import time
from typing import Any

import numpy as np

SITE = "lumbar_spine"
EDGE_MM = 3.84
VOXEL_SIZE_UM = 40.0
FE_EVERY_DAYS = 28
#: Level of a BMU's refill beyond which its build flattened with an overfill reach of one cavity depth.
KINK_LEVEL = 2.0


def _init() -> None:
    import numba  # noqa: PLC0415

    numba.set_num_threads(1)


def run(job: tuple[str, str, int, float | None, float | None]) -> dict[str, Any]:
    """One run: ``(preset, mode, seed, igf1_activation or None, overfill_reach or None)``; returns its record."""
    preset, mode, seed, igf1_activation, reach = job
    import voxelbone.biology as biology  # noqa: PLC0415
    import voxelbone.remodel as remodel  # noqa: PLC0415
    import voxelbone.remodel.mechanostat as mech  # noqa: PLC0415
    from voxelbone.biology import cell_activity  # noqa: PLC0415
    from voxelbone.calibration import StudyCell, bmd_change, study_volume  # noqa: PLC0415
    from voxelbone.presets import course_for_periods  # noqa: PLC0415
    from voxelbone.remodel import engine  # noqa: PLC0415
    from voxelbone.volume import Region  # noqa: PLC0415

    sim = importlib.import_module("voxelbone.simulate")
    fitted = biology.DEFAULT_EFFECTS
    if igf1_activation is not None:
        biology.DEFAULT_EFFECTS = dataclasses.replace(fitted, igf1_activation=igf1_activation)
    years = StudyCell(preset, SITE, EDGE_MM, VOXEL_SIZE_UM).years_run  # the clinical window: 2 years for GH
    refill = cell_activity(course_for_periods([(preset, years)]), SITE).refill_trabecular
    solves: list[dict[str, float]] = []
    engines: list[Any] = []
    patched = {(sim._Mechanics, "_modulate"): sim._Mechanics._modulate,
               (engine.Remodeler, "__init__"): engine.Remodeler.__init__,
               (mech, "MechanostatParams"): mech.MechanostatParams,
               (remodel, "RemodelParams"): remodel.RemodelParams}

    def modulate(self: Any, day: int) -> None:
        patched[sim._Mechanics, "_modulate"](self, day)
        cav = mech.bmus_in_flight(self.rem.state)
        w = np.asarray(cav.weight, dtype=np.float64)
        w[np.asarray(self.rem.state.region) != int(Region.TRABECULAR)] = 0.0
        if w.sum() <= 0:
            return
        # each voxel refills at its BMU's seed's factor
        f = np.asarray(self.rem.modulation.refill, dtype=np.float64).ravel()[np.asarray(cav.seed).ravel()].reshape(w.shape)
        r = float(refill[min(day, refill.size - 1)])
        solves.append({"day": day, "refill": r, "mean_f": float((w * f).sum() / w.sum()),
                       "above_kink": float(w[r * f > KINK_LEVEL].sum() / w.sum()),
                       "below_kink": float(w[r * f < KINK_LEVEL].sum() / w.sum())})

    def init(self: Any, *a: Any, **k: Any) -> None:
        patched[engine.Remodeler, "__init__"](self, *a, **k)
        engines.append(self)

    sim._Mechanics._modulate = modulate
    engine.Remodeler.__init__ = init
    if reach is not None:  # simulate() builds its RemodelParams from the package namespace
        remodel.RemodelParams = functools.partial(patched[remodel, "RemodelParams"], overfill_reach_depths=reach)
    if mode in ("activation", "refill"):
        mech.MechanostatParams = functools.partial(patched[mech, "MechanostatParams"], steer=mode)
    t0 = time.perf_counter()
    try:
        r = bmd_change(preset, SITE, seed=seed, years=years, volume=study_volume(SITE, EDGE_MM, VOXEL_SIZE_UM, seed),
                       backend="numpy", fe_every_days=0 if mode == "off" else FE_EVERY_DAYS)
    finally:
        for (owner, name), value in patched.items():
            setattr(owner, name, value)
        biology.DEFAULT_EFFECTS = fitted
    counts = engines[-1].stats()
    assert engines[-1].params.overfill_reach_depths == (patched[remodel, "RemodelParams"]().overfill_reach_depths
                                                        if reach is None else reach)
    out = {"preset": preset, "mode": mode, "seed": seed, "igf1_activation": igf1_activation, "overfill_reach": reach,
           "wall_s": time.perf_counter() - t0, "lowest_abmd_pct": r.minimum_percent,
           "change_pct_per_yr": {m: r.annual_change_pct(m) for m in ("abmd_pct", "tb_vbmd_mg_cm3", "bv_tv")},
           "bmus_trabecular": int(counts.bmus_trabecular), "perforations": int(counts.perforations),
           "fragments_removed": int(counts.fragments_removed)}
    if solves:
        out["solves"] = {k: float(np.mean([s[k] for s in solves])) for k in ("refill", "mean_f", "above_kink", "below_kink")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--modes", nargs="+", choices=("off", "on", "activation", "refill"),
                    default=["off", "on", "activation", "refill"])
    ap.add_argument("--presets", nargs="+", default=["gh_peptide_sermorelin"])
    ap.add_argument("--igf1-activation", type=float, nargs="+", default=None)
    ap.add_argument("--overfill-reach", type=float, nargs="+", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the records here")
    args = ap.parse_args()
    values = args.igf1_activation or [None]
    reaches = args.overfill_reach or [None]
    jobs = [(p, m, s, x, q) for q in reaches for x in values for p in args.presets for m in args.modes for s in args.seeds]
    t0 = time.perf_counter()
    # spawn, not fork: a forked worker can hang in the solver's threads
    with mp.get_context("spawn").Pool(args.workers, initializer=_init) as pool:
        records = pool.map(run, jobs, chunksize=1)
    print(f"{SITE}, {EDGE_MM:g} mm at {VOXEL_SIZE_UM:g} µm, seeds {args.seeds}")
    print("preset | igf1_activation | overfill reach | mode | abmd_pct %/yr | Tb.vBMD %/yr | BV/TV %/yr | lowest abmd_pct | BMUs | "
          "perforations | fragments | mean f | r·f > 2 | r·f < 2")
    for q, x in ((q, x) for q in reaches for x in values):
        for p in args.presets:
            for m in args.modes:
                rs = [r for r in records if r["preset"] == p and r["mode"] == m and r["igf1_activation"] == x
                      and r["overfill_reach"] == q]
                ch = {k: [r["change_pct_per_yr"][k] for r in rs] for k in ("abmd_pct", "tb_vbmd_mg_cm3", "bv_tv")}
                cols = [f"{np.mean(v):+.2f} ({' '.join(f'{y:+.2f}' for y in v)})" for v in ch.values()]
                cols.append(f"{np.mean([r['lowest_abmd_pct'] for r in rs]):+.2f}")
                cols += [f"{np.mean([r[k] for r in rs]):.0f}" for k in ("bmus_trabecular", "perforations", "fragments_removed")]
                if all("solves" in r for r in rs):
                    cols += [f"{np.mean([r['solves'][k] for r in rs]):.3f}" for k in ("mean_f", "above_kink", "below_kink")]
                print(f"{p} | {'fitted' if x is None else f'{x:g}'} | {'model' if q is None else f'{q:g}'} | {m} | "
                      + " | ".join(cols),
                      flush=True)
    if args.json:
        from voxelbone.runfolder import git_commit  # noqa: PLC0415

        commit = git_commit()  # before the record is opened: rewriting it would count as a change
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"records": records, "wall_s": time.perf_counter() - t0, "workers": args.workers,
                       "git_commit": commit,
                       "date": time.strftime("%Y-%m-%d")}, fh, indent=1)


if __name__ == "__main__":
    main()
