"""Effects that belong to the bone, not to the sample: the same annual change at every edge and voxel size.

The same lumbar structure (20 µm phantoms) is run as a 1.92 mm cube at 20 µm and, block-
averaged (``volume.coarsen``: the structure a 20 µm scan holds, at 40 µm), as 1.92 mm and
3.84 mm cubes at 40 µm; three seeds each, one year, 10-day steps. The mean annual change of
``abmd_pct``, Tb.vBMD and BV/TV must agree across the three geometries: each within
max(0.5 %/yr, 20 % of the effect) of their mean (issue: invariance across edges and voxel
sizes).

MHT and ``postmenopausal_untreated`` agree (the untreated case since the living cortex and
the network phantom landed); ``teriparatide`` in ``abmd_pct`` and BV/TV since its
modelling-based formation (bone laid per µm² of quiescent surface) carries its gain and
``coarsen`` keeps the endosteal boundary, and in Tb.vBMD since the trabecular measures are
taken in the trabecular VOI, away from the contoured cortex (``site_measures``,
``voxelbone.compartments.trabecular_voi``).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from voxelbone.calibration import STUDY_SAMPLE_DAYS, bmd_change

SEEDS = (1, 2, 3)
PRESETS = ("postmenopausal_untreated", "mht_estradiol_progesterone", "teriparatide")
GEOMETRIES = ((96, 1), (96, 2), (192, 2))  # (edge of the 20 µm phantom in voxels, coarsening factor)
METRICS = ("abmd_pct", "tb_vbmd_mg_cm3", "bv_tv")


@functools.lru_cache(maxsize=None)
def _phantom(edge: int, factor: int, seed: int):
    from voxelbone.phantom import make_phantom
    from voxelbone.volume import coarsen

    return coarsen(make_phantom("lumbar_spine", edge, 20.0, seed=seed), factor)


@functools.lru_cache(maxsize=None)
def _changes(preset: str, edge: int, factor: int) -> dict[str, float]:
    runs = [bmd_change(preset, seed=s, volume=_phantom(edge, factor, s), years=1.0, step_days=10, backend="numpy",
                       measure_every_days=STUDY_SAMPLE_DAYS) for s in SEEDS]
    return {m: float(np.mean([r.annual_change_pct(m) for r in runs])) for m in (*METRICS, "tb_bone_fraction")}


# Expected failures: none. Teriparatide's BV/TV disagreed (+25.8 at 20 µm vs +17.2 and +18.5 %/yr
# at 40 µm) while ``coarsen`` labelled every block the endosteal envelope halves as cortex; with
# half-marrow blocks labelled marrow, the new bone on the endocortical surface lands in the same
# compartment at both voxel sizes. Seeds 1-3 (1.92 mm@20, 1.92 mm@40, 3.84 mm@40 µm), %/yr:
# teriparatide abmd_pct +7.3/+6.7/+6.0, Tb.vBMD +19.9/+15.5/+15.9, BV/TV +26.1/+24.4/+21.5;
# untreated -1.55/-1.11/-1.66, -3.30/-3.21/-3.35, -3.79/-3.04/-3.34; MHT +5.57/+5.02/+5.06,
# +10.7/+8.7/+9.2, +7.5/+6.3/+6.6. Since the perforation test walks to the full cavity depth,
# untreated abmd_pct -1.68/-1.29/-1.76 and BV/TV -3.96/-3.47/-3.58 (docs/model.md).
# Since Tb.vBMD and BV/TV are measured in the compartments contoured from the bone at each
# sample (seeds 1-3, %/yr, same geometries): untreated -3.39/-2.87/-3.64 and -3.87/-2.74/-3.64,
# MHT +10.08/+8.11/+8.80 and +6.92/+5.26/+6.24, teriparatide +15.80/+10.35/+13.79 and
# +20.76/+17.30/+18.60; abmd_pct unchanged.
# In the whole contoured trabecular compartment teriparatide's Tb.vBMD disagreed (+15.80/+10.35/+13.79):
# trabeculae thickening beside the endosteum joined the cortex at the end's contour. In the trabecular
# VOI (seeds 1-3, %/yr, same geometries): untreated Tb.vBMD -3.32/-2.98/-3.91, BV/TV -3.99/-3.35/-4.08;
# MHT +10.45/+9.55/+9.27, +7.17/+6.33/+6.50; teriparatide +15.29/+13.83/+14.40, +19.52/+16.83/+18.06.
# Since a forming BMU's level is read on the previous step's balance (docs/model.md): untreated
# abmd_pct -1.46/-1.73/-2.16, Tb.vBMD -2.73/-3.35/-3.91, BV/TV -3.53/-3.68/-4.02; MHT +6.23/+5.61/+5.66,
# +11.68/+10.60/+10.32, +7.88/+6.98/+7.26; teriparatide +7.31/+6.53/+5.98, +15.60/+14.09/+14.80,
# +19.69/+17.06/+18.45.
# Since the last step of a run ends on its last day (a year in 10-day steps ran 370 days before),
# untreated Tb.vBMD misses here as it does in the full matrix (docs/user-guide/invariance.md:
# 0.79 of ±0.75, the 1.92 mm/20 µm cell losing least, not traced): seeds 1-3, %/yr, 1.92 mm@20,
# 1.92 mm@40, 3.84 mm@40 µm: -2.61/-3.57/-3.75, 0.70 of ±0.66 (370 days: -2.68/-3.42/-3.86,
# 0.64 of ±0.66, passing by 0.02).
# Since a cavity opens at the bone surface (model revision 2026-12-03, docs/model.md), seeds 1-3,
# %/yr, the same geometries: untreated abmd_pct -1.08/-1.09/-1.48, Tb.vBMD -1.84/-2.23/-2.52 (0.36 of
# ±0.50: it agrees here, and its expected failure went), BV/TV -3.13/-3.35/-3.26; MHT +6.50/+5.67/+5.74,
# +11.73/+10.16/+10.31, +7.86/+6.36/+6.98; teriparatide +7.17/+6.69/+6.02, +15.35/+14.69/+15.10,
# +19.02/+17.23/+18.45. The full matrix still calls untreated Tb.vBMD a miss its seeds do not settle
# (docs/user-guide/invariance.md).
NOT_YET: dict[tuple[str, str], str] = {}


@pytest.mark.slow
@pytest.mark.parametrize("preset,metric", [
    pytest.param(p, m, marks=[pytest.mark.xfail(reason=NOT_YET[p, m], raises=AssertionError, strict=False)]
                 if (p, m) in NOT_YET else []) for p in PRESETS for m in METRICS])
def test_annual_changes_agree_across_edges_and_voxel_sizes(preset, metric):
    got = {(e, f): _changes(preset, e, f) for e, f in GEOMETRIES}
    values = [g[metric] for g in got.values()]
    effect = float(np.mean(values))
    tol = max(0.5, 0.2 * abs(effect))
    text = ", ".join(f"{e * 0.02:.2f} mm @ {20 * f} µm: {g[metric]:+.2f}" for (e, f), g in got.items())
    worst = max(abs(v - effect) for v in values)
    assert worst <= tol, f"{preset} {metric} %/yr: {text} (mean {effect:+.2f}, tolerance ±{tol:.2f})"


# Continuous PTH (``hyperparathyroidism``) loses more bone on finer voxels: 1.92 mm cube, seeds 1-3,
# abmd_pct -6.16 %/yr at 20 µm against -3.18 at 40 µm (-7.05 at 10 µm); -4.27 against -2.26 on model
# revision 2026-12-03. The cavities flagged as
# perforations (never refilled) are 14 % of the BMUs at 20 µm, 4 % at 40 µm and 23 % at 10 µm, and
# intracortical (pore-wall) BMUs start 1.6x as often at 20 µm; see docs/user-guide/invariance.md,
# "Continuous PTH". Strict: the day the dependence is removed this test fails as XPASS, and the
# marker goes.
PTH_NOT_YET = ("perforation flags and intracortical activation depend on the voxel size under high turnover "
               "(docs/user-guide/invariance.md, 'Continuous PTH')")


@pytest.mark.slow
@pytest.mark.xfail(reason=PTH_NOT_YET, raises=AssertionError, strict=True)
def test_continuous_pth_abmd_agrees_at_20_and_40_um():
    got = {(e, f): _changes("hyperparathyroidism", e, f) for e, f in ((96, 1), (96, 2))}
    values = [g["abmd_pct"] for g in got.values()]
    effect = float(np.mean(values))
    if not effect < -1.0:  # not an AssertionError: the expected failure must not hide this one
        pytest.fail(f"continuous PTH must lose bone; abmd_pct {effect:+.2f} %/yr")
    tol = max(0.5, 0.2 * abs(effect))
    text = ", ".join(f"{20 * f} µm: {g['abmd_pct']:+.2f}" for (e, f), g in got.items())
    worst = max(abs(v - effect) for v in values)
    assert worst <= tol, f"hyperparathyroidism abmd_pct %/yr on the 1.92 mm cube: {text} (tolerance ±{tol:.2f})"


#: Thirty seeds, paired (the same structure at both voxel sizes). A 1.92 mm cube's TRT gain varies
#: from seed to seed by more than the difference sought: the paired difference has a standard
#: deviation of 2.5-2.7 %/yr (seeds 1-9: 2.53), so nine seeds leave it a standard error of 0.85,
#: half the tolerance, and thirty 0.46. On seeds 1-9 the difference was +1.86 [-0.09, +3.81]
#: against a tolerance of 1.64 (a strict expected failure here until 2026-12-02); thirty further
#: seeds (10-39, run once as a held-out sample: ``benchmarks/bv_tv_binarisation_trt_seeds10-39.json``)
#: gave +0.78 [-0.21, +1.78]; seeds 1-30 +1.16 [+0.12, +2.21], all 39 +1.03 [+0.17, +1.89].
TRT_SEEDS = tuple(range(1, 31))


@pytest.mark.slow
def test_trt_trabecular_bone_gain_agrees_at_20_and_40_um_before_binarising():
    """The bone TRT builds in the trabecular VOI, partial voxels counted, is the same at 20 and 40 µm.

    Thirty seeds, paired (``TRT_SEEDS`` says why that many), within max(0.5 %/yr, 20 % of the
    effect) as every invariance check. Until a forming BMU's level was read on the previous
    step's balance (docs/model.md, "A balance that changes during formation") the cavities dug
    before TRT raised the refill skipped the layer between the old and the new level, a larger
    share of their build on the finer grid; until model revision 2026-12-02 they could not
    build above the old surface at all but inside their own partial voxels, more of them on the
    coarser grid. Both parts are gone. What remains is small but resolved over 39 seeds (the
    40 µm grid gains about 1 %/yr more of a +8.5 %/yr effect, ~12 %; the spin-up leaves a little
    more remodelling space in the coarse grid's VOI, docs/user-guide/invariance.md, TRT): inside
    the tolerance in the mean, while its interval still reaches above it.
    """
    gains = {f: np.array([bmd_change("trt", seed=s, volume=_phantom(96, f, s), years=1.0, step_days=10,
                                     backend="numpy", measure_every_days=STUDY_SAMPLE_DAYS)
                          .annual_change_pct("tb_bone_fraction") for s in TRT_SEEDS]) for f in (1, 2)}
    effect = float(np.mean([*gains[1], *gains[2]]))
    assert effect > 2.0, f"TRT must gain trabecular bone; {effect:+.2f} %/yr"
    tol = max(0.5, 0.2 * abs(effect))  # on the paired difference itself
    diff = float(np.mean(gains[2] - gains[1]))
    assert abs(diff) <= tol, (f"TRT trabecular bone fraction %/yr on the 1.92 mm cube, seeds {TRT_SEEDS[0]}-{TRT_SEEDS[-1]}: 20 µm "
                              f"{gains[1].mean():+.2f}, 40 µm {gains[2].mean():+.2f}, paired difference {diff:+.2f} "
                              f"(tolerance {tol:.2f})")
