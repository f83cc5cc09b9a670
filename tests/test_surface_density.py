"""The surface activation counts: κ as the model measures it, and the candidate rule that measures it at
one scale for every grid, again as the bone changes (``RemodelParams.surface_scale_um``; not adopted)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from voxelbone.phantom import make_phantom
from voxelbone.remodel import RemodelParams, Remodeler, step_scalars
from voxelbone.remodel import engine as engine_module
from voxelbone.remodel.engine import measure_surface_density
from voxelbone.remodel.state import RemodelingRates
from voxelbone.volume import BoneVolume, Region, coarsen, coarsen_to

#: The candidate rule: κ and κ_wall at 40 µm, measured again every 30 days.
CANDIDATE = RemodelParams(surface_scale_um=40.0, surface_every_days=30)
RATES = RemodelingRates(activation_trabecular_per_yr=2.0, activation_cortical_per_yr=1.0,
                        erosion_depth_um=50.0, refill_trabecular=0.9, refill_cortical=0.9)


def test_coarsen_to_averages_by_the_volume_each_new_voxel_shares():
    n, v = 40, 30.0
    x_um = (np.arange(n) + 0.5) * v
    edge_um = 515.0  # bone for x < 515 µm: the voxel at 510–540 µm holds a sixth of bone
    bone = np.broadcast_to(np.clip((edge_um - (x_um - v / 2)) / v, 0.0, 1.0), (n, n, n)).astype(np.float32)
    region = np.full(bone.shape, int(Region.TRABECULAR), np.uint8)
    vol = BoneVolume(bone.copy(), bone * np.float32(0.9), region, v)
    out = coarsen_to(vol, 40.0)
    assert out.voxel_size_um == 40.0 and out.shape == (30, 30, 30)
    # on 10 µm sub-cells each 30 µm voxel is 3 cells and each 40 µm voxel 4
    expected = np.repeat(bone[0, 0], 3).reshape(30, 4).mean(axis=1)
    assert 0.5 < expected[12] < 1.0  # the new voxel at 480–520 µm shares the old partial one
    np.testing.assert_allclose(out.bone[0, 0], expected, atol=1e-5)
    assert float(out.bone.mean()) == pytest.approx(float(bone.mean()), rel=1e-5)  # 40 · 30 = 30 · 40 µm
    assert (out.region == int(Region.TRABECULAR)).all()
    np.testing.assert_array_equal(coarsen_to(vol, 60.0).bone, coarsen(vol, 2).bone)  # a whole ratio is coarsen
    with pytest.raises(ValueError, match="at least the volume's 30 µm"):
        coarsen_to(vol, 20.0)


def _roughened(volume: BoneVolume, seed: int = 0) -> BoneVolume:
    """The volume with pits one voxel wide dug into a third of its bone surface voxels: roughness a 20 µm
    grid resolves and a 40 µm grid does not."""
    from voxelbone.remodel import cpu  # noqa: PLC0415

    bone = volume.bone.copy()
    any_m, _ = cpu.surface_flags(bone, volume.region)
    surf = np.flatnonzero(((bone >= 0.5) & any_m & (volume.region != int(Region.OUTSIDE))).ravel())
    pits = np.random.default_rng(seed).choice(surf, size=surf.size // 3, replace=False)
    bone.ravel()[pits] = 0.0
    return BoneVolume(bone, np.minimum(volume.mineral, bone), volume.region.copy(), volume.voxel_size_um,
                      volume.site)


def _activated_mm2(volume: BoneVolume, scale_um: float | None) -> tuple[float, float]:
    """(trabecular, pore-wall) surface the engine activates on ``volume``: candidates · v² / κ."""
    from voxelbone.remodel import cpu  # noqa: PLC0415

    d = measure_surface_density(volume, scale_um)
    any_m, any_tm = cpu.surface_flags(volume.bone, volume.region)
    solid, r = volume.bone >= 0.5, volume.region
    n_trab = int((solid & (r == int(Region.TRABECULAR)) & any_tm).sum())
    n_wall = int((solid & (r == int(Region.CORTICAL)) & any_m & ~any_tm).sum())
    face = (volume.voxel_size_um / 1000.0) ** 2
    return n_trab * face / d.trabecular, n_wall * face / d.wall


def test_the_same_bone_activates_the_same_surface_at_20_and_40_um():
    fine = _roughened(make_phantom("lumbar_spine", 96, 20.0, seed=2))
    coarse = coarsen(fine, 2)
    at_scale = {v: _activated_mm2(vol, 40.0) for v, vol in ((20.0, fine), (40.0, coarse))}
    for part in (0, 1):  # trabecular, pore wall
        assert at_scale[20.0][part] == pytest.approx(at_scale[40.0][part], rel=0.01)
    # on each grid's own surface, the 20 µm grid counts the pits it resolves
    own = {v: _activated_mm2(vol, None) for v, vol in ((20.0, fine), (40.0, coarse))}
    assert own[20.0][0] > 1.15 * own[40.0][0] and own[20.0][1] > 1.15 * own[40.0][1]
    # the candidate rule measures them at its surface_scale_um; the model at the grid's own voxel
    # size, and its pore walls use κ
    params = Remodeler(fine.copy(), CANDIDATE).params
    d = measure_surface_density(fine, 40.0)
    assert (params.surface_voxels_per_area, params.wall_kappa) == (d.trabecular, d.wall)
    model = Remodeler(fine.copy()).params
    assert model.surface_voxels_per_area == measure_surface_density(fine).trabecular
    assert model.wall_kappa == model.surface_voxels_per_area != params.surface_voxels_per_area


def test_pore_walls_have_their_own_density_and_it_sets_the_pore_wall_probability():
    vol = make_phantom("lumbar_spine", 96, 20.0, seed=2)
    d = measure_surface_density(vol, 40.0)
    assert 0.5 < d.trabecular < 1.1 and 0.5 < d.wall < 1.5 and d.wall != pytest.approx(d.trabecular, rel=0.05)
    p = RemodelParams(surface_voxels_per_area=d.trabecular)
    same = step_scalars(RATES, p, 20.0, 10)
    walled = step_scalars(RATES, dataclasses.replace(p, wall_surface_voxels_per_area=2.0 * d.trabecular), 20.0, 10)
    assert float(walled.p_hemi) == float(same.p_hemi)
    assert float(walled.p_osteonal) == pytest.approx(float(same.p_osteonal) / 2.0, rel=0.01)
    # a trabecular scan has no pore walls to measure: κ_wall stays unset and the walls use κ
    trab = BoneVolume(vol.bone.copy(), vol.mineral.copy(), np.where(vol.region == int(Region.OUTSIDE), vol.region,
                                                                    np.uint8(Region.TRABECULAR)), 20.0)
    assert measure_surface_density(trab, 40.0).wall is None
    assert Remodeler(trab).params.wall_kappa == Remodeler(trab).params.surface_voxels_per_area


def test_the_engine_measures_again_every_surface_every_days(monkeypatch):
    vol = make_phantom("lumbar_spine", 48, 40.0, seed=1)
    days: list[int] = []
    measure = engine_module.measure_surface_density
    clock = [0]

    def counting(volume, scale_um=None, **kw):
        days.append(clock[0])
        return measure(volume, scale_um, **kw)

    monkeypatch.setattr(engine_module, "measure_surface_density", counting)
    rem = Remodeler(vol.copy(), CANDIDATE, seed=1)
    for k in range(10):
        clock[0] = 10 * k
        rem.step(k, RATES, 10)
    assert days == [0, 30, 60, 90]
    for params in (RemodelParams(), dataclasses.replace(CANDIDATE, surface_every_days=0)):
        days.clear()
        clock[0] = 0
        rem = Remodeler(vol.copy(), params, seed=1)
        for k in range(10):
            rem.step(k, RATES, 10)
        assert days == [0]  # the starting volume only
    with pytest.raises(ValueError, match="surface_every_days"):
        RemodelParams(surface_every_days=-1)
    with pytest.raises(ValueError, match="surface_scale_um"):
        RemodelParams(surface_scale_um=0.0)
    assert RemodelParams().surface_scale_um is None  # the model: κ at the grid's own voxel size


def test_a_resumed_engine_measures_on_the_same_days():
    vol = make_phantom("lumbar_spine", 48, 40.0, seed=1)
    a = Remodeler(vol.copy(), CANDIDATE, seed=4)
    for k in range(4):
        a.step(k, RATES, 10)  # measured on day 30; the next is due on day 60
    b = Remodeler.from_state({k: v.copy() for k, v in a.state_arrays().items()}, CANDIDATE, 4,
                             meta=a.state_meta())
    assert (b.params.surface_voxels_per_area, b.params.wall_kappa) == (a.params.surface_voxels_per_area,
                                                                        a.params.wall_kappa)
    for k in range(4, 10):
        a.step(k, RATES, 10)
        b.step(k, RATES, 10)
        assert (b.params.surface_voxels_per_area, b.params.wall_kappa) == (a.params.surface_voxels_per_area,
                                                                            a.params.wall_kappa)
    for name, arr in a.state_arrays().items():
        np.testing.assert_array_equal(arr, b.state_arrays()[name])


@pytest.mark.gpu
def test_the_device_measures_the_densities_the_host_does():
    vol = make_phantom("lumbar_spine", 96, 20.0, seed=2)
    host = measure_surface_density(vol, 40.0)
    device = measure_surface_density(vol.to(__import__("cupy")), 40.0)
    assert device.trabecular == pytest.approx(host.trabecular, rel=1e-4)
    assert device.wall == pytest.approx(host.wall, rel=1e-4)
