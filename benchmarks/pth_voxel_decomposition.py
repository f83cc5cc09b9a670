"""Where a preset's voxel-size dependence comes from: the same bone at 20 µm and at 40 µm, decomposed.

    python benchmarks/pth_voxel_decomposition.py [--preset hyperparathyroidism] [--seeds 1,2,3]
                                                 [--edge-mm 1.92] [--variants base,no_perforation,no_intracortical]
                                                 [--probe] [--record FILE]

Each seed's lumbar phantom is built at 20 µm and run one year (10-day steps) as it is and
block-averaged ×2 to 40 µm (``volume.coarsen``: the structure a 20 µm scan holds, as in
``tests/test_invariance.py``), so the two runs differ only in the voxel size. Per run it
records the annual change of ``abmd_pct`` and of its two terms (Tb.vBMD and Ct.vBMD; the
lumbar DXA weights are 0.34 and 0.66), the bone volume of each compartment, BV/TV, the BMUs
started (trabecular and endocortical hemi-osteonal, intracortical pore-wall), the cavities
flagged as perforations and the fragments removed, and prints the seed means side by side.

Variants (diagnostic counterfactuals, not model options; each patches one rule of the NumPy
engine inside this process only):

* ``no_perforation`` — no cavity is flagged as a perforation (every cavity refills);
* ``no_intracortical`` — no pore-wall (osteonal) BMU starts (``p_osteonal = 0``);
* ``no_fragments`` — loose bone is never removed (``Remodeler.remove_fragments`` does nothing);
* ``quiescent_only`` — no BMU starts on the wall of an open cavity (a surface voxel with a marrow
  face-neighbour that an active BMU holds); BMUs start on quiescent surface only;
* ``quiescent_renormalised`` — the same, with each step's activation probabilities divided by
  the quiescent share of the surface voxels (trabecular/endocortical and pore-wall apart), so
  the BMUs started per year per µm² of surface stay what the rates ask;
* ``one_scale_40``, ``one_scale_80`` — the candidate activation rule
  (``RemodelParams.surface_scale_um`` 40 or 80 µm, ``surface_every_days`` 30): κ and the pore
  walls' own κ_wall per voxel-face area of the surface a grid of that voxel size holds,
  measured again every 30 days;
* ``per_column_perforation`` — a prototype of another perforation rule (not in the model):
  a trabecular or endocortical cavity is no longer flagged as a whole from one ray; each of
  its voxels below the opening loses its refill when the point half a voxel under its
  column's floor is marrow (that column cut through the trabecula), the rest refills.
* ``per_column_bone_floor`` — the same prototype, except that a column counts as cut through
  only when its bone reached the floor (the point half a voxel *above* the floor held bone
  before the cavity opened): a column whose floor lies in the marrow beside or above a
  curved rod, which removed no bone at its floor, keeps its refill.
* ``per_column_integrated`` — per column, in µm rather than in voxels: the bone fraction is
  integrated along the column (16 nearest-voxel samples a stretch) over the cavity's own depth above the floor
  (the bone it removed) and over 60 µm below it (the bone left under it); the column is cut
  through when it removed more than 10 µm of bone and less than 10 µm is left under it.

The share of the 20 µm – 40 µm gap that disappears under a variant is the share that rule
carries. ``--probe`` adds the static test of the perforation rule: on one structure (the
bone after the 20 µm run of seed 1) the engine's own cavity (``cpu.make_cavity``, at the
preset's erosion depth) is seeded on every trabecular surface voxel, at 20 µm and on the same
bone block-averaged to 40 µm, and the share flagged as perforations is printed.
The results are written to ``--record`` (JSON; default ``results/pth_voxel_decomposition.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from voxelbone.calibration import site_measures
from voxelbone.metrics.connectivity import connectivity_density
from voxelbone.phantom import make_phantom
from voxelbone.remodel import cpu, engine
from voxelbone.remodel.state import CLAIM_FLAGS_SHIFT, FLAG_PERFORATED, RemodelState
from voxelbone.scenario import Period, Scenario
from voxelbone.simulate import simulate
from voxelbone.volume import BoneVolume, Region, coarsen

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("base", "no_perforation", "no_intracortical", "per_column_perforation", "per_column_bone_floor",
            "per_column_integrated", "no_fragments", "quiescent_only",
            "quiescent_renormalised", "one_scale_40", "one_scale_80")
_VOXEL_UM = [20.0]  # the voxel size of the run in progress (per_column_integrated)
COUNTERS = ("bmus_trabecular", "bmus_osteonal", "perforations", "fragments_removed")


def _measure(volume: BoneVolume) -> dict[str, float]:
    out = site_measures(volume)
    v3 = (volume.voxel_size_um / 1000.0) ** 3
    for name, label in (("tb", Region.TRABECULAR), ("ct", Region.CORTICAL)):
        out[f"{name}_bone_mm3"] = float(volume.bone[volume.region == int(label)].sum(dtype=np.float64)) * v3
    trab = volume.region == int(Region.TRABECULAR)
    out["conn_d"] = connectivity_density((volume.bone >= 0.5) & trab, volume.voxel_size_um) * trab.size / max(
        int(trab.sum()), 1)  # per mm³ of the labelled trabecular compartment
    return out


class _Patched:
    """Apply one diagnostic variant to the NumPy engine for the duration of a ``with`` block."""

    def __init__(self, variant: str) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        self.variant = variant
        self.saved: list[tuple[Any, str, Any]] = []

    def _set(self, obj: Any, name: str, value: Any) -> None:
        self.saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def __enter__(self) -> "_Patched":
        if self.variant == "no_perforation":
            self._set(cpu, "_perforates", lambda *args, **kwargs: False)
        elif self.variant.startswith("per_column"):
            rule = self.variant
            make, codes = cpu.make_cavity, cpu.claim_codes

            def make_cavity(*a: Any, **k: Any) -> Any:
                c = make(*a, **k)
                if not c.osteonal:
                    c.perforated = False
                return c

            self._set(cpu, "make_cavity", make_cavity)
            self._set(cpu, "claim_codes", lambda state, si, c, overfill=np.float32(0.0):
                      _per_column(state, c, *codes(state, si, c, overfill), rule=rule))
        elif self.variant in ("quiescent_only", "quiescent_renormalised"):
            activate = cpu.activate
            renormalise = self.variant == "quiescent_renormalised"

            def quiescent(state: RemodelState, seed: int, step: int, sc: Any, *a: Any, **k: Any) -> np.ndarray:
                busy = np.zeros(state.bone.shape, dtype=bool)
                cpu._shift_or((state.bmu_day >= 0) & (state.bone < 0.5), busy)
                if renormalise:
                    any_m, any_tm = cpu.surface_flags(state.bone, state.region)
                    surf = (state.region != int(Region.OUTSIDE)) & (state.bmu_day < 0) & (state.bone >= 0.5) & any_m
                    wall = surf & (state.region == int(Region.CORTICAL)) & ~any_tm
                    hemi = surf & ~wall
                    share = [float((m & ~busy).sum()) / max(float(m.sum()), 1.0) for m in (hemi, wall)]
                    sc = dataclasses.replace(
                        sc, p_hemi=np.float32(min(1.0, float(sc.p_hemi) / max(share[0], 1e-6))),
                        p_osteonal=np.float32(min(1.0, float(sc.p_osteonal) / max(share[1], 1e-6))))
                idx = activate(state, seed, step, sc, *a, **k)
                return idx[~busy.ravel()[idx]]

            self._set(cpu, "activate", quiescent)
        elif self.variant.startswith("one_scale_"):
            # the candidate rule: κ and κ_wall per voxel-face area of the surface a grid of this
            # voxel size holds, measured again every 30 days (RemodelParams.surface_scale_um)
            scale = float(self.variant.rsplit("_", 1)[1])
            init = engine.Remodeler.__init__

            def one_scale(eng: Any, volume: Any, params: Any = None, *a: Any, **k: Any) -> None:
                params = dataclasses.replace(params or engine.RemodelParams(), surface_scale_um=scale,
                                             surface_every_days=30)
                init(eng, volume, params, *a, **k)

            self._set(engine.Remodeler, "__init__", one_scale)
        elif self.variant == "no_fragments":
            self._set(engine.Remodeler, "remove_fragments", lambda _self: None)
        elif self.variant == "no_intracortical":
            original = engine.step_scalars
            self._set(engine, "step_scalars",
                      lambda *a, **k: dataclasses.replace(original(*a, **k), p_osteonal=np.float32(0.0)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for obj, name, value in reversed(self.saved):
            setattr(obj, name, value)


def _per_column(state: RemodelState, c: Any, flat: np.ndarray, code: np.ndarray, *,
                rule: str = "per_column_perforation") -> tuple[np.ndarray, np.ndarray]:
    """Set the perforation flag of each claimed voxel whose column cuts through, by ``rule``
    (one of the ``per_column_*`` variants)."""
    if c.osteonal or flat.size == 0:
        return flat, code
    f32 = np.float32
    shape = state.bone.shape
    qz, qy, qx = (a.astype(f32) for a in np.unravel_index(flat, shape))
    dz, dy, dx = qz - c.cz, qy - c.cy, qx - c.cx
    w = -((dz * c.nz + dy * c.ny) + dx * c.nx)
    rho2 = np.maximum(((dz * dz + dy * dy) + dx * dx) - w * w, f32(0.0))
    wf = c.a * np.sqrt(np.maximum(f32(1.0) - rho2 / (c.b * c.b), f32(0.0)))
    ds = (wf - w) + f32(0.5)
    under = [np.floor(q - ds * n + f32(0.5)).astype(np.int64) for q, n in ((qz, c.nz), (qy, c.ny), (qx, c.nx))]
    inside = np.all([(u >= 0) & (u < m) for u, m in zip(under, shape)], axis=0)
    clipped = tuple(np.clip(u, 0, m - 1) for u, m in zip(under, shape))
    cut = inside & (state.region[clipped] != int(Region.OUTSIDE)) & (state.bone[clipped] < 0.5) & (w > f32(-0.5))
    if rule == "per_column_integrated":
        cut = inside & (w > f32(-0.5)) & _integrated_cut(state, (qz, qy, qx), (c.nz, c.ny, c.nx), w, wf)
    if rule == "per_column_bone_floor":
        above = tuple(np.clip(np.floor(q - (ds - f32(1.0)) * n + f32(0.5)).astype(np.int64), 0, m - 1)
                      for q, n, m in zip((qz, qy, qx), (c.nz, c.ny, c.nx), shape))
        cut &= state.bone[above] >= 0.5
    bit = np.uint64(FLAG_PERFORATED) << np.uint64(CLAIM_FLAGS_SHIFT)  # its place in the claim code (cpu.pack_claims)
    return flat, np.where(cut, code | bit, code & ~bit)


def _integrated_cut(state: RemodelState, q: tuple[np.ndarray, ...], n: tuple[Any, ...],
                    w: np.ndarray, wf: np.ndarray) -> np.ndarray:
    """``per_column_integrated``: the column removed > 10 µm of bone and left < 10 µm under its floor."""
    h = _VOXEL_UM[0]
    shape = state.bone.shape
    bone = np.where(state.region == int(Region.OUTSIDE), np.float32(0.0), state.bone)

    def integral(s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
        # ∫ bone ds (µm) along −n from s0 to s1 voxels below the voxel centre, 16 nearest-voxel samples
        total = np.zeros(s0.shape, np.float64)
        k = 16
        for i in range(k):
            s = s0 + (s1 - s0) * ((i + 0.5) / k)
            idx = tuple(np.clip(np.floor(qq - s * nn + 0.5).astype(np.int64), 0, m - 1)
                        for qq, nn, m in zip(q, n, shape))
            total += bone[idx]
        return total / k * (s1 - s0) * h

    floor = (wf - w).astype(np.float64)  # the column's floor, in voxels below this voxel's centre
    removed = integral(-w.astype(np.float64), floor)  # from the opening down to the floor
    left = integral(floor, floor + 60.0 / h)
    return (removed > 10.0) & (left < 10.0)


def _phantom(edge_mm: float, seed: int) -> BoneVolume:
    n = int(round(edge_mm * 1000.0 / 20.0))
    return make_phantom("lumbar_spine", n, 20.0, seed=seed)


def run_one(preset: str, edge_mm: float, seed: int, factor: int, variant: str) -> tuple[dict[str, float], BoneVolume]:
    """One year of ``preset`` on the seed's 20 µm phantom block-averaged by ``factor``; annual changes and counts."""
    vol = _phantom(edge_mm, seed)
    vol = coarsen(vol, factor) if factor > 1 else vol
    _VOXEL_UM[0] = float(vol.voxel_size_um)
    scenario = Scenario(name="decomposition", site="lumbar_spine", periods=(Period(preset, 1.0),), seed=seed,
                        step_days=10, metrics_every_days=365, checkpoint_every_days=10**6, fragments_every_days=30)
    t0 = time.perf_counter()
    with _Patched(variant):
        res = simulate(scenario, None, backend="numpy", progress=False, render=False, measure=_measure, volume=vol,
                       equilibrate=True)
    first, last = res.rows[0], res.rows[-1]
    years = float(last["year"])

    def pct(key: str) -> float:
        return 100.0 * (float(last[key]) / float(first[key]) - 1.0) / years

    row = {"abmd_pct": float(last["abmd_pct"]) / years, "tb_vbmd": pct("tb_vbmd_mg_cm3"),
           "ct_vbmd": pct("ct_vbmd_mg_cm3"), "bv_tv": pct("bv_tv"), "tb_bone": pct("tb_bone_mm3"),
           "ct_bone": pct("ct_bone_mm3"), "conn_d": pct("conn_d")}
    for c in COUNTERS:
        row[c] = (float(last[f"engine_{c}"]) - float(first[f"engine_{c}"])) / years
    # bone removed as loose fragments per year, in % of the trabecular bone at the start
    row["fragment_pct_tb"] = 100.0 * (float(last["engine_fragment_volume_mm3"])
                                      - float(first["engine_fragment_volume_mm3"])) / float(first["tb_bone_mm3"]) / years
    bmus = row["bmus_trabecular"] + row["bmus_osteonal"]
    row["perforated_share"] = row["perforations"] / bmus if bmus else float("nan")
    row["wall_s"] = time.perf_counter() - t0
    return row, res.volume


