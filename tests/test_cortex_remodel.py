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


def _turnover_of_a_flat_wall(marrow_region: int) -> tuple[float, tuple[float, float]]:
    """Cortical turnover estimated for a cortex block with one flat wall, and ⅔·E.De·S/V at Ac.f = 1/yr."""
    from voxelbone.remodel.cpu import surface_flags
    from voxelbone.remodel.initial import bone_turnover_per_yr
    from voxelbone.remodel.params import RemodelParams
    from voxelbone.remodel.state import RemodelingRates
    from voxelbone.volume import BoneVolume, Region

    v, params = 40.0, RemodelParams()
    rates = RemodelingRates(activation_trabecular_per_yr=0.2, activation_cortical_per_yr=0.1, erosion_depth_um=47.0,
                            refill_trabecular=1.0, refill_cortical=1.0)
    bone = np.zeros((96, 64, 16), dtype=bool)
    bone[:, :, :8] = True
    region = np.full(bone.shape, int(Region.CORTICAL), dtype=np.uint8)
    region[:, :, 8:] = marrow_region
    _, f_cort = bone_turnover_per_yr(BoneVolume.from_mask(bone, v, region=region), rates, params, seed=1)
    any_m, _ = surface_flags(bone.astype(np.float32), region)
    area_um2 = float((bone & any_m).sum()) * v * v / params.surface_voxels_per_area
    per_acf = area_um2 * (2.0 / 3.0) * rates.erosion_depth_um / (float(bone.sum()) * v**3)
    return f_cort / per_acf, (rates.activation_cortical_per_yr, rates.activation_trabecular_per_yr)


def test_cortical_turnover_is_that_of_the_engine_cavities():
    # The starting mineral of the cortex follows the volume the engine's cavities excavate
    # per year. On a flat wall that is ⅔·E.De per activated area (a half-spheroid), up to the
    # sub-voxel rounding of the cavity's edge (measured +11-13 %); a pore wall in the cortex
    # activates at the cortical Ac.f, the endocortical surface (facing the marrow) at the
    # trabecular one.
    from voxelbone.volume import Region

    ratio, (acf_cort, acf_trab) = _turnover_of_a_flat_wall(int(Region.CORTICAL))
    assert 1.0 <= ratio / acf_cort <= 1.25, ratio / acf_cort
    ratio, (acf_cort, acf_trab) = _turnover_of_a_flat_wall(int(Region.TRABECULAR))
    assert 1.0 <= ratio / acf_trab <= 1.25, ratio / acf_trab
