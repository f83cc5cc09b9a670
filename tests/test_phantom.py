"""Seeded phantoms meet their site targets, at two voxel sizes, and are reproducible."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from voxelbone.metrics import morphometry
from voxelbone.phantom import make_phantom
from voxelbone.sites import SITES


@pytest.mark.parametrize("site", ["lumbar_spine", "femoral_neck"])
@pytest.mark.parametrize("voxel_um,size", [(30.0, 128), (20.0, 144)])
def test_phantom_meets_site_targets(site, voxel_um, size):
    v = make_phantom(site, size, voxel_um, seed=5)
    m = morphometry(v, tb_sp=voxel_um == 30.0, connectivity=False)  # Tb.Sp (marrow thickness) is the costly one
    t = v.meta["targets"]
    assert m.bv_tv == pytest.approx(t["bv_tv"], rel=0.15)
    # local thickness of a voxelised structure is exact to one voxel
    assert abs(m.tb_th_um - t["tb_th_um"]) <= max(0.15 * t["tb_th_um"], voxel_um)
    if voxel_um == 30.0:
        assert m.tb_sp_um == pytest.approx(t["tb_sp_um"], rel=0.2)
    assert m.ct_th_um == pytest.approx(t["ct_th_um"], rel=0.15)
    assert abs(m.ct_po - t["ct_po"]) < 0.03


def test_sites_differ_as_the_anatomy_does():
    lumbar = morphometry(make_phantom("lumbar_spine", 96, 30.0, seed=1), connectivity=False)
    femoral = morphometry(make_phantom("femoral_neck", 96, 30.0, seed=1), connectivity=False)
    assert femoral.ct_th_um > 2 * lumbar.ct_th_um
    assert femoral.bv_tv > lumbar.bv_tv
    assert set(SITES) >= {"lumbar_spine", "femoral_neck"}


def test_same_seed_same_phantom_and_one_structure():
    a = make_phantom("lumbar_spine", 64, 30.0, seed=9)
    b = make_phantom("lumbar_spine", 64, 30.0, seed=9)
    c = make_phantom("lumbar_spine", 64, 30.0, seed=10)
    np.testing.assert_array_equal(a.bone, b.bone)
    assert not np.array_equal(a.bone, c.bone)
    labels, n = ndi.label(a.mask(), structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.max() > 0.99 * sizes.sum()  # no loose fragments


def test_target_overrides_and_bad_arguments():
    v = make_phantom("lumbar_spine", 96, 30.0, seed=2, bv_tv=0.2)
    assert morphometry(v, connectivity=False, tb_sp=False).bv_tv == pytest.approx(0.2, rel=0.15)
    with pytest.raises(ValueError, match="unknown"):
        make_phantom("tibia", 64, 30.0)
    with pytest.raises(ValueError, match="outside the supported range"):
        make_phantom("lumbar_spine", 64, 30.0, bv_tv=0.9)
    with pytest.raises(ValueError, match="too small"):
        make_phantom("femoral_neck", 32, 30.0)
