"""NumPy twin of ``kernels/remodel.cu``: the same rules, operation for operation.

Every float is float32 and every expression keeps the kernel's order of operations, so a
run gives the same volume bit for bit on the CPU and the GPU (the kernels are compiled
without fused multiply-add). Work is restricted to the voxels that matter — surface
candidates, seed boxes — and the per-voxel update runs as one Numba loop
(:mod:`voxelbone.remodel.cpu_loops`), so a year of a 128³ volume runs in seconds on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import array_module
from ..rng import Stream, uniform
from ..volume import Region
from .state import (
    CLAIM_FLAGS_MASK,
    CLAIM_FLAGS_SHIFT,
    CLAIM_FRAC_SHIFT,
    CLAIM_FRAC_STEPS,
    CLAIM_K_MASK,
    CLAIM_SEED_SHIFT,
    CLAIM_U_MASK,
    CLAIM_U_SHIFT,
    CLAIM_U_STEPS,
    FLAG_OSTEONAL,
    FLAG_OVERFILL,
    FLAG_PERFORATED,
    FLAG_RESORBED,
    MAX_COLUMN_DEPTH,
    MIN_COLUMN_DEPTH,
    MIN_FILL_RAMP,
    RemodelState,
    StepScalars,
    claim_share_steps,
)

__all__ = ["activate", "claim", "model", "update"]

f32 = np.float32
_OUT, _TRAB, _CORT = int(Region.OUTSIDE), int(Region.TRABECULAR), int(Region.CORTICAL)
_HALF, _ONE, _ZERO = f32(0.5), f32(1.0), f32(0.0)
_NO_MOD = np.empty(0, dtype=f32)  # update_voxels' refill_mod for none

#: Magnitudes below this (2^-64 of a voxel) are exactly 0 in both twins: the device runs
#: with flush-to-zero (CuPy compiles with ``-ftz=true``), the CPU keeps subnormals, so a
#: decaying float32 (osteoid after ~844 days) would otherwise part the twins. See
#: ``vb_flush`` in kernels/vb_common.cuh (``cpu_loops.update_voxels`` applies it).
TINY = f32(2.0**-64)

_NEIGHBOURS = ((-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1))


def _shift_or(flag: np.ndarray, out: np.ndarray) -> None:
    """``out |= flag`` shifted onto each voxel from each of its 6 neighbours."""
    for dz, dy, dx in _NEIGHBOURS:
        src = tuple(slice(max(d, 0), flag.shape[a] + min(d, 0)) for a, d in enumerate((dz, dy, dx)))
        dst = tuple(slice(max(-d, 0), flag.shape[a] + min(-d, 0)) for a, d in enumerate((dz, dy, dx)))
        out[dst] |= flag[src]


def surface_flags(bone: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel: has a marrow 6-neighbour; has a trabecular-marrow 6-neighbour (NumPy or CuPy arrays)."""
    xp = array_module(bone)
    marrow = (bone < _HALF) & (region != _OUT)
    any_m = xp.zeros(bone.shape, dtype=bool)
    _shift_or(marrow, any_m)
    any_tm = xp.zeros(bone.shape, dtype=bool)
    _shift_or(marrow & (region != _CORT), any_tm)
    return any_m, any_tm


