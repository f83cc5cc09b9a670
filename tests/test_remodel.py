"""The remodeling engine: kernels vs NumPy twin, known answers, emergent behaviour, bad input."""

from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest

from hostkernels import HostRemodel
from voxelbone.phantom import make_phantom
from voxelbone.remodel import DeviceMemoryError, RemodelParams, Remodeler, step_scalars
from voxelbone.remodel.state import refill_levels
from voxelbone.remodel import cpu
from voxelbone.remodel.params import MineralisationLaw
from voxelbone.rng import Stream, uniform
from voxelbone.volume import BoneVolume, Region


@dataclass(frozen=True)
class Rates:
    activation_trabecular_per_yr: float = 0.5
    activation_cortical_per_yr: float = 0.3
    erosion_depth_um: float = 50.0
    refill_trabecular: float = 1.0
    refill_cortical: float = 1.0


FAST = Rates(3.0, 3.0, 60.0, 0.8, 0.9)


@pytest.fixture(scope="module")
def small():
    """A small femoral-neck-like phantom: trabeculae, cortex and canals in 56³ voxels of 40 µm."""
    return make_phantom("femoral_neck", 56, 40.0, seed=3, ct_th_um=400, tb_sp_um=450, bv_tv=0.2, tb_th_um=100)


# ---------------------------------------------------------------------------------------
# CPU twin == CUDA kernels (host build)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dt,steps,refill,order", [(1, 50, 1.0, "forward"), (3, 30, 1.0, "reverse"),
                                                   (2, 40, 1.6, "shuffled")])
def test_kernels_match_numpy_bit_for_bit(small, dt, steps, refill, order):
    a = Remodeler(small.copy(), seed=5)
    b = Remodeler(small.copy(), seed=5)
    host = HostRemodel(small.shape, order=order, order_seed=dt)
    seen_perforation = False
    rates = dataclasses.replace(FAST, refill_trabecular=refill)  # 1.6: positive balance, marrow overfilled
    for k in range(steps):
        sc = step_scalars(rates, a.params, a.voxel_size_um, dt)
        a.step(k, rates, dt)
        host.step(b.state, 5, k, sc)
        for name, arr in a.state.arrays().items():
            np.testing.assert_array_equal(arr, b.state.arrays()[name], err_msg=f"{name} differs at step {k}")
    s = a.stats()
    assert s.bmus_trabecular > 50 and s.bmus_osteonal > 5
    seen_perforation = s.perforations > 0
    assert seen_perforation, "the comparison should exercise perforated cavities"
    assert (a.state.bmu_day >= 0).any() and (a.state.bone < small.bone).any()
    if refill > 1:
        assert ((a.state.bmu_flags & 8) != 0).any(), "marrow above openings should be claimed for overfill"


