"""BoneVolume validation: every bad argument is named in the error."""

from __future__ import annotations

import numpy as np
import pytest

from voxelbone.volume import BoneVolume, Region, TMD_MAX_MG_CM3


def _vol(**kw):
    shape = (4, 5, 6)
    args = dict(
        bone=np.full(shape, 0.5, np.float32),
        mineral=np.full(shape, 0.4, np.float32),
        region=np.ones(shape, np.uint8),
        voxel_size_um=20.0,
    )
    args.update(kw)
    return BoneVolume(**args)


def test_valid_volume_and_derived_values():
    v = _vol()
    assert v.shape == (4, 5, 6)
    assert v.physical_size_mm == pytest.approx((0.08, 0.1, 0.12))
    np.testing.assert_allclose(v.tmd_mg_cm3(), 0.8 * TMD_MAX_MG_CM3, rtol=1e-6)
    assert v.mask().all()
    c = v.copy()
    c.bone[0, 0, 0] = 0
    assert v.bone[0, 0, 0] == 0.5


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(bone=np.zeros((4, 5), np.float32)), "bone must be a 3-D array"),
        (dict(mineral=np.zeros((4, 5, 7), np.float32)), "same shape"),
        (dict(voxel_size_um=0), "voxel_size_um must be a positive"),
        (dict(voxel_size_um=-3.0), "voxel_size_um must be a positive"),
        (dict(voxel_size_um=(10, 10, 20)), "isotropic"),
        (dict(bone=np.full((4, 5, 6), 1.5, np.float32)), r"bone fractions must lie in \[0, 1\]"),
        (dict(bone=np.full((4, 5, 6), np.nan, np.float32)), "bone contains NaN"),
        (dict(mineral=np.full((4, 5, 6), 0.9, np.float32)), "mineral must not exceed bone"),
        (dict(region=np.full((4, 5, 6), 7, np.uint8)), "region labels"),
        (dict(region=np.full((4, 5, 6), 1.0)), "integer labels"),
    ],
)
def test_bad_input_names_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        _vol(**kw)


def test_from_mask():
    m = np.zeros((8, 8, 8), bool)
    m[2:5] = True
    v = BoneVolume.from_mask(m, 15.0, mineralisation=0.8)
    assert v.bone.dtype == np.float32 and v.bone.sum() == m.sum()
    assert (v.region == Region.TRABECULAR).all()
    with pytest.raises(ValueError, match="mineralisation"):
        BoneVolume.from_mask(m, 15.0, mineralisation=0.0)


# -- compartments of a loaded volume ------------------------------------------------------
from scan_writers import cored_cylinder, trabecular_roi  # noqa: E402

from voxelbone.phantom import make_phantom  # noqa: E402
from voxelbone.volume import choose_compartments, field_of_view, has_periosteal_shell  # noqa: E402


@pytest.mark.parametrize("site", ["lumbar_spine", "femoral_neck"])
def test_phantoms_have_a_periosteal_shell(site):
    p = make_phantom(site, size=64, voxel_size_um=30.0, seed=1)
    assert has_periosteal_shell(p.mask(), 30.0)


def test_volumes_cut_inside_trabecular_bone_have_no_shell():
    box = trabecular_roi(48, 2.5, seed=1)
    cored, cylinder = cored_cylinder(box)
    assert not has_periosteal_shell(box, 30.0)
    assert not has_periosteal_shell(cored, 30.0)  # the empty corners are joined to the marrow
    fov = field_of_view(cored)
    assert fov.all(axis=0).sum() == fov[0].sum()  # extruded along z
    assert (fov == cylinder).mean() > 0.98  # the cylinder up to its rim voxels
    assert field_of_view(box).all()


def test_a_sealed_tube_has_a_shell():
    z, y, x = np.ogrid[:32, :48, :48]
    r = np.sqrt((y - 23.5) ** 2 + (x - 23.5) ** 2)
    tube = np.broadcast_to((r >= 15) & (r <= 19), (32, 48, 48))  # cortex 4 voxels, marrow inside, air outside
    assert has_periosteal_shell(tube, 30.0)
    labels, how = choose_compartments(tube, 30.0, "auto")
    assert how.startswith("auto: periosteal shell found")


def test_choose_compartments_checks_given_labels():
    m = trabecular_roi(24, 2.0, seed=3)
    with pytest.raises(ValueError, match=r"lab.npy: region of shape \(24, 24, 23\) does not match"):
        choose_compartments(m, 30.0, "given", region=np.ones((24, 24, 23), np.uint8), source="lab.npy")
    with pytest.raises(ValueError, match=r"lab.npy: region labels must be 0 .* found \[0, 1, 5\]"):
        bad = np.ones(m.shape, np.int16)
        bad[0, 0, :2] = (0, 5)
        choose_compartments(m, 30.0, "given", region=bad, source="lab.npy")
    with pytest.raises(ValueError, match="compartments must be 'auto', 'trabecular' or a region file"):
        choose_compartments(m, 30.0, "cortical")
    labels, how = choose_compartments(m, 30.0, "trabecular")
    assert (labels == Region.TRABECULAR).all() and how.startswith("trabecular")
