"""Site-level BMD outputs: compartment vBMD and the DXA-equivalent areal BMD change (``abmd_pct``)."""

from __future__ import annotations

import numpy as np
import pytest

from voxelbone.metrics import ArealBmdReference, compartment_vbmd_mg_cm3, morphometry
from voxelbone.sites import SITES, DxaWeights
from voxelbone.volume import TMD_MAX_MG_CM3, BoneVolume, Region

W = DxaWeights(trabecular=0.4, cortical=0.6)


def _volume(cortex_layers: int, n: int = 24) -> BoneVolume:
    """A cube: a solid cortex of ``cortex_layers`` planes, trabecular plates beyond."""
    region = np.full((n, n, n), int(Region.TRABECULAR), dtype=np.uint8)
    region[:cortex_layers] = int(Region.CORTICAL)
    bone = np.zeros((n, n, n), dtype=np.float32)
    bone[:cortex_layers] = 1.0
    bone[cortex_layers:, :, ::6] = 1.0
    return BoneVolume(bone, 0.8 * bone, region, 30.0, "lumbar_spine")


def _scaled(volume: BoneVolume, trabecular: float, cortical: float) -> BoneVolume:
    """The volume with its trabecular / cortical mineral scaled by the given factors."""
    v = volume.copy()
    v.mineral[v.region == int(Region.TRABECULAR)] *= np.float32(trabecular)
    v.mineral[v.region == int(Region.CORTICAL)] *= np.float32(cortical)
    return v


def test_abmd_weights_the_compartments_relative_changes():
    day0 = _volume(6)
    ref = ArealBmdReference.of(day0, W)
    assert ref.abmd_pct(day0) == 0.0
    # trabecular mineral +10 %, cortical −5 %: 0.4·10 − 0.6·5 = +1 %
    assert ref.abmd_pct(_scaled(day0, 1.10, 0.95)) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("layers", [2, 6, 12])
def test_abmd_does_not_depend_on_the_cubes_cortex_share(layers):
    # the same relative compartment changes in cubes with 8 % to 50 % cortex give the same abmd
    day0 = _volume(layers)
    later = _scaled(day0, 0.97, 0.99)
    assert ArealBmdReference.of(day0, W).abmd_pct(later) == pytest.approx(0.4 * -3.0 + 0.6 * -1.0, abs=1e-4)


def test_abmd_uses_the_day0_compartments_so_trabecularisation_moves_no_mineral():
    day0 = _volume(6)
    ref = ArealBmdReference.of(day0, W)
    later = day0.copy()
    later.region[4:6] = int(Region.TRABECULAR)  # the inner cortex relabelled trabecular, bone unchanged
    assert ref.abmd_pct(later) == pytest.approx(0.0, abs=1e-9)
    # while the current-compartment vBMDs move (the cube's own labels)
    assert compartment_vbmd_mg_cm3(later.mineral, later.region, Region.TRABECULAR) > \
        compartment_vbmd_mg_cm3(day0.mineral, day0.region, Region.TRABECULAR)


def test_abmd_of_a_sample_without_cortex_is_the_trabecular_change():
    v = _volume(0)
    assert ArealBmdReference.of(v, W).abmd_pct(_scaled(v, 0.98, 1.0)) == pytest.approx(-2.0, abs=1e-4)


def test_abmd_refuses_a_volume_of_another_shape():
    ref = ArealBmdReference.of(_volume(6), W)
    with pytest.raises(ValueError, match="shape of the day-0 reference"):
        ref.abmd_pct(_volume(6, n=20))


def _tube(n: int = 64) -> BoneVolume:
    """A solid cortical tube (300 µm wall, what the contouring recognises as a cortex) around
    plates 600 µm apart, 30 µm voxels."""
    _, y, x = np.mgrid[:n, :n, :n]
    r = np.hypot(y - n / 2 + 0.5, x - n / 2 + 0.5)
    region = np.zeros((n, n, n), dtype=np.uint8)
    region[r <= 30] = int(Region.TRABECULAR)
    region[(r <= 30) & (r > 20)] = int(Region.CORTICAL)
    bone = np.zeros((n, n, n), dtype=np.float32)
    bone[(r <= 30) & (r > 20)] = 1.0
    bone[(r <= 20) & (x % 20 == 0)] = 1.0
    return BoneVolume(bone, 0.8 * bone, region, 30.0, "lumbar_spine")