def perforation_probe(volume: BoneVolume, preset: str) -> float:
    """Share of trabecular surface voxels whose cavity (the engine's own, this preset's E.De) is flagged perforated."""
    from voxelbone.biology import cell_activity  # noqa: PLC0415
    from voxelbone.presets import course_for_periods  # noqa: PLC0415
    from voxelbone.remodel.params import RemodelParams  # noqa: PLC0415
    from voxelbone.remodel.state import step_scalars  # noqa: PLC0415

    rates = cell_activity(course_for_periods([(preset, 1.0)], extra_days=11), "lumbar_spine").at(180.0)
    sc = step_scalars(rates, RemodelParams(), volume.voxel_size_um, 10)
    state = RemodelState.new(volume.bone.copy(), volume.mineral.copy(), volume.region.copy())
    _, any_tm = cpu.surface_flags(state.bone, state.region)
    cand = np.flatnonzero(((state.region == int(Region.TRABECULAR)) & (state.bone >= 0.5) & any_tm).ravel())
    flags = [cpu.make_cavity(state, int(si), 1, 0, sc).perforated for si in cand]
    return float(np.mean(flags)) if flags else float("nan")


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="hyperparathyroidism")
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    ap.add_argument("--edge-mm", type=float, default=1.92, help="cube edge, a multiple of 0.04 mm (default 1.92)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--probe", action="store_true", help="add the static perforation probe (seed 1)")
    ap.add_argument("--record", type=Path, default=ROOT / "results" / "pth_voxel_decomposition.json")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    for v in variants:
        _Patched(v)  # validates the name before anything runs
    if abs(args.edge_mm * 25.0 - round(args.edge_mm * 25.0)) > 1e-9:
        raise SystemExit(f"--edge-mm {args.edge_mm:g} is not a whole number of 40 µm voxels (e.g. 1.92 or 3.84)")
    record: dict[str, Any] = {"preset": args.preset, "edge_mm": args.edge_mm, "seeds": seeds, "runs": {}}
    keys = ("abmd_pct", "tb_vbmd", "ct_vbmd", "bv_tv", "tb_bone", "ct_bone", "conn_d", *COUNTERS, "perforated_share", "fragment_pct_tb")
    print(f"{args.preset}, lumbar {args.edge_mm:g} mm cube, one year, seeds {args.seeds}: seed means "
          "(changes %/yr; counts per year)")
    print("| variant | voxel | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    probe_volume = None
    for variant in variants:
        for factor in (1, 2):
            rows = []
            for seed in seeds:
                row, vol = run_one(args.preset, args.edge_mm, seed, factor, variant)
                rows.append(row)
                if variant == "base" and factor == 1 and seed == seeds[0]:
                    probe_volume = vol
            record["runs"][f"{variant}|{20 * factor}um"] = rows
            print(f"| {variant} | {20 * factor} µm | " + " | ".join(f"{_mean(rows, k):+.3g}" for k in keys) + " |",
                  flush=True)
    if args.probe:
        base = probe_volume if probe_volume is not None else run_one(args.preset, args.edge_mm, seeds[0], 1, "base")[1]
        share = {f"{20 * f} µm": perforation_probe(coarsen(base, f) if f > 1 else base, args.preset) for f in (1, 2)}
        record["probe_perforated_share"] = share
        print("perforation probe on the bone after the 20 µm run (seed "
              f"{seeds[0]}): " + ", ".join(f"{k}: {v:.3f}" for k, v in share.items()))
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
