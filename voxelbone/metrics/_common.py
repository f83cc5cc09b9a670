"""Tables and validators shared by the metric modules and their CUDA launches.

One definition each, imported by the NumPy paths (``connectivity``, ``thickness``) and by
``gpu`` (which uploads the same tables), so no metric module imports another's private
names and ``gpu`` needs none of them.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from ..backend import array_module

__all__ = ["ball_containment_table", "check_mask", "euler_lut"]


@functools.cache
def euler_lut() -> np.ndarray:
    """χ contribution ×8 of each 2×2×2 configuration (bit ``4z + 2y + x`` set = voxel set)."""
    lut = np.zeros(256, dtype=np.int64)
    for cfg in range(256):
        vox = {(z, y, x): bool(cfg >> (4 * z + 2 * y + x) & 1) for z, y, x in itertools.product((0, 1), repeat=3)}
        v = int(any(vox.values()))
        # half-edges from the centre along ±axis: adjacent to the 4 voxels on that side
        e = 0
        for axis in range(3):
            for side in (0, 1):
                e += int(any(val for key, val in vox.items() if key[axis] == side))
        # quarter-faces: in the plane normal to `axis`, quadrant (a, b) of the other two axes:
        # adjacent to the 2 voxels with those coordinates
        f = 0
        for axis in range(3):
            others = [a for a in range(3) if a != axis]
            for a_side, b_side in itertools.product((0, 1), repeat=2):
                f += int(any(val for key, val in vox.items() if key[others[0]] == a_side and key[others[1]] == b_side))
        c = sum(vox.values())
        lut[cfg] = 8 * v - 4 * e + 2 * f - c
    return lut


def check_mask(mask: Any, ndim: int = 3) -> Any:
    """``mask`` as a boolean array of its own module, refusing wrong dimensions, NaN and non-binary values."""
    xp = array_module(mask)
    m = xp.asarray(mask)
    if m.ndim != ndim:
        raise ValueError(f"mask must be {ndim}-D, got shape {m.shape}")
    if m.dtype != xp.bool_:
        if m.dtype.kind == "f" and bool(xp.isnan(m).any()):
            raise ValueError("mask contains NaN")
        vals = xp.unique(m)
        if vals.size > 2 or not bool(xp.all((vals == 0) | (vals == 1))):
            raise ValueError("mask must be binary (bool or 0/1); threshold fractional images first")
        m = m.astype(bool)
    return m


def ball_containment_table(k_max: int) -> np.ndarray:
    """Smallest squared radius of a neighbour's ball that holds a discrete ball, per offset class.

    ``table[c - 1, k]`` is ``max{|p - d|² : p ∈ Z³, |p|² ≤ k}`` for a neighbour offset ``d`` with
    ``|d|² = c`` (1: face, 2: edge, 3: corner); by the ball's symmetry it depends only on the
    class. A centre of squared radius ``k`` whose neighbour at offset class ``c`` has squared
    distance ``≥ table[c - 1, k]`` lies, as a set of voxels, inside that neighbour's larger
    ball, so dropping it leaves the thickness map unchanged (the test of Dougherty's Distance
    Ridge, on discrete balls).
    """
    r = int(np.ceil(np.sqrt(max(k_max, 0)))) + 1
    g = np.arange(-r, 1, dtype=np.int64)  # one octant (p ≤ 0) holds the maximum for d ≥ 0
    pz, py, px = np.meshgrid(g, g, g, indexing="ij", sparse=True)
    s = (pz * pz + py * py + px * px).ravel()
    order = np.argsort(s, kind="stable")
    s = s[order]
    last = np.searchsorted(s, np.arange(k_max + 1), side="right") - 1
    table = np.empty((3, k_max + 1), dtype=np.int32)
    for c, (dz, dy, dx) in enumerate(((1, 0, 0), (1, 1, 0), (1, 1, 1))):
        far = ((pz - dz) ** 2 + (py - dy) ** 2 + (px - dx) ** 2).ravel()[order]
        table[c] = np.maximum.accumulate(far)[last]
    return table
