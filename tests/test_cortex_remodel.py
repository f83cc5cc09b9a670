"""The cortex remodels: intracortical and endocortical BMUs move Ct.Th, Ct.Po and Ct.vBMD.

Femoral-neck phantoms (800 µm cortex) of 64³ voxels at 40 µm, three simulated years, the
cortex measured every half year; runs of one seed are paired across presets (the same
keyed draws), so the comparisons cancel most of the noise of a small sample. Ct.Th of a
2.6 mm wide cortex moves by tens of µm when one region opens into the marrow, so it is
compared as the mean of the evaluations from 1.5 years on.
"""

from __future__ import annotations

import functools

import numpy as np

from voxelbone.metrics.cortical import cortical_metrics

SEED = 1
YEARS = 3.0


def _measure(vol):
    c = cortical_metrics(vol.bone, vol.region, vol.voxel_size_um, mineral=vol.mineral)
    return {"ct_th_um": c.ct_th_um, "ct_po": c.ct_po, "ct_vbmd": c.ct_vbmd_mg_cm3}


@functools.lru_cache(maxsize=None)
def _course(preset: str, seed: int = SEED) -> dict[str, np.ndarray]:
    from voxelbone.scenario import Period, Scenario
    from voxelbone.simulate import simulate

    sc = Scenario(name="cortex", site="femoral_neck", periods=(Period(preset, YEARS),), size=64,
                  voxel_size_um=40.0, seed=seed, step_days=5, metrics_every_days=182)
    rows = simulate(sc, None, progress=False, render=False, backend="numpy", measure=_measure).rows
    out = {k: np.array([r[k] for r in rows]) for k in ("ct_th_um", "ct_po", "ct_vbmd", "year")}
    return out


def _late(c: dict[str, np.ndarray], key: str) -> float:
    return float(c[key][c["year"] >= 1.5].mean())


def test_untreated_postmenopausal_cortex_thins_and_porosity_rises_mht_prevents_it():
    pm, mht = _course("postmenopausal_untreated"), _course("mht_estradiol_progesterone")
    assert pm["ct_th_um"][0] == mht["ct_th_um"][0]  # the same starting bone
    assert _late(pm, "ct_th_um") < pm["ct_th_um"][0] - 20.0, pm["ct_th_um"]
    assert pm["ct_po"][-1] > pm["ct_po"][0] + 0.005, pm["ct_po"]
    assert pm["ct_vbmd"][-1] < pm["ct_vbmd"][0] - 10.0, pm["ct_vbmd"]
    # MHT slows or stops all three
    assert _late(mht, "ct_th_um") > _late(pm, "ct_th_um") + 20.0
    assert mht["ct_po"][-1] < pm["ct_po"][-1]
    assert mht["ct_vbmd"][-1] > pm["ct_vbmd"][-1] + 10.0


def test_teriparatide_does_not_thin_the_cortex():
    pm, pth = _course("postmenopausal_untreated"), _course("teriparatide")
    assert _late(pth, "ct_th_um") >= pth["ct_th_um"][0] - 20.0, pth["ct_th_um"]  # within half a voxel
    assert _late(pth, "ct_th_um") > _late(pm, "ct_th_um") + 20.0
    assert pth["ct_po"][-1] < pm["ct_po"][-1]
    assert pth["ct_vbmd"][-1] > pm["ct_vbmd"][-1]


def test_trt_keeps_the_cortex_of_hypogonadal_men():
    hypo, trt = _course("hypogonadal_untreated"), _course("trt")
    assert trt["ct_th_um"][0] == hypo["ct_th_um"][0]
    assert _late(trt, "ct_th_um") > _late(hypo, "ct_th_um") + 20.0
    assert _late(trt, "ct_po") < _late(hypo, "ct_po") + 0.002
    assert trt["ct_vbmd"][-1] > hypo["ct_vbmd"][-1]


def test_engine_labels_follow_an_opened_pore_when_asked():
    from test_compartments import _hollow_cylinder

    from voxelbone.remodel import Remodeler
    from voxelbone.remodel.params import RemodelParams
    from voxelbone.volume import BoneVolume, Region

    v = 20.0
    bone, region, canal, _ = _hollow_cylinder(v)
    n_xy = bone.shape[1]
    c0 = (n_xy - 1) / 2.0
    y, x = np.arange(n_xy)[None, :, None], np.arange(n_xy)[None, None, :]
    breach = np.broadcast_to((np.abs(y - c0) * v <= 30.0) & ((x - c0) * v > 340.0) & ((x - c0) * v < 470.0), bone.shape)
    opened_canal = canal & np.broadcast_to((np.abs(y - c0) * v < 100.0) & ((x - c0) * v > 300.0), bone.shape)
    vol = BoneVolume.from_mask(bone & ~breach, v, region=region)
    kept = Remodeler(vol.copy(), RemodelParams(contour_compartments=False), seed=0)
    assert (kept.state.region[opened_canal] == Region.CORTICAL).all()  # the starting labels
    moved = Remodeler(vol.copy(), RemodelParams(contour_compartments=True), seed=0)
    assert (moved.state.region[opened_canal] == Region.TRABECULAR).all()
    assert (moved.state.region[canal & ~opened_canal] == Region.CORTICAL).all()
    assert np.array_equal(moved.state.region == Region.OUTSIDE, region == Region.OUTSIDE)
