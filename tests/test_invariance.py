"""Effects that belong to the bone, not to the sample: the same annual change at every edge and voxel size.

The same lumbar structure (20 µm phantoms) is run as a 1.92 mm cube at 20 µm and, block-
averaged (``volume.coarsen``: the structure a 20 µm scan holds, at 40 µm), as 1.92 mm and
3.84 mm cubes at 40 µm; three seeds each, one year, 10-day steps. The mean annual change of
``abmd_pct``, Tb.vBMD and BV/TV must agree across the three geometries: each within
max(0.5 %/yr, 20 % of the effect) of their mean (issue: invariance across edges and voxel
sizes).

MHT and ``postmenopausal_untreated`` agree (the untreated case since the living cortex and
the network phantom landed); ``teriparatide`` since its modelling-based formation (bone laid
per µm² of quiescent surface) carries its gain, except BV/TV (an expected failure, below).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from voxelbone.calibration import bmd_change

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
    runs = [bmd_change(preset, seed=s, volume=_phantom(edge, factor, s), years=1.0, step_days=10, backend="numpy")
            for s in SEEDS]
    return {m: float(np.mean([r.annual_change_pct(m) for r in runs])) for m in METRICS}


# Modelling-based formation now forms the same volume per µm² at 20 and 40 µm (its own surface
# density κ_m; endocortical boundary voxels are marrow of the rule: test_pth), but the new bone on
# the endocortical surface lands in voxels labelled trabecular at 20 µm and in the cortical-labelled
# boundary voxels at 40 µm, so the trabecular BV/TV still gains more at 20 µm (modelling alone, seed
# 1: +37.5 vs +25.5 %; more than 120 µm from the cortex +26.3 vs +24.4 %). Seeds 1-3: +25.8 at
# 20 µm vs +17.2 and +18.5 %/yr at 40 µm, tolerance ±4.1 (on the trabecular voxels more than
# 120 µm from the cortex +20.2, +16.7, +18.0, which would pass); abmd_pct and Tb.vBMD agree.
NOT_YET = {("teriparatide", "bv_tv"): "endocortical modelling-based formation lands in trabecular-labelled voxels "
                                      "at 20 µm, in cortical-labelled boundary voxels at 40 µm (docs/model.md §5)"}


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