def test_compartment_vbmd_in_morphometry():
    # Ct.vBMD and Tb.vBMD are measured in the compartments contoured from the bone (a shell
    # and what it encloses), not in the labels; Tb.vBMD in the trabecular VOI, away from the cortex
    from voxelbone.compartments import contoured_regions, trabecular_voi

    v = _tube()
    m = morphometry(v, tb_sp=False, connectivity=False, surface=False)
    trab = trabecular_voi(contoured_regions(v.bone, v.region, v.voxel_size_um), v.voxel_size_um)
    assert m.tb_vbmd_mg_cm3 == pytest.approx(TMD_MAX_MG_CM3 * float(v.mineral[trab].mean()), rel=1e-6)
    labelled = morphometry(v, tb_sp=False, connectivity=False, surface=False, contour=False)
    assert labelled.tb_vbmd_mg_cm3 == pytest.approx(
        TMD_MAX_MG_CM3 * float(v.mineral[v.region == int(Region.TRABECULAR)].mean()), rel=1e-6)
    assert (trab != (v.region == int(Region.TRABECULAR))).any()  # the two differ here, so the test can tell
    # the studies' cheap measures take the same compartments
    from voxelbone.calibration import site_measures

    assert site_measures(v)["tb_vbmd_mg_cm3"] == pytest.approx(m.tb_vbmd_mg_cm3, rel=1e-6)
    assert site_measures(v, contour=False)["tb_vbmd_mg_cm3"] == pytest.approx(labelled.tb_vbmd_mg_cm3, rel=1e-6)
    # uniform mineral 0.8 in the bone: Ct.vBMD is that of bone diluted by the contoured cortex's
    # pores (here the crevices where plates meet the endosteum, too narrow for the marrow to enter)
    assert 0.0 < m.ct_po < 0.02
    assert m.ct_vbmd_mg_cm3 == pytest.approx(TMD_MAX_MG_CM3 * 0.8 * (1.0 - m.ct_po), rel=1e-6)
    # the cube's mean lies between the two, weighted by the cube's own cortex share
    assert m.tb_vbmd_mg_cm3 < m.bmd_mg_cm3 < m.ct_vbmd_mg_cm3


def test_site_dxa_weights_are_shares():
    for site in SITES.values():
        assert site.dxa.trabecular + site.dxa.cortical == pytest.approx(1.0) and site.dxa.sources
    with pytest.raises(ValueError, match="sum to 1"):
        DxaWeights(trabecular=0.5, cortical=0.6)


def test_a_run_reports_abmd_from_day0():
    from voxelbone.calibration import bmd_change

    r = bmd_change("postmenopausal_untreated", seed=1, size=48, voxel_size_um=40.0, years=0.2, step_days=10,
                   backend="numpy")
    assert r.abmd_pct[0] == 0.0
    assert np.all(np.isfinite(r.abmd_pct)) and r.abmd_pct[-1] != 0.0


def test_run_summary_gives_the_abmd_change_in_points_per_year():
    from voxelbone.cli import summary_table

    rows = [{"year": 0.0, "bv_tv": 0.1, "abmd_pct": 0.0}, {"year": 2.0, "bv_tv": 0.09, "abmd_pct": -4.0}]
    lines = {ln.split()[0]: ln.split() for ln in summary_table(rows).splitlines()[1:3]}
    assert float(lines["aBMD"][3]) == pytest.approx(-2.0)
    assert float(lines["BV/TV"][3]) == pytest.approx(-5.0)


def test_replicate_summary_gives_the_abmd_change_in_points_per_year():
    # abmd_pct starts at 0 in every replicate: a relative change would be undefined (NaN,
    # "unresolved"); its change is in points per year, with an interval that can resolve
    from voxelbone.replicates import summarize

    reps = [[{"year": 0.0, "bv_tv": 0.1, "abmd_pct": 0.0}, {"year": 2.0, "bv_tv": 0.1 - d, "abmd_pct": -2.0 * k}]
            for k, d in ((1.0, 0.010), (1.1, 0.012), (0.9, 0.008))]
    rows = {r["metric"]: r for r in summarize(reps)}
    assert rows["abmd_pct"]["change_pct_per_yr_mean"] == pytest.approx(-1.0)
    assert rows["abmd_pct"]["resolved"]
    assert rows["bv_tv"]["change_pct_per_yr_mean"] == pytest.approx(-5.0)