def test_same_seed_same_volume_different_seed_differs(small):
    runs = []
    for seed in (7, 7, 8):
        r = Remodeler(small.copy(), seed=seed)
        for k in range(20):
            r.step(k, FAST, 2)
        runs.append(r.state.bone.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


# ---------------------------------------------------------------------------------------
# known answers
# ---------------------------------------------------------------------------------------
def _ball(radius_um: float, voxel_um: float) -> BoneVolume:
    n = int(2 * radius_um / voxel_um) + 8
    c = (n - 1) / 2
    z, y, x = np.ogrid[:n, :n, :n]
    d = np.sqrt((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2) * voxel_um
    bone = np.clip(0.5 + (radius_um - d) / voxel_um, 0, 1).astype(np.float32)
    return BoneVolume(bone, bone * np.float32(0.9), np.full(bone.shape, Region.TRABECULAR, np.uint8), voxel_um)


@pytest.mark.parametrize("voxel_um", [20.0, 30.0])
def test_activation_probability_turns_acf_into_surface_fraction(voxel_um):
    """p per surface voxel × surface voxels × BMU footprint = Ac.f × true area, at any voxel size."""
    radius = 600.0
    vol = _ball(radius, voxel_um)
    any_m, _ = cpu.surface_flags(vol.bone, vol.region)
    n_surface = int((any_m & (vol.bone >= 0.5)).sum())
    params = RemodelParams()
    rates = Rates(activation_trabecular_per_yr=0.8)
    sc = step_scalars(rates, params, voxel_um, 1)
    footprint = math.pi * params.lateral_radius_um**2
    activated_area_per_year = float(sc.p_hemi) * n_surface * 365.25 * footprint
    assert activated_area_per_year / (4 * math.pi * radius**2) == pytest.approx(0.8, rel=0.08)


def test_activation_draws_follow_the_probability():
    vol = _ball(500.0, 20.0)
    r = Remodeler(vol, seed=2)
    sc = replace(step_scalars(Rates(), r.params, 20.0, 1), p_hemi=np.float32(0.3))
    any_m, _ = cpu.surface_flags(vol.bone, vol.region)
    n = int((any_m & (vol.bone >= 0.5)).sum())
    seeds = cpu.activate(r.state, 2, 0, sc)
    assert abs(seeds.size - 0.3 * n) < 4 * math.sqrt(n * 0.3 * 0.7)
    assert np.all(np.diff(seeds) > 0)


def _slab(voxel_um: float, thickness_um: float = 600.0, size: int = 48) -> BoneVolume:
    """Bone filling z < thickness (a flat surface facing +z) with marrow above."""
    z = (np.arange(size) + 0.5) * voxel_um
    prof = np.clip(0.5 + (thickness_um - z) / voxel_um, 0, 1).astype(np.float32)
    bone = np.broadcast_to(prof[:, None, None], (size, size, size)).copy()
    return BoneVolume(bone, bone * np.float32(0.9), np.full(bone.shape, Region.TRABECULAR, np.uint8), voxel_um)


def _surface_seed(vol: BoneVolume) -> int:
    n = vol.shape[0]
    zs = int(np.flatnonzero(vol.bone[:, n // 2, n // 2] >= 0.5).max())
    return int((zs * n + n // 2) * n + n // 2)


def _one_bmu(vol: BoneVolume, rates: Rates, params: RemodelParams, seed: int = 4) -> tuple[Remodeler, cpu.Cavity, float]:
    """Start exactly one BMU at the middle of the slab surface; return engine, cavity, bone before."""
    r = Remodeler(vol, params, seed=seed)
    sc = step_scalars(rates, params, vol.voxel_size_um, 1)
    si = _surface_seed(vol)
    c = cpu.make_cavity(r.state, si, seed, 0, sc)
    idx, codes = cpu.claim_codes(r.state, si, c, sc.overfill_reach)
    before = float(r.state.bone.sum(dtype=np.float64))
    cpu.update(r.state, idx, codes, sc)
    return r, c, before


@pytest.mark.parametrize("voxel_um", [20.0, 40.0])
@pytest.mark.parametrize("surface_fraction", [0.1, 0.3, 0.45, 0.55, 0.9])
def test_a_cavity_opens_at_the_bone_surface(voxel_um, surface_fraction):
    """The opening plane lies at the slab's surface wherever it sits in its voxel, a partial
    voxel layer (bone < ½) above the seed counted: within a hundredth of a voxel."""
    thickness_um = (20 + surface_fraction) * voxel_um
    vol = _slab(voxel_um, thickness_um=thickness_um, size=40)
    r = Remodeler(vol, RemodelParams(), seed=4)
    sc = step_scalars(Rates(erosion_depth_um=50.0), RemodelParams(), voxel_um, 1)
    c = cpu.make_cavity(r.state, _surface_seed(vol), 4, 0, sc)
    assert (float(c.nz), float(c.ny), float(c.nx)) == pytest.approx((1.0, 0.0, 0.0), abs=1e-6)
    assert float(c.cz) == pytest.approx(thickness_um / voxel_um - 0.5, abs=0.01)


@pytest.mark.parametrize("voxel_um", [10.0, 15.0])
def test_cavity_volume_is_the_half_spheroid(voxel_um):
    params = RemodelParams()
    rates = Rates(erosion_depth_um=50.0)
    vol = _slab(voxel_um, thickness_um=400.0, size=int(480 / voxel_um))
    r, c, before = _one_bmu(vol, rates, params)
    sc = step_scalars(rates, params, voxel_um, 1)
    for _ in range(int(params.resorption_days)):
        cpu.update(r.state, np.empty(0, np.int64), np.empty(0, np.uint64), sc)
    removed = before - float(r.state.bone.sum(dtype=np.float64))
    expected = 2.0 / 3.0 * math.pi * float(c.a) * float(c.b) ** 2  # voxels
    assert not c.perforated
    assert removed == pytest.approx(expected, rel=0.05)
    # depth and width in µm do not depend on the voxel size (jitter within ±20 %)
    assert 0.8 * 50 <= float(c.a) * voxel_um <= 1.2 * 50


@pytest.mark.parametrize("refill", [1.0, 0.8, 1.5])
def test_full_cycle_refills_to_the_balance(refill):
    params = RemodelParams()
    rates = Rates(erosion_depth_um=50.0, refill_trabecular=refill)
    vol = _slab(12.0, thickness_um=400.0, size=40)
    r, c, before = _one_bmu(vol, rates, params)
    sc = step_scalars(rates, params, 12.0, 1)
    for _ in range(int(params.cycle_days) + 1):
        cpu.update(r.state, np.empty(0, np.int64), np.empty(0, np.uint64), sc)
    cavity = 2.0 / 3.0 * math.pi * float(c.a) * float(c.b) ** 2
    deficit = before - float(r.state.bone.sum(dtype=np.float64))
    assert (r.state.bmu_day < 0).all(), "the BMU released its voxels at the end of the cycle"
    if refill <= 1:
        assert deficit == pytest.approx((1 - refill) * cavity, abs=0.02 * cavity)
    else:  # new bone above the old surface: the mirrored cavity scaled by refill - 1, less
        # the sub-voxel rim the voxel grid cannot hold (measured: 82 %)
        gain = -deficit
        assert 0.7 * (refill - 1) * cavity < gain < 1.05 * (refill - 1) * cavity


@pytest.mark.parametrize("refill", [0.8, 1.5])
def test_a_balance_that_changes_during_formation_sets_the_level_it_reaches(refill):
    """A BMU started at balance whose refill changes halfway through formation ends at the new level.

    The layer between the old and the new level is formed when the balance rises (it was once
    skipped: a cavity refilled at 1.5 from halfway ended below one refilled at 1.0), and a
    rise builds above the old surface as a BMU of that refill from the start does: its cavity
    reserved the marrow up to the overfill's reach when it was claimed at balance (until model
    revision 2026-12-02 it held none, and the BMU built only inside its own partial voxels).
    """
    params = RemodelParams()
    balanced = Rates(erosion_depth_um=50.0)
    vol = _slab(12.0, thickness_um=400.0, size=40)
    r, c, before = _one_bmu(vol, balanced, params)
    empty = np.empty(0, np.int64), np.empty(0, np.uint64)
    switch = int(params.resorption_days + params.reversal_days + params.formation_days / 2)
    for _ in range(switch):
        cpu.update(r.state, *empty, step_scalars(balanced, params, 12.0, 1))
    changed = Rates(erosion_depth_um=50.0, refill_trabecular=refill)
    cpu.update(r.state, *empty, step_scalars(changed, params, 12.0, 1, previous_refill=refill_levels(balanced)))
    for _ in range(int(params.cycle_days) - switch):
        cpu.update(r.state, *empty, step_scalars(changed, params, 12.0, 1, previous_refill=refill_levels(changed)))
    assert (r.state.bmu_day < 0).all(), "the BMU released its voxels at the end of the cycle"
    cavity = 2.0 / 3.0 * math.pi * float(c.a) * float(c.b) ** 2
    deficit = before - float(r.state.bone.sum(dtype=np.float64))
    if refill <= 1:
        assert deficit == pytest.approx((1 - refill) * cavity, abs=0.02 * cavity)
    else:  # as test_full_cycle_refills_to_the_balance: the mirrored cavity scaled by refill - 1, less the rim
        assert 0.7 * (refill - 1) * cavity < -deficit < 1.05 * (refill - 1) * cavity


@pytest.mark.parametrize("voxel_size_um", [20.0, 40.0])
def test_a_bmu_started_before_the_balance_rose_builds_what_the_balance_asks(voxel_size_um):
    """A BMU at work when a therapy raises the balance builds what a BMU of the new balance builds.

    Every cavity reserves the marrow within the overfill's reach when it starts, and the level
    at formation fills it. Under the earlier rule a cavity held only the marrow its balance at
    the start reached: one started at 0.95 and finished at 1.3 built +0.10 cavity volumes at
    20 µm and +0.14 at 40 µm against +0.28 and +0.30 from the start (5 surface positions, 3
    draws), only inside its own partial voxels, more of them in µm on the coarser grid. That
    was TRT's remodelling space of day 0 refilling more on coarse voxels (docs/model.md).
    """
    from voxelbone.remodel.balance import one_bmu_build

    for f in (0.1, 0.5, 0.9):
        late = one_bmu_build(1.3, voxel_size_um, surface_fraction=f, refill_at_start=0.95)
        assert late == pytest.approx(one_bmu_build(1.3, voxel_size_um, surface_fraction=f), abs=0.02)
        assert late > 0.2
    # a falling balance is followed too: the reserved marrow stays empty
    fall = one_bmu_build(0.95, voxel_size_um, refill_at_start=1.3)
    assert fall == pytest.approx(one_bmu_build(0.95, voxel_size_um), abs=0.005)


@pytest.mark.parametrize("at_seed,elsewhere", [(1.4, 0.5), (0.6, 1.8)])
def test_every_voxel_of_a_bmu_refills_at_the_mechanical_factor_of_its_seed(at_seed, elsewhere):
    """With mechanics on, one BMU refills as a BMU of balance ``refill·f(seed)`` whatever the
    factors of the voxels it digs and builds into: the same bone, bit for bit, as a BMU of that
    balance without a field. (Each voxel once refilled at its own factor: the marrow above an
    opening, where the signal is the bone around it, built at another factor than its BMU's.)"""
    params = RemodelParams()
    vol = _slab(20.0, thickness_um=400.0, size=24)
    si = _surface_seed(vol)
    field = np.full(vol.shape, elsewhere, np.float32)
    field.ravel()[si] = at_seed
    runs = {}
    for name, rates, mod in (("field", Rates(erosion_depth_um=50.0), field),
                             ("plain", Rates(erosion_depth_um=50.0, refill_trabecular=at_seed), None)):
        r, _, before = _one_bmu(vol.copy(), rates, params)
        sc = step_scalars(rates, params, 20.0, 1)
        for _ in range(int(params.cycle_days) + 1):
            cpu.update(r.state, np.empty(0, np.int64), np.empty(0, np.uint64), sc, mod)
        assert (r.state.bmu_day < 0).all()
        runs[name] = (r.state.bone, float(r.state.bone.sum(dtype=np.float64)) - before)
    np.testing.assert_array_equal(runs["field"][0], runs["plain"][0])
    assert (runs["field"][1] > 0) == (at_seed > 1) and abs(runs["field"][1]) > 1.0  # voxels of bone


def test_mineralisation_follows_the_closed_form():
    law = MineralisationLaw()
    params = RemodelParams(mineralisation=law)
    shape = (4, 4, 4)
    bone = np.ones(shape, np.float32)
    vol = BoneVolume(bone, np.zeros(shape, np.float32), np.full(shape, Region.TRABECULAR, np.uint8), 20.0)
    r = Remodeler(vol, params)
    for dt, days in ((1, 400), (5, 400), (5, 30)):
        r.state.mineral[...] = 0
        r.state.osteoid[...] = 1  # freshly formed bone
        sc = step_scalars(Rates(0.0, 0.0), params, 20.0, dt)
        for _ in range(days // dt):
            cpu.update(r.state, np.empty(0, np.int64), np.empty(0, np.uint64), sc)
        assert float(r.state.mineral[0, 0, 0]) == pytest.approx(float(law.degree_at_age(days)), abs=1e-4)
        assert float(r.state.osteoid[0, 0, 0]) == pytest.approx(float(law.osteoid_at_age(days)), abs=1e-5)
    assert float(law.degree_at_age(40)) > 0.5 > float(law.degree_at_age(3))
    assert float(law.degree_at_age(3650)) == pytest.approx(law.mature_degree, abs=0.01)


def test_thin_trabecula_is_perforated_and_not_repaired():
    params = RemodelParams()
    rates = Rates(erosion_depth_um=50.0)
    size, v = 40, 10.0
    z = (np.arange(size) + 0.5) * v
    for thickness, perforates in ((30.0, True), (200.0, False)):
        prof = np.clip(0.5 + (thickness / 2 - np.abs(z - 200.0)) / v, 0, 1).astype(np.float32)
        bone = np.broadcast_to(prof[:, None, None], (size,) * 3).copy()
        vol = BoneVolume(bone, bone * np.float32(0.9), np.full(bone.shape, Region.TRABECULAR, np.uint8), v)
        r, c, before = _one_bmu(vol, rates, params)
        assert c.perforated is perforates
        if perforates:
            sc = step_scalars(rates, params, v, 1)
            for _ in range(int(params.cycle_days) + 1):
                cpu.update(r.state, np.empty(0, np.int64), np.empty(0, np.uint64), sc)
            assert (r.state.bone[:, size // 2, size // 2] < 0.5).all(), "the hole stays open"


def _cortex_with_plate(n: int, plate: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """Bone and region of an n³ cube: a 4-voxel cortex at x < 4 and a plate attached to it."""
    bone = np.zeros((n, n, n), np.float32)
    region = np.full(bone.shape, Region.TRABECULAR, np.uint8)
    region[:, :, :4] = Region.CORTICAL
    bone[:, :, :4] = 1.0
    bone[plate] = 1.0
    return bone, region


def test_loose_fragments_are_removed_and_counted():
    n, v = 40, 20.0
    bone, region = _cortex_with_plate(n, np.s_[18:22, 4:30, 4:30])
    bone[5:9, 30:34, 30:34] = 1.0             # a loose 4³ fragment
    bone[30, 5, 35] = 0.3                     # partial-volume dust
    vol = BoneVolume(bone, bone * np.float32(0.9), region, v)
    r = Remodeler(vol)
    r.remove_fragments()
    s = r.stats()
    assert s.fragments_removed == 1
    assert s.fragment_volume_mm3 == pytest.approx((64 + 0.3) * (v / 1000) ** 3, rel=1e-6)
    assert r.state.bone[5:9, 30:34, 30:34].sum() == 0 and r.state.bone[30, 5, 35] == 0
    assert r.state.bone[18:22, 4:30, 4:30].min() == 1.0


def test_bone_cut_by_the_sample_faces_is_not_a_loose_fragment():
    # A branch of the network that leaves the cube through a face cutting the trabecular
    # compartment is held by the bone beyond the sample; only pieces loose inside go.
    bone, region = _cortex_with_plate(32, np.s_[14:18, 4:26, 4:26])
    bone[0:10, 20:24, 28:31] = 1.0            # strut leaving through the cut face z = 0
    bone[24:28, 24:28, 24:28] = 1.0           # a loose 4³ fragment
    r = Remodeler(BoneVolume(bone, bone * np.float32(0.9), region, 40.0))
    r.remove_fragments()
    assert r.stats().fragments_removed == 1
    assert r.state.bone[0:10, 20:24, 28:31].min() == 1.0, "a strut cut by the sample face was removed"
    assert r.state.bone[24:28, 24:28, 24:28].sum() == 0


def _plate_rod_plate(voxel_size_um: float, rod_um: float, n: int = 16, sub: int = 10) -> BoneVolume:
    """Two plates (z < 4, z ≥ n − 4) joined by a rod along z of square section ``rod_um``, centred
    on a corner of four voxel columns (it straddles their boundaries), sampled at ``sub``² points
    per voxel for its bone fractions; a loose voxel elsewhere makes the fragment rule run."""
    fine = np.zeros((n, n * sub, n * sub), np.float32)
    fine[:4], fine[-4:] = 1.0, 1.0
    half = int(round(rod_um / voxel_size_um * sub / 2))
    c = n * sub // 2
    fine[:, c - half:c + half, c - half:c + half] = 1.0
    bone = fine.reshape(n, n, sub, n, sub).mean(axis=(2, 4)).astype(np.float32)
    bone[n // 2, 1, 1] = 1.0
    region = np.full(bone.shape, Region.TRABECULAR, np.uint8)
    return BoneVolume(bone, bone * np.float32(0.9), region, voxel_size_um)


@pytest.mark.parametrize("voxel_size_um", [
    20.0,
    pytest.param(40.0, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "the fragment rule keeps a partial-volume voxel only beside a voxel of bone ≥ ½, so a rod that is "
    "all partial voxels is cut: a 45 µm rod straddling voxel boundaries at 40 µm (four voxels of about 0.35) "
    "loses its middle, at 20 µm it keeps a core of bone ≥ ½; measured on the invariance cubes, the 40 µm "
    "cube removes 0.27-0.34 % more of its trabecular bone a year as fragments (docs/user-guide/invariance.md)"))),
])
def test_a_thin_rod_between_two_plates_is_not_a_loose_fragment_at_any_voxel_size(voxel_size_um):
    vol = _plate_rod_plate(voxel_size_um, 45.0)
    around = np.s_[4:-4, 5:11, 5:11]  # the rod between the plates (the loose voxel lies outside)
    rod = float(vol.bone[around].sum())
    r = Remodeler(vol.copy())
    r.remove_fragments()
    assert r.stats().fragments_removed == 1  # the loose voxel
    assert float(np.asarray(r.state.bone)[around].sum()) == pytest.approx(rod, rel=0.02)


# ---------------------------------------------------------------------------------------
# behaviour over simulated years
# ---------------------------------------------------------------------------------------
def _run(vol: BoneVolume, rates: Rates, years: float, dt: int = 5, seed: int = 1) -> Remodeler:
    r = Remodeler(vol.copy(), seed=seed)
    for k in range(int(round(years * 365.25 / dt))):
        r.step(k, rates, dt)
        if (k * dt) % 30 < dt:
            r.remove_fragments()
    return r


def _bv(vol: BoneVolume) -> float:
    trab = vol.region == Region.TRABECULAR
    return float(((vol.bone >= 0.5) & trab).sum() / trab.sum())


@pytest.fixture(scope="module")
def lumbar_small():
    return {v: make_phantom("lumbar_spine", int(round(1920 / v)), v, seed=2, tb_sp_um=500.0, ct_th_um=250.0)
            for v in (20.0, 30.0)}


def test_voxel_size_independence(lumbar_small):
    rates = Rates(activation_trabecular_per_yr=1.2, erosion_depth_um=50.0, refill_trabecular=0.8)
    change = {}
    for v, vol in lumbar_small.items():
        r = _run(vol, rates, 1.0, dt=5)
        change[v] = float(r.state.bone[vol.region == Region.TRABECULAR].sum()) / float(
            vol.bone[vol.region == Region.TRABECULAR].sum()) - 1.0
    assert change[20.0] < -0.01 and change[30.0] < -0.01
    assert change[30.0] / change[20.0] == pytest.approx(1.0, abs=0.20)


def test_negative_balance_thins_perforates_and_opens_the_cortex(lumbar_small):
    from voxelbone.metrics import local_thickness

    vol = lumbar_small[30.0]
    trab = vol.region == Region.TRABECULAR
    cort = vol.region == Region.CORTICAL
    losing = _run(vol, Rates(1.0, 1.0, 55.0, 0.75, 0.8), 2.0)
    held = _run(vol, Rates(1.0, 1.0, 50.0, 1.0, 1.0), 2.0)

    def measures(v):
        m = (v.bone >= 0.5) & trab
        lt = local_thickness(m, v.voxel_size_um)
        return dict(bv=_bv(v), th=float(lt[m].mean()), po=float(((v.bone < 0.5) & cort).sum() / cort.sum()))

    m_loss, m_held = measures(losing.volume), measures(held.volume)
    assert m_loss["bv"] < 0.93 * m_held["bv"]
    assert m_loss["th"] < m_held["th"] - 3.0
    assert m_loss["po"] > m_held["po"] + 0.005
    assert losing.stats().perforations > held.stats().perforations


@pytest.mark.parametrize("seed", [4, 5])
def test_balanced_premenopausal_rates_hold_the_structure(seed):
    """After one cycle (the remodeling space has opened), balanced BMUs keep BV/TV within ±0.5 %/yr.

    On the site's own lattice (2.4 mm cube at 30 µm): squeezing its spacing to fit a smaller
    cube (``tb_sp_um=500``, as the fixture above does) makes the thin horizontal struts so
    many (Conn.D ~25 /mm³) that cavities cut them even at balance.
    """
    vol = make_phantom("lumbar_spine", 80, 30.0, seed=2)
    r = Remodeler(vol, seed=seed)
    rates = Rates(0.13, 0.08, 47.0, 1.0, 1.0)
    dt = 5
    marks = {round(y * 365.25 / dt): y for y in (0.6, 2.6)}
    bv = {}
    for k in range(max(marks)):
        r.step(k, rates, dt)
        if (k * dt) % 30 < dt:
            r.remove_fragments()
        if k + 1 in marks:
            bv[marks[k + 1]] = _bv(r.volume)
    assert abs(bv[2.6] / bv[0.6] - 1) / 2.0 < 0.005


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
def test_bad_steps_and_rates_are_refused(small):
    r = Remodeler(small.copy())
    with pytest.raises(ValueError, match="positive whole number of days"):
        r.step(0, Rates(), 0)
    with pytest.raises(ValueError, match="longer than the shortest remodeling phase"):
        r.step(0, Rates(), 45)
    with pytest.raises(ValueError, match="step_index"):
        r.step(-1, Rates(), 1)
    with pytest.raises(ValueError, match="erosion_depth_um=500"):
        r.step(0, Rates(erosion_depth_um=500.0), 1)
    with pytest.raises(ValueError, match="activation_trabecular_per_yr"):
        r.step(0, Rates(activation_trabecular_per_yr=-1.0), 1)
    with pytest.raises(ValueError, match="seed"):
        Remodeler(small.copy(), seed=-2)
    with pytest.raises(ValueError, match="canal_radius_um"):
        RemodelParams(canal_radius_um=150.0)
    for reach in (0.0, 3.5, float("nan"), True):
        with pytest.raises(ValueError, match=r"overfill_reach_depths must lie in \(0, 3\]"):
            RemodelParams(overfill_reach_depths=reach)


def test_a_volume_beyond_the_32_bit_seed_index_is_refused_before_allocating():
    """``bmu_seed`` holds a flat voxel index in 32 bits: 2³² voxels are refused with a clear error."""
    from voxelbone.remodel.state import MAX_STATE_VOXELS, RemodelState

    zero = np.float32(0.0)
    big = np.broadcast_to(zero, (2**11, 2**11, 2**10))  # 2³² voxels, no memory behind it
    with pytest.raises(ValueError, match="larger than the engine's 4294967295"):
        RemodelState.new(big, big, np.broadcast_to(np.uint8(1), big.shape))
    assert MAX_STATE_VOXELS == np.iinfo(np.uint32).max


def test_too_large_for_device_memory_is_refused_before_allocating():
    class FakeRuntime:
        @staticmethod
        def memGetInfo():
            return 2 * 1024**3, 80 * 1024**3

    class FakeCupy:
        class cuda:
            runtime = FakeRuntime

    Remodeler.check_fits((256, 256, 256), FakeCupy)
    with pytest.raises(DeviceMemoryError, match=r"1024×1024×1024 volume needs about .* GB"):
        Remodeler.check_fits((1024, 1024, 1024), FakeCupy)


def test_checkpoint_state_round_trip_continues_identically(small):
    a = Remodeler(small.copy(), seed=9)
    for k in range(10):
        a.step(k, FAST, 8)  # 80 days: the first BMUs are forming
    b = Remodeler.from_state({k: v.copy() for k, v in a.state_arrays().items()}, a.params, 9, meta=a.state_meta())
    later = replace(FAST, refill_trabecular=1.4, refill_cortical=1.2)  # the balance changes at the resume
    for k in range(10, 20):
        a.step(k, later, 2)
        b.step(k, later, 2)
    for name, arr in a.state_arrays().items():
        np.testing.assert_array_equal(arr, b.state_arrays()[name])
    assert uniform(9, 3, Stream.ACTIVATION, np.arange(3)).shape == (3,)


def test_a_state_with_8_bit_heights_resumes_as_the_16_bit_state(small):
    """States written before ``bmu_u`` widened to 16 bits (same 1/127.5 scale) resume unchanged."""
    a = Remodeler(small.copy(), seed=9)
    for k in range(10):
        a.step(k, FAST, 2)
    # such a state held heights up to 2 (255): the overfill's reach now claims up to 1 + reach
    a.state.bmu_u[...] = np.minimum(a.state.bmu_u, 255)
    arrays = {k: v.copy() for k, v in a.state_arrays().items()}
    assert arrays["bmu_u"].max() == 255
    arrays["bmu_u"] = arrays["bmu_u"].astype(np.uint8)
    b = Remodeler.from_state(arrays, a.params, 9, meta=a.state_meta())
    assert b.state.bmu_u.dtype == np.uint16
    for k in range(10, 20):
        a.step(k, FAST, 2)
        b.step(k, FAST, 2)
    for name, arr in a.state_arrays().items():
        np.testing.assert_array_equal(arr, b.state_arrays()[name])


# ---------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_matches_numpy_bit_for_bit(small):
    import cupy

    a = Remodeler(small.copy(), seed=5)
    g = Remodeler(small.to(cupy), seed=5)
    for k in range(40):
        a.step(k, FAST, 2)
        g.step(k, FAST, 2)
        if k % 10 == 9:
            a.remove_fragments()
            g.remove_fragments()
    for name, arr in a.state_arrays().items():
        np.testing.assert_array_equal(arr, cupy.asnumpy(g.state_arrays()[name]), err_msg=name)
    assert a.stats() == g.stats()


@pytest.mark.gpu
def test_gpu_step_does_not_wait_for_the_device(small):
    """A step queued behind a long kernel returns at once: nothing in it synchronises the host."""
    import time

    import cupy

    g = Remodeler(small.to(cupy), seed=5)
    g.step(0, FAST, 2)  # compile everything once
    cupy.cuda.get_current_stream().synchronize()
    spin = cupy.RawKernel(r"""extern "C" __global__ void spin(long long cycles) {
        long long t0 = clock64(); while (clock64() - t0 < cycles) { } }""", "spin")
    spin((1,), (1,), (np.int64(2_000_000_000),))  # ~1 s of device time
    t0 = time.perf_counter()
    for k in range(1, 6):
        g.step(k, FAST, 2)
    host_s = time.perf_counter() - t0
    pending = not cupy.cuda.get_current_stream().done
    cupy.cuda.get_current_stream().synchronize()
    assert pending and host_s < 0.5


def test_claim_sentinel_is_the_kernels():
    # the GPU step fills its claim scratch with CLAIM_NONE; the kernel reads it as VB_CLAIM_NONE
    import re

    from voxelbone.kernels import kernel_source
    from voxelbone.remodel.state import CLAIM_NONE

    m = re.search(r"#define\s+VB_CLAIM_NONE\s+(0x[0-9A-Fa-f]+)ULL", kernel_source("remodel"))
    assert m is not None, "kernels/remodel.cu no longer defines VB_CLAIM_NONE"
    assert CLAIM_NONE.dtype == np.uint64 and int(CLAIM_NONE) == int(m.group(1), 16)


def test_claim_layout_and_column_depth_floor_are_the_kernels():
    # one layout of the claim code: state.CLAIM_* in the NumPy twin, VB_CLAIM_* in the kernel
    import re

    from voxelbone.kernels import kernel_source
    from voxelbone.remodel import state

    src = kernel_source("remodel")

    def define(name: str) -> float:
        m = re.search(rf"#define\s+VB_{name}\s+([0-9.]+)(?:ULL|f)?\b", src)
        assert m is not None, f"kernels/remodel.cu no longer defines VB_{name}"
        return float(m.group(1))

    for name in ("CLAIM_SEED_SHIFT", "CLAIM_FLAGS_SHIFT", "CLAIM_FLAGS_MASK", "CLAIM_FRAC_SHIFT", "CLAIM_U_SHIFT", "CLAIM_U_MASK",
                 "CLAIM_K_MASK", "CLAIM_FRAC_STEPS", "CLAIM_U_STEPS", "MIN_COLUMN_DEPTH", "MAX_COLUMN_DEPTH",
                 "MIN_FILL_RAMP"):
        assert define(name) == float(getattr(state, name)), name


def test_the_cavity_share_packed_into_a_claim_is_the_share_read_back():
    # pack_claims writes the share in 1/255 steps; claim_share_steps (the update and the
    # starting estimate) reads that field back, whatever the seed, flags, height and depth beside it
    from voxelbone.remodel.cpu import Cavity, pack_claims
    from voxelbone.remodel.state import CLAIM_FRAC_STEPS, claim_share_steps

    f = np.float32
    cav = Cavity(True, f(5), f(5), f(5), f(0), f(0), f(1), f(3), f(2), 3, 3, 3, True)
    frac = np.array([0.001, 0.2, 0.5, 0.999, 1.0], dtype=f)
    n = frac.size
    flat, codes = pack_claims(2**34 + 7, cav, np.arange(n), np.ones(n, bool), frac, np.full(n, 3.9, f),
                              np.full(n, 40.0, f), np.full(n, 8, np.uint64))
    assert flat.tolist() == list(range(1, n))  # a share that rounds to 0 claims nothing
    np.testing.assert_array_equal(claim_share_steps(codes), np.rint(frac[1:] * CLAIM_FRAC_STEPS).astype(np.uint64))


# ---------------------------------------------------------------------------------------
# the balance one BMU leaves (voxelbone.remodel.balance; benchmarks/overfill_build_study.py)
_SURFACES = (0.1, 0.3, 0.5, 0.7, 0.9)


def _mean_build(refill: float, voxel_size_um: float, **kw) -> float:
    from voxelbone.remodel.balance import one_bmu_build

    return float(np.mean([one_bmu_build(refill, voxel_size_um, surface_fraction=f, **kw) for f in _SURFACES]))


@pytest.mark.parametrize("voxel_size_um", [20.0, 40.0])
def test_a_balanced_bmu_leaves_the_bone_as_it_was(voxel_size_um):
    """Refill 1 restores exactly what the cavity removed, wherever the surface sits in its voxel."""
    from voxelbone.remodel.balance import one_bmu_build

    for f in _SURFACES:
        assert abs(one_bmu_build(1.0, voxel_size_um, surface_fraction=f)) < 1e-5
    # and the probe sees a balance: a deficit below 1, a gain above
    assert _mean_build(0.5, voxel_size_um) < -0.3 and _mean_build(1.5, voxel_size_um) > 0.3


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "on a convex surface a BMU's net loss depends on the voxel size: on the top of a 90 µm-radius rod, refill "
    "0.93, 55 µm cavities, a 40 µm BMU leaves 1.6x the net loss of a 20 µm one (radius 150 µm: 1.2x; on a flat "
    "surface the same). Opening the cavity at the bone surface (model revision 2026-12-03) brought it down from "
    "3.0x (2.2x); the rest is the normal, one voxel's central-difference gradient, which tilts 24-32 degrees into "
    "a 40 µm rod (docs/user-guide/invariance.md)"))
def test_a_bmu_on_a_rod_leaves_the_same_deficit_at_20_and_40_um():
    from voxelbone.remodel.balance import one_bmu_net_um3

    net = {v: float(np.mean([one_bmu_net_um3(0.93, v, surface_fraction=f, rod_radius_um=90.0, seed=s,
                                             erosion_depth_um=55.0) for f in (0.2, 0.5, 0.8) for s in (1, 2, 3)]))
           for v in (20.0, 40.0)}
    assert net[20.0] < 0 and net[40.0] < 0, net  # a deficit at both: the probe sees the balance
    assert 0.75 < net[40.0] / net[20.0] < 1.33, net


def _canal_bmu_net(refill: float, voxel_size_um: float, surface_fraction: float, seed: int) -> tuple[float, float]:
    """One pore-wall BMU on an 80 µm-radius canal along z through solid cortex, its whole cycle:
    (net bone change, bone its cavity removed), µm³. The canal is the balance probe's rod
    (``balance._rod``) turned along z and inverted, its axis shifted with ``surface_fraction``."""
    from voxelbone.remodel.balance import _STEP_DAYS, _rod, _run_bmu
    from voxelbone.remodel.state import RemodelState

    params, radius, v = RemodelParams(), 80.0, voxel_size_um
    n = 2 * int(math.ceil((params.osteon_half_length_um * 1.3 + params.lateral_radius_um + 150.0 + radius) / v)) + 6
    rod = _rod(n, v, radius, (surface_fraction - 0.5) * v)  # along x
    bone = np.ascontiguousarray(np.float32(1.0) - rod.transpose(2, 0, 1))  # a canal along z, shifted along y
    c = n // 2
    y = c + int(np.nonzero(bone[c, c:, c] >= 0.5)[0].min())  # the wall voxel on +y at mid-length
    out = []
    for r in (refill, 0.0):  # refill 0: the cavity itself
        state = RemodelState.new(bone, bone * np.float32(0.9), np.full(bone.shape, Region.CORTICAL, np.uint8))
        start = float(state.bone.sum(dtype=np.float64))
        sc = step_scalars(Rates(activation_trabecular_per_yr=1.0, activation_cortical_per_yr=1.0, erosion_depth_um=50.0,
                                refill_trabecular=r, refill_cortical=r), params, v, _STEP_DAYS)
        _run_bmu(state, c, y, c, sc, seed, 1, params)
        out.append((float(state.bone.sum(dtype=np.float64)) - start) * v**3)
    return out[0], -out[1]


# A claimed voxel just below the opening plane (w in (-1/2, -1/2 depth/k), k the column depth
# rounded to 1/8) had its column height u so far above 1 that its fill ramp was flat
# (phi(1) = phi(0) = 0): it was dug and never refilled, whatever the balance (a balanced 20 µm BMU
# on a canal whose opening plane passes through a row of voxel centres lost 15-23 % of its
# cavity). Such a voxel is no longer claimed (model revision 2026-12-03b, both twins:
# cpu.pack_claims, vb_pack_claim).
def test_a_balanced_pore_wall_bmu_leaves_a_canal_as_it_was():
    for f in (0.2, 0.5, 0.8):
        for seed in (1, 2, 3):
            net, cavity = _canal_bmu_net(1.0, 20.0, f, seed)
            assert cavity > 1e6, cavity  # the probe digs: ~3·10⁶ µm³
            assert abs(net) < 0.01 * cavity, (f, seed, net, cavity)


def test_the_balance_probe_rejects_a_surface_on_a_voxel_boundary():
    from voxelbone.remodel.balance import one_bmu_build

    with pytest.raises(ValueError, match="surface_fraction"):
        one_bmu_build(1.0, 20.0, surface_fraction=1.0)


def test_the_balance_probe_works_on_a_rod():
    """On the top of a 110 µm rod a BMU's cavity cuts less bone than on a flat surface (the rod
    curves away under it), a balanced BMU still leaves the rod as it was, and an overfilled one
    adds bone (measured at 20 µm, axis at the voxel centre, draw 1: cavity 643 against 1628
    ·10³ µm³ on a flat surface; refill 1.5 adds 0.55 of its cavity)."""
    from voxelbone.remodel.balance import one_bmu_build, one_bmu_cavity_um3

    rod = one_bmu_cavity_um3(20.0, rod_radius_um=55.0)
    flat = one_bmu_cavity_um3(20.0)
    assert 0.2 * flat < rod < 0.6 * flat, (rod, flat)
    assert abs(one_bmu_build(1.0, 20.0, rod_radius_um=55.0)) < 0.01
    assert one_bmu_build(1.5, 20.0, rod_radius_um=55.0) > 0.3
    with pytest.raises(ValueError, match="rod_radius_um"):
        one_bmu_cavity_um3(40.0, rod_radius_um=15.0)


@pytest.mark.parametrize("voxel_size_um", [20.0, 30.0, 40.0])
def test_one_bmu_leaves_r_minus_one_cavity_volumes_at_every_voxel_size(voxel_size_um):
    """A deficit and an overfill are the same share of the cavity on every grid (within 10 %).

    Up to the cap of the refill (``HormoneEffects.max_refill``), the largest balance a BMU can
    have. Beyond it (refill 3, two cavity depths of overfill, which no BMU reaches) a 40 µm BMU
    builds 2.21 cavity volumes for the 2 asked, 20 and 30 µm 2.12 (measured 2026-12-03)."""
    from voxelbone.biology import HormoneEffects

    for refill in (0.5, 1.5, 2.0, HormoneEffects().max_refill):
        assert _mean_build(refill, voxel_size_um) == pytest.approx(refill - 1.0, rel=0.1), refill


# A positive balance built less than it asked where the surface lay in a partial voxel layer
# (bone < 1/2) above the seed, when a cavity opened at the seed's own sub-voxel surface
# (0.22-0.36 of 0.40 at 20 µm with the layer 0.1-0.45 full, model revision 2026-12-02); it
# opens at the bone surface now, the partial voxel outside its seed counted
# (voxelbone.remodel.cpu._outer_partial). The flank rule below is still open (strict: the day
# it is fixed it fails as XPASS, and its marker goes).
@pytest.mark.parametrize("voxel_size_um", [20.0, 40.0])
def test_an_overfilled_bmu_builds_its_balance_wherever_the_surface_sits_in_its_voxel(voxel_size_um):
    """One BMU of refill 1.4 on a flat surface leaves 0.4 of its cavity (within 10 %) whether
    the voxel layer the surface lies in is a tenth or nine tenths full (four draws).
    ``test_one_bmu_leaves_r_minus_one_cavity_volumes_at_every_voxel_size`` averages over the
    surface positions and does not see the difference."""
    from voxelbone.remodel.balance import one_bmu_build

    got = {f: float(np.mean([one_bmu_build(1.4, voxel_size_um, surface_fraction=f, seed=s) for s in (1, 2, 3, 4)]))
           for f in (0.1, 0.3, 0.45, 0.55, 0.7, 0.9)}
    assert all(abs(b - 0.4) <= 0.04 for b in got.values()), got


FLANK_NOT_YET = (
    "the bone a positive balance builds stands on the cavity's tangent plane, not on the surface: on "
    "the flank of an earlier BMU's mound it falls inside the mound uphill and short of the surface "
    "downhill, and a fine grid resolves the mound that a coarse one holds in partial voxels; measured "
    "(100 µm from the earlier BMU, both at refill 1.4, 20 draws; model revision 2026-12-02): 0.20 cavity "
    "volumes at 20 µm, 0.30 at 40 µm, against 0.40 (0.24 and 0.36 before)")


@pytest.mark.xfail(reason=FLANK_NOT_YET, raises=AssertionError, strict=True)
def test_a_bmu_on_the_flank_of_an_earlier_one_builds_its_balance_at_20_and_40_um():
    """A BMU of refill 1.4 started 100 µm from an earlier one of refill 1.4 (which finished its
    cycle and left a mound) leaves 0.4 of its cavity (within 15 %) at 20 and at 40 µm."""
    got = {v: _mean_build(1.4, v, after=(1.4, 100.0)) for v in (20.0, 40.0)}
    assert all(b == pytest.approx(0.4, rel=0.15) for b in got.values()), got


def test_the_balance_probe_runs_a_bmu_after_an_earlier_one():
    """``after``: the earlier BMU changes what the later one works on (its mound), a balanced pair
    leaves the surface as it was, and a shift beyond the probe's room is refused."""
    from voxelbone.remodel.balance import one_bmu_build, one_bmu_cavity_um3

    assert abs(one_bmu_build(1.0, 20.0, after=(1.0, 100.0))) < 1e-5
    fresh = one_bmu_cavity_um3(20.0, surface_fraction=0.7)
    on_mound = one_bmu_cavity_um3(20.0, surface_fraction=0.7, after=(2.0, 0.0))
    assert on_mound != pytest.approx(fresh, rel=1e-3)
    with pytest.raises(ValueError, match="after"):
        one_bmu_build(1.4, 20.0, after=(1.4, 1000.0))


def test_the_surface_build_probe_sees_the_remodelling_space_and_the_balance():
    """Many BMUs on a flat slab: at balance the slab thins by the open remodelling space only
    (a few µm, not nothing), a deficit thins it further, and a grid too coarse for the slab is
    refused."""
    from voxelbone.remodel.balance import surface_build_um

    kw = dict(years=1.0, edge_um=960.0, activation_per_yr=1.0, seed=3)
    balanced = surface_build_um(1.0, 40.0, **kw)
    deficit = surface_build_um(0.5, 40.0, **kw)
    assert -15.0 < balanced < -0.5, balanced
    assert deficit < balanced - 2.0, (deficit, balanced)
    with pytest.raises(ValueError, match="voxel_size_um"):
        surface_build_um(1.0, 200.0, edge_um=960.0)


def test_the_balance_probe_refuses_an_earlier_bmu_it_cannot_place():
    from voxelbone.remodel.balance import one_bmu_build

    with pytest.raises(ValueError, match="flat surface only"):
        one_bmu_build(1.4, 20.0, rod_radius_um=55.0, after=(1.4, 100.0))
    with pytest.raises(ValueError, match="360 µm"):
        one_bmu_build(1.4, 20.0, after=(float("nan"), 100.0))
