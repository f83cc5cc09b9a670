"""PTH acts the way biopsies show: daily pulses build bone, a continuous excess removes it.

Teriparatide (intermittent PTH) adds modelling-based formation — bone laid on quiescent
surfaces without prior resorption (Dempster et al. 2001; Lindsay et al. 2006) — to the
remodelling units' refill, and raises BV/TV, Tb.Th and the site's areal BMD (Jiang et al.
2003) by about the trials' first-year gain; continuous PTH (``hyperparathyroidism``) loses
bone. Both at two sample edges (1.92 and 3.84 mm lumbar cubes at 40 µm), three seeds each,
one year; the clinical range on 1.92 mm lumbar and femoral neck cubes. The modelling rule itself
is checked to form the same volume per µm² of surface at 20 and 40 µm, and to be off
(exactly, so runs stay bit-identical) without intermittent PTH.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import ndimage as ndi

from voxelbone.biology import HormoneEffects, cell_activity, modelling_um_per_day
from voxelbone.calibration import site_measures
from voxelbone.metrics.surface import bone_surface_mm2
from voxelbone.metrics.thickness import local_thickness
from voxelbone.presets import course_for_periods
from voxelbone.remodel import Remodeler
from voxelbone.remodel.state import RemodelingRates, step_scalars
from voxelbone.volume import BONE_THRESHOLD, BoneVolume, Region, coarsen

SEEDS = (1, 2, 3)
EDGES = {"1.92 mm": 48, "3.84 mm": 96}  # lumbar phantoms at 40 µm


def _tb_th_um(volume: BoneVolume) -> float:
    trab = volume.region == int(Region.TRABECULAR)
    bone = (volume.bone >= BONE_THRESHOLD) & trab
    return float(np.asarray(local_thickness(bone, volume.voxel_size_um))[bone].mean())


@functools.lru_cache(maxsize=None)
def _year(preset: str, size: int, seed: int, site: str = "lumbar_spine") -> dict[str, float]:
    """Annual changes (%/yr) of one year of ``preset`` on a ``site`` phantom of ``size``³ at 40 µm."""
    from voxelbone.phantom import make_phantom
    from voxelbone.scenario import Period, Scenario
    from voxelbone.simulate import simulate

    vol = make_phantom(site, size, 40.0, seed=seed)
    s = Scenario(name="pth", site=site, periods=(Period(preset, 1.0),), size=size, voxel_size_um=40.0,
                 seed=seed, step_days=10, metrics_every_days=30, checkpoint_every_days=10**6, fragments_every_days=30)
    res = simulate(s, None, backend="numpy", progress=False, render=False, measure=site_measures, volume=vol,
                   equilibrate=True)
    first, last = res.rows[0], res.rows[-1]
    years = last["year"]
    return {"abmd_pct": last["abmd_pct"] / years,
            "abmd_min": min(r["abmd_pct"] for r in res.rows),
            "bv_tv": 100.0 * (last["bv_tv"] / first["bv_tv"] - 1.0) / years,
            "tb_th": 100.0 * (_tb_th_um(res.volume) / _tb_th_um(vol) - 1.0) / years}


EDGE_PARAMS = [pytest.param(n, id=k, marks=[pytest.mark.slow] if n > 48 else []) for k, n in EDGES.items()]


@pytest.mark.parametrize("size", EDGE_PARAMS)
def test_teriparatide_builds_bone_and_thickens_trabeculae(size):
    tb_th = []
    for seed in SEEDS:
        r = _year("teriparatide", size, seed)
        text = f"{size}³ seed {seed}: " + ", ".join(f"{k} {v:+.2f}" for k, v in r.items())
        assert r["abmd_pct"] > 2.0, text
        assert r["bv_tv"] > 5.0 and r["tb_th"] > 0.5, text  # Jiang et al. 2003: BV/TV and Tb.Th up
        assert r["abmd_min"] > -0.5, f"no early dip under teriparatide: {text}"  # formation starts at once
        tb_th.append(r["tb_th"])
    # every seed thickens; the seeds' mean by more than 2 %/yr (1.92 mm: +3.3, +1.9, +3.8)
    assert float(np.mean(tb_th)) > 2.0, f"{size}³ Tb.Th %/yr: {tb_th}"


# Teriparatide 20 µg/day, areal BMD: lumbar spine +9.7 % and femoral neck +2.8 % in 21 months
# (Neer et al. 2001 N Engl J Med 344:1434; 5.5 and 1.6 %/yr on average, the first year's lumbar
# gain larger), lumbar spine +10.3 % and femoral neck +3.9 % in 18 months (McClung et al. 2005
# Arch Intern Med 165:1762). First-year ranges, %/yr of the site's abmd_pct:
TERIPARATIDE_RANGE = {"lumbar_spine": (5.0, 8.0), "femoral_neck": (1.5, 4.0)}
# %/yr: how far beyond the range one seed of a 1.92 mm cube may lie, about two of the seeds'
# standard deviations (measured on seeds 1-12, model revision 2026-12-02: femoral neck mean
# +1.60, SD 0.82, lowest +0.32 on seed 2; lumbar spine mean +5.99, SD 1.08). It was 1.0 (taken
# from a spread of ±1.2 on an earlier model), which seed 2's femoral neck (+0.51 then) passed by
# 0.01; the claim itself is the seeds' mean.
SMALL_CUBE_SEED_NOISE = 2.0


@pytest.mark.parametrize("site", TERIPARATIDE_RANGE)
def test_teriparatide_first_year_gain_lands_in_the_clinical_range(site):
    """Modelling-based formation plus the remodelling units' refill give the trials' gain, not more."""
    lo, hi = TERIPARATIDE_RANGE[site]
    got = [_year("teriparatide", EDGES["1.92 mm"], seed, site)["abmd_pct"] for seed in SEEDS]
    text = ", ".join(f"{g:+.2f}" for g in got)
    assert lo <= float(np.mean(got)) <= hi, f"teriparatide at {site}: mean of [{text}] %/yr not in [{lo}, {hi}]"
    for seed, pct in zip(SEEDS, got):
        assert lo - SMALL_CUBE_SEED_NOISE <= pct <= hi + SMALL_CUBE_SEED_NOISE, \
            f"seed {seed}: {pct:+.2f} %/yr far outside [{lo}, {hi}]"


@pytest.mark.parametrize("size", EDGE_PARAMS)
def test_continuous_pth_removes_bone(size):
    for seed in SEEDS:
        r = _year("hyperparathyroidism", size, seed)
        text = f"{size}³ seed {seed}: " + ", ".join(f"{k} {v:+.2f}" for k, v in r.items())
        assert r["abmd_pct"] < -0.5 and r["bv_tv"] < -2.0, text


def test_modelling_is_exactly_off_without_intermittent_pth():
    """Only daily PTH pulses drive modelling; without them the rate is exactly 0 (runs stay bit-identical)."""
    for preset in ("postmenopausal_untreated", "hyperparathyroidism", "premenopausal"):
        a = cell_activity(course_for_periods([(preset, 1.0)]), "lumbar_spine")
        assert a.cells["pth_anabolic_signal"].max() < 1e-4  # pulses absent (slow drift or sustained excess)
        assert np.all(a.modelling_um_per_day == 0.0), preset
        assert a.at(100.0).modelling_um_per_day == 0.0
    tpd = cell_activity(course_for_periods([("teriparatide", 1.0)]), "lumbar_spine")
    j = tpd.modelling_um_per_day
    assert np.all(j > 0.0)
    # φ/(1 − φ) of the remodelling units' refill (Lindsay et al. 2006: ~30 % of formation modelling-based)
    rbf = tpd.activation_trabecular_per_yr * tpd.erosion_depth_um * np.minimum(tpd.refill_trabecular, 1.0) / 365.25
    np.testing.assert_allclose(j / rbf, 0.3 / 0.7, rtol=1e-12)
    # a few µm per year of new bone over every quiescent surface, not a voxel's worth
    assert 5.0 < 365.25 * j.mean() < 30.0


def test_modelling_rate_bad_input():
    with pytest.raises(ValueError, match="modelling_share"):
        modelling_um_per_day(0.5, 50.0, 1.0, 0.02, HormoneEffects(modelling_share=1.0))
    vol = _blobs(32, 20.0)
    with pytest.raises(ValueError, match="modelling_um_per_day"):
        step_scalars(RemodelingRates(0.0, 0.0, 50.0, 1.0, 1.0, modelling_um_per_day=-0.1), Remodeler(vol).params,
                     20.0, 10)


def _blobs(n: int, voxel_um: float) -> BoneVolume:
    """A smooth random structure away from the cube's faces, all trabecular compartment."""
    rng = np.random.default_rng(7)
    f = ndi.gaussian_filter(rng.random((n, n, n)), n / 16)
    f = (f - f.min()) / (f.max() - f.min())
    bone = np.clip((f - 0.55) * 8.0 + 0.5, 0.0, 1.0).astype(np.float32)
    m = n // 8
    inner = np.zeros(bone.shape, bool)
    inner[m:-m, m:-m, m:-m] = True
    bone[~inner] = 0.0
    region = np.full(bone.shape, int(Region.TRABECULAR), np.uint8)
    return BoneVolume(bone, 0.9 * bone, region, voxel_um)


