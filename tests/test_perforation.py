"""The perforation rule is geometric: a cavity perforates its trabecula when it reaches the far
surface, whatever the voxel size (issue 14: a result that changes with the voxel size is a
property of the sample)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from voxelbone.remodel.cpu import _perforates
from voxelbone.volume import Region

f32 = np.float32
EDGE_UM = 640.0  # the grid's edge; the plate sits in its middle with marrow on both sides


def _plate_perforated(thickness_um: float, depth_um: float, voxel_um: float, from_below: bool) -> bool:
    """Does a cavity ``depth_um`` deep, started on a plate ``thickness_um`` thick, perforate it?"""
    n = int(round(EDGE_UM / voxel_um))
    t = int(round(thickness_um / voxel_um))
    assert t * voxel_um == thickness_um, "the plate must be a whole number of voxels at both sizes"
    z0 = (n - t) // 2
    bone = np.zeros((n, 8, 8), dtype=f32)
    bone[z0:z0 + t] = 1.0
    region = np.full(bone.shape, int(Region.TRABECULAR), dtype=np.uint8)
    state = SimpleNamespace(bone=bone, region=region)
    # the seed is a surface voxel of bone fraction 1: the surface lies on its face towards the marrow,
    # and the normal points into the marrow
    nz, seed_z = (f32(-1.0), z0) if from_below else (f32(1.0), z0 + t - 1)
    cz = f32(seed_z) + (bone[seed_z, 4, 4] - f32(0.5)) * nz
    return bool(_perforates(state, cz, f32(4.0), f32(4.0), nz, f32(0.0), f32(0.0), f32(depth_um) / f32(voxel_um)))


@pytest.mark.parametrize("from_below", [False, True], ids=["top", "bottom"])
@pytest.mark.parametrize("thickness_um", [120.0, 200.0])
def test_a_cavity_perforates_iff_it_reaches_the_far_surface_at_20_and_40_um(thickness_um, from_below):
    for depth_um in (thickness_um - 30.0, thickness_um - 10.0, thickness_um + 10.0, thickness_um + 30.0):
        want = depth_um >= thickness_um
        got = {v: _plate_perforated(thickness_um, depth_um, v, from_below) for v in (20.0, 40.0)}
        assert got == {20.0: want, 40.0: want}, (
            f"plate {thickness_um:g} µm, cavity {depth_um:g} µm deep: perforated {got}, expected {want} at both sizes")
