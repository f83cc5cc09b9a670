"""A prototype of another overfill rule (a diagnostic, not the model): the bone a positive balance
builds rises from the bone's actual surface, not from the cavity's tangent plane.

The model (``cpu.claim_codes``, ``vb_claim``) builds a BMU's ρ − 1 cavity depths inside its
cavity mirrored above the tangent plane at its opening. Under a partial outer voxel layer or
on the flank of an earlier BMU's mound that plane is not the surface, and the build misses
(docs/model.md, "Where a positive balance still builds less than it asks"). Here, for a
trabecular cavity, a voxel that the cavity does not dig (above the plane, or marrow below
it) inside the cavity's footprint is an overfill voxel when its height above the surface
below it along the normal — found by stepping down one voxel at a time to the first voxel of
bone ≥ ½, the surface placed inside that voxel and the partial voxel above it by their bone
fractions — is below the column's reach ``over·wf`` (``over``: the overfill's reach the
model's claim passes, ``RemodelParams.overfill_reach_depths``); its
column height is ``1 + height/depth``, so the fill front rises from the surface itself. The
cavity below the plane is dug and refilled as in the model.

``with patched(): ...`` swaps it into the NumPy engine of this process only (the GPU kernel
is not touched). Used by ``surface_build_study.py`` and ``bv_tv_binarisation_study.py``
(``--variant overfill_on_surface``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from voxelbone.remodel import cpu
from voxelbone.remodel.state import FLAG_OVERFILL, MIN_COLUMN_DEPTH

f32 = np.float32
_HALF, _ONE, _ZERO = f32(0.5), f32(1.0), f32(0.0)


def height_above_surface(bone: np.ndarray, q: tuple[np.ndarray, np.ndarray, np.ndarray], normal: tuple[float, float, float],
                         max_steps: int) -> np.ndarray:
    """Height (voxels) of each voxel centre ``q = (z, y, x)`` above the bone surface below it along
    ``-normal``; ``inf`` where no voxel of bone ≥ ½ lies within ``max_steps`` steps."""
    shape = np.array(bone.shape)
    h = np.full(q[0].shape, np.inf, np.float32)
    above = np.zeros(q[0].shape, np.float32)  # partial bone of the step above the one looked at
    todo = np.ones(q[0].shape, bool)
    for k in range(max_steps + 1):
        p = [np.floor(qa.astype(f32) - f32(k) * f32(na) + _HALF).astype(np.int64) for qa, na in zip(q, normal)]
        inside = np.all([(pa >= 0) & (pa < n) for pa, n in zip(p, shape)], axis=0)
        b = np.zeros(q[0].shape, np.float32)
        b[inside] = bone[p[0][inside], p[1][inside], p[2][inside]]
        hit = todo & inside & (b >= _HALF)
        h[hit] = f32(k) - (b[hit] - _HALF) - above[hit]
        todo &= ~hit
        above = np.where(b < _HALF, b, _ZERO)
    return h


def claim_codes_on_surface(state, si: int, c: cpu.Cavity, overfill: np.float32 = _ZERO):
    """``cpu.claim_codes`` with the overfill rising from the actual surface (module docstring)."""
    over = f32(overfill)
    if c.osteonal or over <= 0:
        return _MODEL(state, si, c, overfill)
    qz, qy, qx, flat = cpu.claim_box(state, si, c, margin=int(np.ceil(over * c.a)) + 1)
    b = state.bone.ravel()[flat]
    w, rho2, _, _ = cpu._opening_claim(qz.astype(f32) - c.cz, qy.astype(f32) - c.cy, qx.astype(f32) - c.cx, c, over, b)
    rb2 = rho2 / (c.b * c.b)
    wf = c.a * np.sqrt(np.maximum(_ONE - rb2, _ZERO))
    depth = np.maximum(wf, f32(MIN_COLUMN_DEPTH))
    u_max = np.maximum(f32(2.0), _ONE + over)
    frac_cavity = cpu.spheroid_frac(w, rho2, c.a, c.b)
    dug = (w > f32(-0.5)) & (b > _ZERO) & (frac_cavity * f32(255.0) + _HALF >= _ONE)
    h = height_above_surface(state.bone, (qz, qy, qx), (c.nz, c.ny, c.nx), int(np.ceil(over * c.a + c.a)) + 2)
    over_vox = ~dug & (rb2 < _ONE) & (b < _HALF) & np.isfinite(h) & (h - _HALF < over * wf)
    frac = np.where(over_vox, _ONE, frac_cavity)
    u = np.where(over_vox, np.minimum(_ONE + np.maximum(h, _ZERO) / depth, u_max),
                 np.minimum(np.maximum((wf - w) / depth, _ZERO), u_max))
    extra = np.where(over_vox, np.uint64(FLAG_OVERFILL), np.uint64(0))
    return cpu.pack_claims(si, c, flat, dug | over_vox, frac, u, depth, extra)


_MODEL = cpu.claim_codes


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """Run the NumPy engine with :func:`claim_codes_on_surface` inside the block."""
    cpu.claim_codes = claim_codes_on_surface
    try:
        yield
    finally:
        cpu.claim_codes = _MODEL


VARIANTS = {"model": contextlib.nullcontext, "overfill_on_surface": patched}