@pytest.mark.parametrize("voxel_um", [20.0, 40.0])
def test_modelling_forms_the_same_volume_per_um2_at_every_voxel_size(voxel_um):
    """Without BMUs, 100 days of J µm/day form J · 100 µm of bone on each µm² of surface (20 and 40 µm voxels)."""
    fine = _blobs(96, 20.0)
    vol = fine if voxel_um == 20.0 else coarsen(fine, 2)
    j_um_per_day, days = 0.1, 100
    area_um2 = bone_surface_mm2(vol.bone, vol.voxel_size_um) * 1e6
    before = float(vol.bone.astype(np.float64).sum())
    rem = Remodeler(vol.copy(), seed=1)
    rates = RemodelingRates(0.0, 0.0, 50.0, 1.0, 1.0, modelling_um_per_day=j_um_per_day)
    for k in range(days // 10):
        rem.step(k, rates, 10)
    formed_um3 = (float(rem.state.bone.astype(np.float64).sum()) - before) * voxel_um**3
    assert formed_um3 / area_um2 == pytest.approx(j_um_per_day * days, rel=0.08)
    assert float(rem.state.osteoid.sum()) > 0  # laid down as osteoid, then mineralised
    assert rem.stats().bmus_trabecular == 0


@functools.lru_cache(maxsize=None)
def _lumbar_20um() -> BoneVolume:
    from voxelbone.phantom import make_phantom

    return make_phantom("lumbar_spine", 96, 20.0, seed=1)


def test_modelling_forms_the_same_volume_per_um2_on_the_phantom_over_a_year():
    """Without BMUs, a year of J µm/day on the 1.92 mm lumbar phantom (cortex included) forms J · 360 µm
    on each µm² of the bone surface that faces the trabecular compartment, at 20 µm and block-averaged to
    40 µm. The surface is measured here, independently of the engine: the bone surface within the
    trabecular compartment and the one-voxel rim around it (the endocortical surface)."""
    j_um_per_day, days = 0.04, 360
    per_um2 = {}
    for factor in (1, 2):
        vol = coarsen(_lumbar_20um(), factor)
        v = vol.voxel_size_um
        rim = ndi.binary_dilation(vol.region == int(Region.TRABECULAR)) & (vol.region != int(Region.OUTSIDE))
        area_um2 = bone_surface_mm2(vol.bone, v, within=rim) * 1e6
        before = float(vol.bone.astype(np.float64).sum())
        rem = Remodeler(vol.copy(), seed=1)
        rates = RemodelingRates(0.0, 0.0, 50.0, 1.0, 1.0, modelling_um_per_day=j_um_per_day)
        for k in range(days // 10):
            rem.step(k, rates, 10)
        per_um2[v] = (float(rem.state.bone.astype(np.float64).sum()) - before) * v**3 / area_um2
    text = ", ".join(f"{v:g} µm: {um:.2f} µm" for v, um in per_um2.items())
    for um in per_um2.values():
        assert um == pytest.approx(j_um_per_day * days, rel=0.05), text
    assert per_um2[20.0] == pytest.approx(per_um2[40.0], rel=0.03), text
