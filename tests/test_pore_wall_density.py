"""The wall measure of ``benchmarks/pore_wall_density.py``, whose numbers the invariance page quotes.

A cortex pierced by straight canals along z (partial-volume walls) of known radius: the true
wall is the canals' lateral area, the candidate voxels are the engine's pore-wall seeds, and
a trabecular block beside them gives κ.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from voxelbone.volume import BoneVolume, Region

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("pore_wall_density", ROOT / "benchmarks" / "pore_wall_density.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _canals(voxel_um: float, radius_um: float, edge_um: float = 1920.0) -> tuple[BoneVolume, float]:
    """A cortical slab with four canals along z beside trabecular plates; the canals' lateral wall, mm²."""
    n = int(round(edge_um / voxel_um))
    z, y, x = np.meshgrid(*(np.arange(n) + 0.5 for _ in range(3)), indexing="ij")
    y_um, x_um = y * voxel_um, x * voxel_um
    bone = np.ones((n, n, n), np.float32)
    region = np.full((n, n, n), int(Region.CORTICAL), np.uint8)
    trab = x_um >= edge_um / 2  # trabecular half: plates 200 µm thick every 480 µm along y
    region[trab] = int(Region.TRABECULAR)
    d_plate = np.abs(((y_um + 240.0) % 480.0) - 240.0)  # distance from the nearest plate's mid-plane
    bone[trab] = np.clip(0.5 + (100.0 - d_plate[trab]) / voxel_um, 0.0, 1.0)
    centres = [(yc, xc) for yc in (edge_um * 0.25, edge_um * 0.75) for xc in (edge_um * 0.15, edge_um * 0.35)]
    for yc, xc in centres:
        d = np.hypot(y_um - yc, x_um - xc)
        canal = np.clip(0.5 + (d - radius_um) / voxel_um, 0.0, 1.0).astype(np.float32)
        bone = np.where(~trab, np.minimum(bone, canal), bone)
    wall_mm2 = len(centres) * 2.0 * math.pi * radius_um * edge_um / 1e6
    return BoneVolume(bone, bone * np.float32(0.9), region, voxel_um), wall_mm2


@pytest.mark.parametrize("voxel_um", [20.0, 40.0])
def test_the_true_wall_is_the_canals_area_and_the_candidates_are_its_voxels(voxel_um):
    mod = _script()
    vol, wall_mm2 = _canals(voxel_um, radius_um=80.0)
    got = mod.pore_wall(vol)
    assert got["wall_mm2"] == pytest.approx(wall_mm2, rel=0.08)
    assert 0.6 < got["kappa_wall"] < 1.3 and 0.4 < got["kappa"] < 1.5
    # the voxels that may start a pore-wall BMU ring each canal: about its circumference in
    # voxels per slice (a ring of 4-connected voxels: between 2πr/v and 8r/v of them)
    ring = got["candidates"] / (4 * vol.shape[0])
    r_vox = 80.0 / voxel_um
    assert 2 * math.pi * r_vox * 0.9 < ring < 8 * r_vox * 1.15
    assert got["activated_area_mm2"] == pytest.approx(got["candidate_face_mm2"] / got["kappa"])
    assert got["activated_over_true"] == pytest.approx(got["kappa_wall"] / got["kappa"])


def test_the_trabecular_surface_is_the_plates_area_at_both_voxel_sizes():
    """The plates' faces (eight of 1.92 × 0.96 mm, 14.7 mm²) and at most the faces where the grid
    and the cortex cut them (8.3 mm² more); the same at 20 and 40 µm within 10 %; no canal wall in it."""
    mod = _script()
    got = {}
    for voxel_um in (20.0, 40.0):
        vol, _ = _canals(voxel_um, radius_um=80.0)
        got[voxel_um] = mod.trabecular_surface(vol, kappa=0.75)
        assert 14.7 < got[voxel_um]["tb_surface_mm2"] < 23.1, got
        face_mm2 = (voxel_um / 1000.0) ** 2
        assert got[voxel_um]["tb_activated_area_mm2"] == pytest.approx(got[voxel_um]["tb_candidates"] * face_mm2 / 0.75)
    assert got[20.0]["tb_surface_mm2"] == pytest.approx(got[40.0]["tb_surface_mm2"], rel=0.1)
