"""The per-column perforation prototypes of ``benchmarks/pth_voxel_decomposition.py``.

They are diagnostics, not the model, but their numbers are quoted in the docs: a prototype that
writes its flag into the wrong bits of the engine's claim code (the layout is
``voxelbone.remodel.state.CLAIM_*_SHIFT``) silently measures something else. One BMU on a flat
plate: a plate thinner than the cavity is cut through under the cavity's middle, a thick one
nowhere, and the prototypes change nothing in a claim but its perforation bit.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from voxelbone.biology import RemodelingRates
from voxelbone.remodel import RemodelParams, cpu, step_scalars
from voxelbone.remodel.state import CLAIM_FLAGS_SHIFT, FLAG_PERFORATED, RemodelState
from voxelbone.volume import Region

ROOT = Path(__file__).resolve().parents[1]
PROTOTYPES = ("per_column_perforation", "per_column_bone_floor", "per_column_integrated")


def _script():
    spec = importlib.util.spec_from_file_location("pth_voxel_decomposition",
                                                  ROOT / "benchmarks" / "pth_voxel_decomposition.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


RATES = RemodelingRates(activation_trabecular_per_yr=0.5, activation_cortical_per_yr=0.3, erosion_depth_um=60.0,
                        refill_trabecular=1.0, refill_cortical=1.0)


def _plate(thickness_um: float, voxel_um: float = 20.0, size: int = 32) -> tuple[RemodelState, int]:
    """A horizontal plate of bone (partial voxels at its faces) in marrow; the flat index of the
    surface voxel at the middle of its top face."""
    z = (np.arange(size) + 0.5) * voxel_um
    bottom = 8 * voxel_um
    prof = np.clip(np.minimum(0.5 + (z - bottom) / voxel_um, 0.5 + (bottom + thickness_um - z) / voxel_um), 0, 1)
    bone = np.broadcast_to(prof.astype(np.float32)[:, None, None], (size,) * 3).copy()
    region = np.full(bone.shape, int(Region.TRABECULAR), np.uint8)
    top = int(np.flatnonzero(prof >= 0.5).max())
    return RemodelState.new(bone, bone * np.float32(0.9), region), (top * size + size // 2) * size + size // 2


def _claims(thickness_um: float, variant: str | None) -> tuple[np.ndarray, np.ndarray]:
    state, si = _plate(thickness_um)
    sc = step_scalars(RATES, RemodelParams(), 20.0, 1)
    if variant is None:
        c = cpu.make_cavity(state, si, 3, 0, sc)
        return cpu.claim_codes(state, si, c, sc.overfill_reach)
    script = _script()
    script._VOXEL_UM[0] = 20.0
    with script._Patched(variant):
        c = cpu.make_cavity(state, si, 3, 0, sc)
        return cpu.claim_codes(state, si, c, sc.overfill_reach)


PERFORATED_BIT = np.uint64(FLAG_PERFORATED) << np.uint64(CLAIM_FLAGS_SHIFT)


@pytest.mark.parametrize("variant", PROTOTYPES)
def test_a_thin_plate_is_cut_through_only_under_the_cavity_middle(variant):
    base_idx, base_code = _claims(40.0, None)
    assert ((base_code & PERFORATED_BIT) != 0).all(), "the engine flags the whole cavity through a thin plate"
    idx, code = _claims(40.0, variant)
    np.testing.assert_array_equal(idx, base_idx)
    # nothing but the perforation bit may change: share, column height and depth stay the engine's
    np.testing.assert_array_equal(code & ~PERFORATED_BIT, base_code & ~PERFORATED_BIT)
    cut = (code & PERFORATED_BIT) != 0
    assert 0 < cut.sum() < cut.size, "some columns, not all, cut through a 40 µm plate under a 60 µm cavity"
    n = 32
    z, y, x = np.unravel_index(idx, (n, n, n))
    lateral = np.hypot(y - n // 2, x - n // 2)
    assert lateral[cut].max() < lateral[~cut].max(), "the cut columns lie under the cavity's middle"


@pytest.mark.parametrize("variant", PROTOTYPES)
def test_a_thick_plate_is_cut_through_nowhere(variant):
    base_idx, base_code = _claims(400.0, None)
    assert not ((base_code & PERFORATED_BIT) != 0).any()
    idx, code = _claims(400.0, variant)
    np.testing.assert_array_equal(idx, base_idx)
    np.testing.assert_array_equal(code, base_code)


@pytest.mark.parametrize("variant", ["quiescent_only", "quiescent_renormalised"])
def test_no_bmu_starts_in_the_wall_of_an_open_cavity(variant):
    """Every surface voxel activates (p = 1); under the variants none beside an active BMU's cavity."""
    import dataclasses

    state, si = _plate(400.0)
    n = state.bone.shape[0]
    top = si // (n * n)
    # an open cavity: marrow held by a BMU, dug into the plate's top around the middle
    state.bone[top, n // 2 - 3:n // 2 + 3, n // 2 - 3:n // 2 + 3] = 0.0
    state.bmu_day[top, n // 2 - 3:n // 2 + 3, n // 2 - 3:n // 2 + 3] = 5
    sc = dataclasses.replace(step_scalars(RATES, RemodelParams(), 20.0, 1), p_hemi=np.float32(1.0))
    everywhere = cpu.activate(state, 3, 0, sc)
    busy = np.zeros(state.bone.shape, dtype=bool)
    cpu._shift_or((state.bmu_day >= 0) & (state.bone < 0.5), busy)
    walls = np.flatnonzero(busy.ravel() & (state.bone.ravel() >= 0.5))
    assert np.isin(walls, everywhere).any(), "the engine starts BMUs in an open cavity's wall"
    with _script()._Patched(variant):
        started = cpu.activate(state, 3, 0, sc)
    assert not np.isin(started, walls).any()
    np.testing.assert_array_equal(started, np.setdiff1d(everywhere, walls))