def pore_wall_voxels(bone: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The voxels that can start a pore-wall BMU, and the region whose bone surface is their wall.

    Candidates: cortical bone ≥ ½ with a marrow face-neighbour and no trabecular-marrow one
    (``activate``'s osteonal start). Wall region: the candidates and the cortical pores they
    face; the marching-cubes area of the bone surface within it is the true wall area
    (NumPy or CuPy arrays).
    """
    any_m, any_tm = surface_flags(bone, region)
    cort = region == _CORT
    cand = cort & (bone >= _HALF) & any_m & ~any_tm
    return cand, cand | (cort & (bone < _HALF))


def activate(state: RemodelState, seed: int, step: int, sc: StepScalars,
             act_mod: np.ndarray | None = None) -> np.ndarray:
    """Indices (ascending) of the surface voxels that start a BMU this step (``vb_activate``).

    ``act_mod``: optional per-voxel float32 factor on the activation probability (the
    mechanical modulation, ``vb_mech_scale``); ``None`` leaves the probability as it is.
    """
    bone, region = state.bone, state.region
    any_m, any_tm = surface_flags(bone, region)
    cand = np.flatnonzero(((region != _OUT) & (state.bmu_day < 0) & (bone >= _HALF) & any_m).ravel())
    if cand.size == 0:
        return cand.astype(np.int64)
    osteonal = (region.ravel()[cand] == _CORT) & ~any_tm.ravel()[cand]
    p = np.where(osteonal, sc.p_osteonal, sc.p_hemi).astype(f32)
    if act_mod is not None:
        p = p * act_mod.ravel()[cand]
    u = uniform(seed, step, Stream.ACTIVATION, cand.astype(np.uint64))
    return cand[u < p].astype(np.int64)


@dataclass
class Cavity:
    """Geometry of one BMU in voxel units (mirror of ``vb_cavity``)."""

    osteonal: bool
    cz: np.float32
    cy: np.float32
    cx: np.float32
    nz: np.float32
    ny: np.float32
    nx: np.float32
    a: np.float32
    b: np.float32
    ez: int
    ey: int
    ex: int
    perforated: bool
    bz: np.float32 = _ZERO
    cortical: bool = False  # seeded in the cortex (endocortical or pore wall): flagged FLAG_OSTEONAL


def _grad_axis(bone: np.ndarray, z: int, y: int, x: int, axis: int) -> np.float32:
    n = bone.shape[axis]
    c = (z, y, x)[axis]
    lo = c - 1 if c > 0 else c
    hi = c + 1 if c < n - 1 else c
    if hi == lo:
        return _ZERO
    pl, ph = [z, y, x], [z, y, x]
    pl[axis], ph[axis] = lo, hi
    return (bone[tuple(ph)] - bone[tuple(pl)]) / f32(hi - lo)


def cavity_jitter(seed: int, step: int, si: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The size and shape factors (0.8–1.2, float32) of the cavities seeded at flat indices ``si``."""
    idx = np.asarray(si, dtype=np.uint64)
    j1 = f32(0.8) + f32(0.4) * uniform(seed, step, Stream.CAVITY_SIZE, idx)
    j2 = f32(0.8) + f32(0.4) * uniform(seed, step, Stream.CAVITY_SHAPE, idx)
    return j1, j2


def make_cavity(state: RemodelState, si: int, seed: int, step: int, sc: StepScalars,
                jitter: tuple[np.float32, np.float32] | None = None) -> Cavity:
    """Cavity of the BMU seeded at flat index ``si`` (``vb_make_cavity``).

    ``jitter``: its :func:`cavity_jitter` factors when already drawn (for many seeds at once).
    """
    bone, region = state.bone, state.region
    nz, ny, nx = bone.shape
    x, y, z = si % nx, (si // nx) % ny, si // (nx * ny)
    first = -1
    any_tm = False
    for k, (dz, dy, dx) in enumerate(_NEIGHBOURS):
        zz, yy, xx = z + dz, y + dy, x + dx
        if not (0 <= zz < nz and 0 <= yy < ny and 0 <= xx < nx):
            continue
        if bone[zz, yy, xx] < _HALF and region[zz, yy, xx] != _OUT:
            if first < 0:
                first = k
            if region[zz, yy, xx] != _CORT:
                any_tm = True
    osteonal = region[z, y, x] == _CORT and not any_tm
    if jitter is None:
        j1s, j2s = cavity_jitter(seed, step, np.array([si]))
        jitter = j1s[0], j2s[0]
    j1, j2 = jitter
    fdz, fdy, fdx = _NEIGHBOURS[first if first >= 0 else 0]
    if osteonal:
        return make_wall_cavity(state, z, y, x, first, j1, j2, sc)
    gz = _grad_axis(bone, z, y, x, 0)
    gy = _grad_axis(bone, z, y, x, 1)
    gx = _grad_axis(bone, z, y, x, 2)
    norm2 = (gz * gz + gy * gy) + gx * gx
    if norm2 < f32(1e-6):
        n_z, n_y, n_x = f32(fdz), f32(fdy), f32(fdx)
    else:
        inv = _ONE / np.sqrt(norm2)
        n_z, n_y, n_x = -gz * inv, -gy * inv, -gx * inv
    a = sc.depth_um * j1 / sc.voxel_um
    b = sc.lateral_um * j2 / sc.voxel_um
    off = (bone[z, y, x] - _HALF) + _outer_partial(state, z, y, x, n_z, n_y, n_x)
    cz = f32(z) + off * n_z
    cy = f32(y) + off * n_y
    cx = f32(x) + off * n_x
    e = int(np.ceil(np.maximum(a, b) + _ONE))
    perforated = _perforates(state, cz, cy, cx, n_z, n_y, n_x, a)
    return Cavity(False, cz, cy, cx, n_z, n_y, n_x, a, b, e, e, e, perforated,
                  cortical=bool(region[z, y, x] == _CORT))


def _outer_partial(state: RemodelState, z: int, y: int, x: int, n_z: np.float32, n_y: np.float32,
                   n_x: np.float32) -> np.float32:
    """Bone of the voxel just outside the seed along the normal when it is partial (``vb_outer_partial``).

    The cavity opens at the bone's surface: the seed voxel's own fraction puts it within the
    seed, and a partial voxel above it (bone < ½, the nearest voxel along the outward normal)
    holds bone too, so the opening plane lies further out by that voxel's bone. Without it
    the plane sat up to half a voxel below the true surface, and a cavity on the top of a
    convex trabecula cut its flank deeper at 40 µm than at 20 µm. 0 outside the sample, the
    grid, or when that voxel is bone itself.
    """
    p = _sample_voxel(state, f32(z) + n_z, f32(y) + n_y, f32(x) + n_x)
    if p is None:
        return _ZERO
    b = state.bone[p]
    return b if b < _HALF else _ZERO


def _sample_voxel(state: RemodelState, pz: np.float32, py: np.float32,
                  px: np.float32) -> tuple[int, int, int] | None:
    """The voxel whose centre is nearest the point (voxel units), or None outside the grid or the sample.

    Twin of ``vb_sample_voxel``: the point is rounded half up, in float32 as the kernel does.
    """
    iz, iy, ix = int(np.floor(pz + _HALF)), int(np.floor(py + _HALF)), int(np.floor(px + _HALF))
    nz, ny, nx = state.bone.shape
    if not (0 <= iz < nz and 0 <= iy < ny and 0 <= ix < nx) or state.region[iz, iy, ix] == _OUT:
        return None
    return iz, iy, ix


def _perforates(state: RemodelState, cz: np.float32, cy: np.float32, cx: np.float32, n_z: np.float32,
                n_y: np.float32, n_x: np.float32, a: np.float32) -> bool:
    """March into the bone along −n to the full cavity depth: leaving the bone again perforates.

    The cavity perforates its trabecula (or cortical wall) when it reaches the far surface:
    samples every half voxel and a last one at exactly the depth ``a`` (voxels), so the
    decision is the same at every voxel size. Stopping at the last whole half-step left
    the deepest up to half a voxel unseen (20 µm at 40 µm voxels): coarse grids saw a third
    of the perforations fine ones saw (``vb_perforates``).
    """
    entered = False
    for k in range(1, int(np.ceil(f32(2.0) * a)) + 1):
        s = np.minimum(_HALF * f32(k), a)
        p = _sample_voxel(state, cz - s * n_z, cy - s * n_y, cx - s * n_x)
        if p is None:
            break
        if state.bone[p] >= _HALF:
            entered = True
        elif entered:
            return True
    return False


def make_wall_cavity(state: RemodelState, z: int, y: int, x: int, first: int, j1: np.float32, j2: np.float32,
                     sc: StepScalars) -> Cavity:
    """Cavity of an intracortical BMU on a pore wall (``vb_make_wall_cavity``).

    A tunnelling BMU re-excavating a canal erodes its wall to the erosion depth E.De and
    refills it to the cortical balance, so each cycle widens the canal by the deficit
    (Parfitt 1994; Bjørnerem 2016): a half-spheroid of depth E.De along the wall normal
    taken in the xy plane (canals run along z), lateral semi-axis ``lateral_um`` around the
    canal and ``osteon_half_length_um`` along it. A cavity that reaches another pore or the
    marrow through the wall is a perforation and is not refilled: neighbouring canals
    coalesce and canals near the endosteum open into the marrow (Zebaze et al. 2010).
    """
    bone = state.bone
    fdz, fdy, fdx = _NEIGHBOURS[first if first >= 0 else 0]
    gy = _grad_axis(bone, z, y, x, 1)
    gx = _grad_axis(bone, z, y, x, 2)
    norm2 = gy * gy + gx * gx
    a = sc.depth_um * j1 / sc.voxel_um
    b = sc.lateral_um * j2 / sc.voxel_um
    if norm2 < f32(1e-6):  # no in-plane gradient (the end of a canal): the first pore neighbour, round cavity
        n_z, n_y, n_x = f32(fdz), f32(fdy), f32(fdx)
        bz = b
    else:
        inv = _ONE / np.sqrt(norm2)
        n_z, n_y, n_x = _ZERO, -gy * inv, -gx * inv
        bz = sc.osteon_half_length_um * j2 / sc.voxel_um
    off = bone[z, y, x] - _HALF
    cz = f32(z) + off * n_z
    cy = f32(y) + off * n_y
    cx = f32(x) + off * n_x
    e = int(np.ceil(np.maximum(a, b) + _ONE))
    ez = int(np.ceil(np.maximum(a, bz) + _ONE))
    perforated = _perforates(state, cz, cy, cx, n_z, n_y, n_x, a)
    return Cavity(True, cz, cy, cx, n_z, n_y, n_x, a, b, ez, e, e, perforated, bz, True)


def _clamp01(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, _ZERO), _ONE)


def spheroid_frac(w: np.ndarray, rho2: np.ndarray, a: np.float32, b: np.float32) -> np.ndarray:
    """Share of each voxel inside a trabecular half-spheroid cavity (``vb_spheroid_frac``).

    Semi-axes ``a`` (along the normal) and ``b`` (across), in voxels; ``w`` the depth and
    ``rho2`` the squared lateral distance from the centre. The ramp is one voxel wide across
    the cavity wall, from the wall's signed distance ``(s − 1)/|∇s|``: a ramp in ``s`` scaled
    by min(a, b) is b/a voxels wide at the rim, so on coarse voxels (a ≈ 1 voxel) every BMU
    owned a rim of surface voxels several voxels wide, from which no BMU could start — 30 %
    fewer trabecular activations per µm² at 40 µm than at 20 µm.
    """
    wa = w / a
    rb2 = rho2 / (b * b)
    s = np.sqrt(wa * wa + rb2)
    g = np.sqrt(wa * wa / (a * a) + rb2 / (b * b))
    ok = g > f32(1e-6)
    safe = np.where(ok, g, _ONE)
    return np.where(ok, _clamp01(_HALF - (s - _ONE) * s / safe), _ONE).astype(f32)


def _opening_claim(dz: np.ndarray, dy: np.ndarray, dx: np.ndarray, c: Cavity, over: np.float32,
                   bone: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The opening test of a half-spheroid cavity (hemi-osteonal and pore-wall; ``vb_opening_claim``).

    Returns the depth ``w`` of the offsets ``(dz, dy, dx)`` from the cavity centre below the
    opening (along the inward normal), their squared distance ``rho2`` from the cavity axis,
    whether each voxel (bone fraction ``bone``) is claimed, and its extra flag: below the
    opening only bone is claimed; above it (``w ≤ −½``) marrow (bone < ½) is claimed as an
    overfill voxel (``FLAG_OVERFILL``) within the overfill's reach (``w > −½ − over·a``); a
    voxel of bone ≥ ½ there is another structure's, left to its own BMUs.
    """
    w = -((dz * c.nz + dy * c.ny) + dx * c.nx)
    above = w <= f32(-0.5)
    valid = np.where(above, (over > _ZERO) & (w > f32(-0.5) - over * c.a) & (bone < _HALF), bone > _ZERO)
    extra = np.where(above, np.uint64(FLAG_OVERFILL), np.uint64(0))
    d2 = (dz * dz + dy * dy) + dx * dx
    rho2 = np.maximum(d2 - w * w, _ZERO)
    return w, rho2, valid, extra


def claim_box(state: RemodelState, si: int, c: Cavity, margin: int = 0) -> tuple[np.ndarray, ...]:
    """The voxels a cavity seeded at ``si`` may claim: its box (``ez, ey, ex`` around the seed,
    widened by ``margin``), less voxels outside the periosteum or owned by a BMU. Returns
    their ``(z, y, x)`` indices and flat indices."""
    bone, region = state.bone, state.region
    nz, ny, nx = bone.shape
    x0, y0, z0 = si % nx, (si // nx) % ny, si // (nx * ny)
    ycen = int(c.cy) if c.osteonal else y0
    xcen = int(c.cx) if c.osteonal else x0
    ez, ey, ex = c.ez + margin, c.ey + margin, c.ex + margin
    zs = np.arange(max(z0 - ez, 0), min(z0 + ez, nz - 1) + 1)
    ys = np.arange(max(ycen - ey, 0), min(ycen + ey, ny - 1) + 1)
    xs = np.arange(max(xcen - ex, 0), min(xcen + ex, nx - 1) + 1)
    qz = np.repeat(zs, ys.size * xs.size)  # the box in C order (z slowest)
    qy = np.tile(np.repeat(ys, xs.size), zs.size)
    qx = np.tile(xs, zs.size * ys.size)
    flat = (qz * ny + qy) * nx + qx
    keep = (region.ravel()[flat] != _OUT) & (state.bmu_day.ravel()[flat] < 0)
    return qz[keep], qy[keep], qx[keep], flat[keep]


def pack_claims(si: int, c: Cavity, flat: np.ndarray, valid: np.ndarray, frac: np.ndarray, u: np.ndarray,
                depth: np.ndarray, extra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The claims of the ``valid`` voxels as 64-bit codes (seed, flags, cavity share ``frac``,
    column height ``u``, column depth): flat indices and codes (``vb_pack_claim``). A voxel
    whose share rounds to 0 claims nothing, nor does one below the opening whose fill ramp is
    flat as the update reads it (its rounded column height so far above its depth that
    φ(1) = φ(0)): it would be dug and never refilled, whatever the balance."""
    fq = (frac * f32(CLAIM_FRAC_STEPS) + _HALF).astype(np.uint64)
    uq = (u * f32(CLAIM_U_STEPS) + _HALF).astype(np.uint64)
    kq = (np.minimum(depth, f32(MAX_COLUMN_DEPTH)) * f32(1.0 / MIN_COLUMN_DEPTH) + _HALF).astype(np.uint64)
    uu = uq.astype(f32) * f32(1.0 / CLAIM_U_STEPS)  # as the update decodes them (cpu_loops)
    kk = kq.astype(f32) * f32(MIN_COLUMN_DEPTH)
    ramp = _clamp01((_ONE - uu) * kk + _HALF) - _clamp01((_ZERO - uu) * kk + _HALF)  # φ(1) − φ(0)
    valid = valid & (fq > 0) & ((extra != 0) | (ramp >= f32(MIN_FILL_RAMP)))
    flags = np.uint64((FLAG_PERFORATED if c.perforated else 0) | (FLAG_OSTEONAL if c.osteonal or c.cortical else 0)) | extra
    code = ((np.uint64(si) << np.uint64(CLAIM_SEED_SHIFT)) | (flags << np.uint64(CLAIM_FLAGS_SHIFT))
            | (fq << np.uint64(CLAIM_FRAC_SHIFT)) | (uq << np.uint64(CLAIM_U_SHIFT)) | kq)
    return flat[valid].astype(np.int64), code[valid]


def claim_codes(state: RemodelState, si: int, c: Cavity, overfill: np.float32 = _ZERO) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and 64-bit claim codes of the voxels cavity ``c`` claims (``vb_claim`` body)."""
    qz, qy, qx, flat = claim_box(state, si, c)
    b = state.bone.ravel()[flat]
    dz = qz.astype(f32) - c.cz
    dy = qy.astype(f32) - c.cy
    dx = qx.astype(f32) - c.cx
    w, rho2, valid, extra = _opening_claim(dz, dy, dx, c, f32(overfill), b)
    # u saturates one cavity depth above the old surface, or at the overfill's reach (``vb_u_max``)
    u_max = np.maximum(f32(2.0), _ONE + f32(overfill))
    # above the opening the cavity is mirrored outwards, stretched along the normal to the
    # overfill's reach when that is beyond one cavity depth (``vb_mirror_depth``)
    a_f = np.where(extra != 0, c.a * np.maximum(_ONE, f32(overfill)), c.a).astype(f32)
    if c.osteonal:
        # pore-wall cavity: as a hemi-osteonal one, elongated along z (``vb_claim_code_wall``)
        dz2 = dz * dz
        wa = w / a_f
        rb2 = np.maximum(rho2 - dz2, _ZERO) / (c.b * c.b) + dz2 / (c.bz * c.bz)
        s = np.sqrt(wa * wa + rb2)
        frac = _clamp01((_ONE - s) * np.minimum(a_f, c.b) + _HALF)
    else:
        rb2 = rho2 / (c.b * c.b)
        frac = spheroid_frac(w, rho2, a_f, c.b)
    wf = c.a * np.sqrt(np.maximum(_ONE - rb2, _ZERO))  # floor depth below this column
    depth = np.maximum(wf, f32(MIN_COLUMN_DEPTH))
    u = np.minimum(np.maximum((wf - w) / depth, _ZERO), u_max)
    return pack_claims(si, c, flat, valid, frac, u, depth, extra)


def claim(state: RemodelState, seeds: np.ndarray, seed: int, step: int, sc: StepScalars) -> tuple[np.ndarray, np.ndarray]:
    """Resolve the claims of all seeds: per voxel the smallest code (lowest seed index) wins.

    Every cavity reserves the marrow above its opening up to the overfill's reach
    (``sc.overfill_reach``), whatever the balance when it is claimed: the formation level
    (:func:`update`, with the balance at formation and, with mechanics on, the factor at the
    BMU's seed) decides how much of it fills, so a BMU claimed before the balance rose
    builds what the balance asks.
    """
    counters = state.counters
    all_idx, all_code = [], []
    j1, j2 = cavity_jitter(seed, step, seeds)
    for k, si in enumerate(seeds.tolist()):
        c = make_cavity(state, si, seed, step, sc, (j1[k], j2[k]))
        counters[1 if c.osteonal else 0] += np.uint64(1)
        if c.perforated:
            counters[2] += np.uint64(1)
        idx, code = claim_codes(state, si, c, sc.overfill_reach)
        all_idx.append(idx)
        all_code.append(code)
    if not all_idx:
        return np.empty(0, np.int64), np.empty(0, np.uint64)
    idx = np.concatenate(all_idx)
    code = np.concatenate(all_code)
    order = np.argsort(code, kind="stable")
    idx, code = idx[order], code[order]
    _, first = np.unique(idx, return_index=True)
    return idx[first], code[first]


def update(state: RemodelState, claimed: np.ndarray, codes: np.ndarray, sc: StepScalars,
           refill_mod: np.ndarray | None = None) -> None:
    """Take new claims, excavate, refill, release and mineralise (``vb_update``).

    ``refill_mod``: optional per-voxel float32 factor on the refill level (the mechanical
    modulation, ``vb_mech_scale``), read at each BMU's seed (``bmu_seed``): all the voxels of
    one BMU refill at one factor; ``None`` leaves the refill as it is.
    """
    bone, mineral, osteoid = state.bone.ravel(), state.mineral.ravel(), state.osteoid.ravel()
    day_a, k_a, u_a = state.bmu_day.ravel(), state.bmu_k.ravel(), state.bmu_u.ravel()
    flags_a, amount_a, seed_a = state.bmu_flags.ravel(), state.bmu_amount.ravel(), state.bmu_seed.ravel()
    if claimed.size:
        day_a[claimed] = 0
        seed_a[claimed] = (codes >> np.uint64(CLAIM_SEED_SHIFT)).astype(np.uint32)
        flags_a[claimed] = ((codes >> np.uint64(CLAIM_FLAGS_SHIFT)) & np.uint64(CLAIM_FLAGS_MASK)).astype(np.uint8)
        amount_a[claimed] = claim_share_steps(codes).astype(f32) * f32(1.0 / CLAIM_FRAC_STEPS)
        u_a[claimed] = ((codes >> np.uint64(CLAIM_U_SHIFT)) & np.uint64(CLAIM_U_MASK)).astype(np.uint16)
        k_a[claimed] = (codes & np.uint64(CLAIM_K_MASK)).astype(np.uint8)
        # never dug: the whole empty part is formed into; the fill ramp alone (u, k) sets how
        # much of it the level reaches, so the voxel's share of the cavity is not counted twice
        over_new = claimed[(flags_a[claimed] & np.uint8(FLAG_OVERFILL)) != 0]
        flags_a[over_new] |= np.uint8(FLAG_RESORBED)
        amount_a[over_new] = _ONE - bone[over_new]

    from .cpu_loops import update_voxels  # noqa: PLC0415 — Numba loads on first use, not with `voxelbone.remodel`

    mod = _NO_MOD if refill_mod is None else np.ascontiguousarray(refill_mod, dtype=f32).ravel()
    update_voxels(bone, mineral, osteoid, day_a, k_a, u_a, flags_a, amount_a, seed_a, mod, int(sc.dt),
                  f32(sc.t_resorb), f32(sc.t_form_start), f32(sc.t_form), f32(sc.t_end), f32(sc.refill_trab),
                  f32(sc.refill_cort), f32(sc.refill_perforated), f32(sc.refill_trab_prev),
                  f32(sc.refill_cort_prev), f32(sc.m_mature), f32(sc.e_primary), f32(sc.e_secondary),
                  f32(sc.c_osteoid), TINY)


def _from_neighbour(a: np.ndarray, d: tuple[int, int, int]) -> np.ndarray:
    """``out[i] = a[i + d]`` (zero where ``i + d`` is outside the grid)."""
    out = np.zeros_like(a)
    dst = tuple(slice(max(-k, 0), n - max(k, 0)) for k, n in zip(d, a.shape))
    src = tuple(slice(max(k, 0), n - max(-k, 0)) for k, n in zip(d, a.shape))
    out[dst] = a[src]
    return out


def model_surface(bone: np.ndarray, region: np.ndarray, bmu_day: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where modelling-based formation works (``vb_model_marrow``/``vb_model_count``).

    Returns ``(marrow, count, surface)``: the free marrow the new bone goes into, each
    voxel's number of free marrow face-neighbours, and the quiescent surface voxels (bone
    ≥ 0.5, not owned by a BMU, ``count > 0``). Free marrow is a voxel of bone < 0.5 not owned
    by a BMU, of the trabecular compartment or a cortical voxel with a trabecular
    face-neighbour: a partial-volume voxel on the endocortical boundary (a coarse grid labels
    the voxels the boundary cuts cortical, though they are mostly marrow) is marrow, not an
    intracortical canal, so the endocortical surface forms at every voxel size.
    """
    free = (region != _OUT) & (bmu_day < 0)
    trab = region == _TRAB
    by_trab = np.zeros(bone.shape, dtype=bool)
    _shift_or(trab, by_trab)
    marrow = free & (bone < _HALF) & (trab | ((region == _CORT) & by_trab))
    count = np.zeros(bone.shape, dtype=np.int32)
    for d in _NEIGHBOURS:
        count += _from_neighbour(marrow, d)
    surface = free & (bone >= _HALF) & (count > 0)
    return marrow, count, surface


def model(state: RemodelState, sc: StepScalars) -> None:
    """Modelling-based formation on quiescent surfaces (``vb_model``), after :func:`update`.

    Every quiescent surface voxel (:func:`model_surface`) forms ``sc.model_frac`` of a
    voxel's volume: first into its own empty part (the surface runs through it), the rest in
    equal shares into its free marrow face-neighbours, each of which gathers its shares in the
    fixed neighbour order. New bone is osteoid (capped at a full voxel). No random draw: the
    rate is per µm² of surface (:func:`~voxelbone.remodel.state.step_scalars`, with the
    surface density of these voxels). Only called when ``sc.model_frac > 0``.
    """
    bone = state.bone
    marrow, count, surface = model_surface(bone, state.region, state.bmu_day)
    own = np.where(surface, np.minimum(sc.model_frac, _ONE - bone), _ZERO).astype(f32)
    rest = np.where(surface, (sc.model_frac - own) / np.maximum(count, 1).astype(f32), _ZERO).astype(f32)
    gathered = np.zeros(bone.shape, dtype=f32)
    for d in _NEIGHBOURS:
        gathered = gathered + _from_neighbour(rest, d)
    acc = np.where(marrow, gathered, own)
    idx = np.flatnonzero((acc > _ZERO).ravel())
    if idx.size == 0:
        return
    b_flat, o_flat = bone.reshape(-1), state.osteoid.reshape(-1)
    b = b_flat[idx]
    nb = np.minimum(b + acc.reshape(-1)[idx], _ONE)
    o_flat[idx] = o_flat[idx] + (nb - b)
    b_flat[idx] = nb
