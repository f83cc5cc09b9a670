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
