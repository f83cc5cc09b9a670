"""Numba loops of the CPU twin: per-voxel passes that NumPy would run as dozens of array temporaries.

Each loop is the body of its CUDA kernel (``kernels/remodel.cu``) for one voxel, in the
kernel's order of operations and in float32 throughout (every constant is a float32; Numba
does not fuse multiply-add without ``fastmath``), so the twins stay equal bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np

from .state import (
    CLAIM_U_STEPS,
    FLAG_OSTEONAL,
    FLAG_OVERFILL,
    FLAG_PERFORATED,
    FLAG_RESORBED,
    MIN_COLUMN_DEPTH,
    MIN_FILL_RAMP,
)

f32 = np.float32
_ZERO, _HALF, _ONE = f32(0.0), f32(0.5), f32(1.0)
_U_SCALE = f32(1.0 / CLAIM_U_STEPS)
_K_SCALE = f32(MIN_COLUMN_DEPTH)  # the depth field's step
_DEN_MIN = f32(MIN_FILL_RAMP)


@numba.njit(inline="always")
def _flush(x, tiny):
    return _ZERO if (x < tiny and x > -tiny) else x


@numba.njit(inline="always")
def _clamp01(x):
    return min(max(x, _ZERO), _ONE)


@numba.njit(inline="always")
def _phi(h, u, k):
    return _clamp01((h - u) * k + _HALF)


@numba.njit(inline="always")
def _fill(h, u, k):
    p0 = _phi(_ZERO, u, k)
    den = _phi(_ONE, u, k) - p0
    if den < _DEN_MIN:
        return _ZERO
    return (_phi(h, u, k) - p0) / den


@numba.njit(inline="always")
def _refill(osteonal, perforated, trab, cort, perforated_refill):
    r_perf = cort if (osteonal and cort >= _ONE) else perforated_refill
    if perforated:
        return r_perf
    return cort if osteonal else trab


@numba.njit(inline="always")
def _level(day, refill, t_form_start, t_form):
    return refill * _clamp01((day - t_form_start) / t_form)


@numba.njit(cache=True, nogil=True)
def update_voxels(bone, mineral, osteoid, bmu_day, bmu_k, bmu_u, bmu_flags, bmu_amount, bmu_seed,  # noqa: PLR0913
                  refill_mod, dt, t_resorb, t_form_start, t_form, t_end, refill_trab, refill_cort,
                  refill_perforated, refill_trab_prev, refill_cort_prev, m_mature, e_primary, e_secondary,
                  c_osteoid, tiny):
    """``vb_update`` after its claims are taken: excavate, refill, release and mineralise every voxel.

    All arrays are flat views of the state; ``refill_mod`` is a per-voxel float32 factor read
    at each voxel's BMU seed, or an empty array for none. Scalars are float32 (``dt`` an int);
    magnitudes below ``tiny`` (``cpu.TINY``, ``VB_TINY``) become exactly 0 (``vb_flush``).
    """
    has_mod = refill_mod.size > 0
    one_minus_es = _ONE - e_secondary
    form_end = t_form_start + t_form
    for i in range(bone.size):
        b = bone[i]
        m = mineral[i]
        o = osteoid[i]
        day = np.int32(bmu_day[i])
        if day >= 0:
            flags = np.uint32(bmu_flags[i])
            amount = bmu_amount[i]
            d0 = f32(day)
            d1 = f32(day + dt)
            u = f32(bmu_u[i]) * _U_SCALE
            if (flags & FLAG_RESORBED) == 0:
                # each column is eroded from its opening (u = 1) down to its floor (u = 0)
                t_start = max(_ONE - u, _ZERO) * t_resorb
                if d1 >= t_start:
                    frac = amount
                    removed = b * frac
                    b = _flush(b - removed, tiny)
                    m = _flush(m - m * frac, tiny)
                    o = _flush(o - o * frac, tiny)
                    amount = removed
                    flags = flags | FLAG_RESORBED
            if (flags & FLAG_RESORBED) != 0:
                osteonal = (flags & FLAG_OSTEONAL) != 0
                perforated = (flags & FLAG_PERFORATED) != 0
                r = _refill(osteonal, perforated, refill_trab, refill_cort, refill_perforated)
                r_prev = _refill(osteonal, perforated, refill_trab_prev, refill_cort_prev, refill_perforated)
                if has_mod:
                    f = refill_mod[bmu_seed[i]]
                    r = r * f
                    r_prev = r_prev * f
                k = f32(bmu_k[i]) * _K_SCALE
                # the level at the start of the step stands on the previous step's balance
                h0 = _level(d0, r_prev, t_form_start, t_form)
                h1 = _level(d1, r, t_form_start, t_form)
                if (flags & FLAG_OVERFILL) != 0:
                    # only what rises above the old surface (level 1), filling the empty voxel
                    p1 = _phi(_ONE, u, k)
                    den = _ONE - p1
                    if den < _DEN_MIN:
                        f0 = _ZERO
                        f1 = _ZERO
                    else:
                        f0 = max(_phi(h0, u, k) - p1, _ZERO) / den
                        f1 = max(_phi(h1, u, k) - p1, _ZERO) / den
                else:
                    f0 = _fill(h0, u, k)
                    f1 = _fill(h1, u, k)
                # a column whose formation ended before the step forms no more, whatever the balance does
                if d0 < form_end and f1 > f0:
                    nb = min(b + amount * (f1 - f0), _ONE)
                    o = o + (nb - b)  # new bone is laid down as osteoid
                    b = nb
            if d1 >= t_end:
                bmu_day[i] = -1
                bmu_flags[i] = 0
                bmu_amount[i] = _ZERO
            else:
                bmu_day[i] = day + dt
                bmu_flags[i] = flags
                bmu_amount[i] = amount
        # mineralisation, integrated exactly over the step (see MineralisationLaw)
        if o > _ZERO or m < m_mature * b:
            m = m * e_secondary + (m_mature * b) * one_minus_es + c_osteoid * o
            m = _flush(min(max(m, _ZERO), b), tiny)
            o = _flush(o * e_primary, tiny)
        bone[i] = b
        mineral[i] = m
        osteoid[i] = o
