"""The cortex remodels: intracortical and endocortical BMUs move Ct.Th, Ct.Po and Ct.vBMD.

Femoral-neck phantoms (800 µm cortex) of 64³ voxels at 40 µm, three simulated years, the
cortex measured every half year. Ct.Th of so small a cube moves by tens of µm when one
region of the endocortex opens into the marrow, so one seed is noisy. Each claim is
therefore made over five seeds, every seed paired across presets (the same phantom and
the same keyed draws: common random numbers), and tested as a one-sided paired t-test at
the 5 % level: the seeds' mean must lie beyond the bound by more than its standard error
allows by chance. Ct.Th is taken as the mean of the evaluations from 1.5 years on.

Measured (seeds 1-5; Ct.Th in µm, late mean; mean ± standard error), with the marrow's reach
bounded in the contour (``ContourParams.marrow_reach_um``, 500 µm):

- postmenopausal untreated minus start: -19.8, -12.9, -6.8, -16.9, -1.1 (-11.5 ± 3.4);
  Ct.Po end minus start +0.013, +0.016, +0.016, +0.016, +0.020; Ct.vBMD -22, -27, -26, -18, -25;
- MHT minus untreated: +29.6, +18.9, +24.0, +21.8, +19.8 (+22.8 ± 1.9);
- teriparatide minus start: -5.3, +5.7, +18.7, -3.1, +18.2 (+6.8 ± 5.1);
  minus untreated: +14.4, +18.6, +25.5, +13.8, +19.3 (+18.3 ± 2.1);
- hypogonadal untreated minus start: -6.7, +2.1, +9.4, -6.3, +20.0 (+3.7 ± 5.0);
  TRT minus hypogonadal: +18.7, +10.6, +11.0, +11.6, +7.6 (+11.9 ± 1.8).

With the marrow passing only through gaps wider than a Haversian canal
(``ContourParams.passage_radius_um``, 50 µm; the numbers above were measured before it):
untreated Ct.Po end minus start +1.42, +1.64, +1.72, +1.78, +2.09 points; MHT minus
untreated (end) -2.02, -1.66, -2.23, -2.14, -2.53 points, Ct.Th +27.9, +12.7, +15.7, +10.0,
+9.1 µm; untreated Ct.Th minus start -27.1, -6.3, +4.3, -7.5, +3.7 µm (-6.6 ± 5.6, p = 0.16),
no longer beyond the spread of five seeds (docs/model.md, "The cortex"); that one claim is
now made over fifteen seeds (below).

Since a forming BMU's level is read on the previous step's balance (model revision
2026-12-01, seeds 1-5): untreated Ct.Th minus start -26.8, -6.2, +1.9, -8.4, +3.8 µm
(-7.1 ± 5.4), Ct.Po end minus start +1.7, +1.9, +1.9, +2.0, +2.3 points, Ct.vBMD -28.3,
-30.2, -30.9, -24.9, -30.3 mg/cm³; MHT minus untreated Ct.Th +26.8, +11.9, +20.7, +11.0,
+10.7 µm (+16.2 ± 3.2), Ct.Po -2.3, -1.8, -2.4, -2.4, -2.8 points; teriparatide minus start
+0.8, +26.4, +40.3, +13.6, +44.2 µm (+25.1 ± 8.1), minus untreated +27.6, +32.6, +38.4,
+22.0, +40.4 (+32.2 ± 3.4); TRT minus hypogonadal untreated +15.5, +10.0, +9.1, +6.5, +11.4
(+10.5 ± 1.5).

Model revision 2026-12-02 (every cavity claims the marrow within the overfill's reach; seeds
1-5): untreated Ct.Th minus start -26.8, -6.3, +1.5, -8.4, +3.8 µm (-7.2 ± 5.4), Ct.Po end
minus start +1.8 to +2.3 points, Ct.vBMD -25 to -31 mg/cm³; MHT minus untreated Ct.Th
+15.9 ± 2.8 µm, Ct.Po -1.9 to -2.8 points; teriparatide minus start +23.6 ± 7.5 µm, minus
untreated +30.8 ± 3.0; TRT minus hypogonadal untreated +12.4 ± 1.7 µm.

Untreated thinning is small against one seed's spread, so it is asked over fifteen seeds
(``THINNING_SEEDS``). Seeds 6-25, run once as a held-out sample (model revision 2026-12-02):
-4.5, -17.5, -10.5, -0.3, +5.7, -17.6, -3.5, -10.9, -15.1, -5.6, -9.9, -4.6, -4.0, -3.6,
-10.8, -1.9, +2.9, -6.0, -5.3, -2.3 µm (-6.3 ± 1.4, one-sided p = 1e-4; the revision before
gave -6.2 ± 1.4); seeds 1-15 -7.7 ± 2.3 (p = 0.002); all 25 -6.5 ± 1.5 µm, about -2 µm a
year or -0.26 %/yr of the 830 µm cortex.
The direction is the cohorts'; the size is well below what cross-sectional CT suggests
(Poole et al. 2010 J Bone Miner Res 25:482: the superior femoral-neck cortex 1.63 mm at 25
and 0.33 mm at 85 years, some -20 µm a year). It is not fitted (docs/model.md, "The cortex").

On an earlier model three further seeds (6-8), held out, confirmed every claim at the same level (untreated
minus start -11.5, -20.9, -12.6; MHT minus untreated +15.2, +24.9, +21.7). With the earlier
unbounded reach (a breached canal was marrow along its whole length) the untreated loss
was -21.7 ± 5.1 µm, much of it whole canals flipping into the marrow. A 20 µm margin (half
a voxel) is asked only for teriparatide's loss from the start; for the gaps the spread
supports the sign of the effect, not its size.

Teriparatide since the re-fit of its anabolic drive to the clinical aBMD gain (measured with the
earlier unbounded contour, seeds 1-5): minus start +12.0 ± 9.4, minus untreated +33.7 ± 11.4;
its Ct.Po and Ct.vBMD no longer differ from untreated (Ct.Po -0.011 … +0.002, Ct.vBMD -4 …
+10 mg/cm³; Hansen et al. 2013 find cortical porosity raised under teriparatide), so the test
no longer asks for them; held-out seeds 6-8 give p ≈ 0.06 for its thickening with three seeds.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.stats import ttest_1samp

from voxelbone.metrics.cortical import cortical_metrics

SEEDS = (1, 2, 3, 4, 5)
#: Seeds of the untreated-thinning claim, whose effect is small against one seed's spread
#: (module docstring: 15 seeds give it with p ≈ 0.003; five did not, p = 0.13).
THINNING_SEEDS = tuple(range(1, 16))
YEARS = 3.0
P_VALUE = 0.05


def _measure(vol):
    c = cortical_metrics(vol.bone, vol.region, vol.voxel_size_um, mineral=vol.mineral)
    return {"ct_th_um": c.ct_th_um, "ct_po": c.ct_po, "ct_vbmd": c.ct_vbmd_mg_cm3}


@functools.lru_cache(maxsize=None)
def _course(preset: str, seed: int) -> dict[str, np.ndarray]:
    from voxelbone.scenario import Period, Scenario
    from voxelbone.simulate import simulate

    sc = Scenario(name="cortex", site="femoral_neck", periods=(Period(preset, YEARS),), size=64,
                  voxel_size_um=40.0, seed=seed, step_days=5, metrics_every_days=182)
    rows = simulate(sc, None, progress=False, render=False, backend="numpy", measure=_measure).rows
    out = {k: np.array([r[k] for r in rows]) for k in ("ct_th_um", "ct_po", "ct_vbmd", "year")}
    return out


def _late(c: dict[str, np.ndarray], key: str) -> float:
    return float(c[key][c["year"] >= 1.5].mean())


def _start(c: dict[str, np.ndarray], key: str) -> float:
    return float(c[key][0])


def _end(c: dict[str, np.ndarray], key: str) -> float:
    return float(c[key][-1])


def _per_seed(preset: str, fn) -> np.ndarray:
    """``fn(course)`` for each seed of ``SEEDS``, in order."""
    return np.array([fn(_course(preset, s)) for s in SEEDS])


def _change(preset: str, fn, start) -> np.ndarray:
    """Per seed, ``fn(course) - start(course)`` for one preset."""
    return _per_seed(preset, fn) - _per_seed(preset, start)


def _gap(treated: str, untreated: str, fn) -> np.ndarray:
    """Per seed, ``fn`` of the treated course minus ``fn`` of the untreated one of the same seed."""
    return _per_seed(treated, fn) - _per_seed(untreated, fn)


def _surely_below(x: np.ndarray, bound: float) -> bool:
    return bool(ttest_1samp(x, bound, alternative="less").pvalue < P_VALUE)


def _surely_above(x: np.ndarray, bound: float) -> bool:
    return bool(ttest_1samp(x, bound, alternative="greater").pvalue < P_VALUE)


def _th_late(c):
    return _late(c, "ct_th_um")


def _th_start(c):
    return _start(c, "ct_th_um")


def _assert_treatment_keeps_the_cortex(treated: str, untreated: str, porosity) -> None:
    """From the same starting bones, paired by seed, ``treated`` leaves a thicker (late Ct.Th), less porous
    (``porosity(course)``) and denser (end Ct.vBMD) cortex than ``untreated``."""
    assert np.array_equal(_per_seed(untreated, _th_start), _per_seed(treated, _th_start))  # the same starting bones
    gap_th = _gap(treated, untreated, _th_late)
    gap_po = _gap(treated, untreated, porosity)
    gap_bmd = _gap(treated, untreated, lambda c: _end(c, "ct_vbmd"))
    assert _surely_above(gap_th, 0.0), gap_th
    assert _surely_below(gap_po, 0.0), gap_po
    assert _surely_above(gap_bmd, 0.0), gap_bmd


def test_untreated_postmenopausal_femoral_neck_cortex_thins():
    # the thinning is small against one seed's spread (about 6 µm in three years against a
    # standard deviation of 6-12 µm), so this one claim is made over THINNING_SEEDS
    pm = "postmenopausal_untreated"
    d_th = np.array([_th_late(_course(pm, s)) - _th_start(_course(pm, s)) for s in THINNING_SEEDS])
    assert _surely_below(d_th, 0.0), d_th


def test_untreated_postmenopausal_cortex_porosity_rises_mht_prevents_it():
    pm, mht = "postmenopausal_untreated", "mht_estradiol_progesterone"
    d_po = _change(pm, lambda c: _end(c, "ct_po"), lambda c: _start(c, "ct_po"))
    d_bmd = _change(pm, lambda c: _end(c, "ct_vbmd"), lambda c: _start(c, "ct_vbmd"))
    assert _surely_above(d_po, 0.0), d_po
    assert _surely_below(d_bmd, 0.0), d_bmd
    # MHT slows or stops all three (paired by seed)
    _assert_treatment_keeps_the_cortex(mht, pm, lambda c: _end(c, "ct_po"))


def test_teriparatide_does_not_thin_the_cortex():
    pm, pth = "postmenopausal_untreated", "teriparatide"
    d_th = _change(pth, _th_late, _th_start)
    assert _surely_above(d_th, -20.0), d_th  # loses less than half a voxel
    # thicker than untreated (paired by seed). Not asked: lower porosity or higher Ct.vBMD than
    # untreated; teriparatide raises cortical porosity (Hansen et al. 2013 J Bone Miner Res
    # 28:736: radius +32 %, tibia +13 % in 18 months, cortices moderately thicker) and lowers
    # femoral-neck cortical vBMD (McClung et al. 2005: -1.2 % in 18 months).
    gap_th = _gap(pth, pm, _th_late)
    assert _surely_above(gap_th, 0.0), gap_th


def test_trt_keeps_the_cortex_of_hypogonadal_men():
    _assert_treatment_keeps_the_cortex("trt", "hypogonadal_untreated", lambda c: _late(c, "ct_po"))


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
    # one canal enlarged to 120 µm (wider than the marrow's passage, ContourParams.passage_radius_um)
    # and the wall between it and the marrow resorbed over its width
    opened_canal = np.broadcast_to(((y - c0) * v) ** 2 + ((x - c0) * v - 480.0) ** 2 <= 60.0**2, bone.shape)
    breach = np.broadcast_to((np.abs(y - c0) * v <= 60.0) & ((x - c0) * v > 340.0) & ((x - c0) * v < 480.0), bone.shape)
    vol = BoneVolume.from_mask(bone & ~breach & ~opened_canal, v, region=region)
    kept = Remodeler(vol.copy(), RemodelParams(contour_compartments=False), seed=0)
    assert (kept.state.region[opened_canal] == Region.CORTICAL).all()  # the starting labels
    moved = Remodeler(vol.copy(), RemodelParams(contour_compartments=True), seed=0)
    # at mid-length a rod fused to the endosteum stands in front of the breach
    beside_rod = np.broadcast_to(np.abs(np.arange(bone.shape[0])[:, None, None] - bone.shape[0] / 2) * v > 100.0,
                                 bone.shape)
    assert (moved.state.region[opened_canal & beside_rod] == Region.TRABECULAR).all()
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
