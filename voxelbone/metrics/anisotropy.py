"""Degree of anisotropy from the mean intercept length (Harrigan & Mann 1984; Whitehouse 1974).

For each of a set of directions, test lines through the VOI count the bone/marrow
intercepts; ``MIL(d) = line length / intercepts`` (the mean distance between crossings).
The fabric tensor ``M`` is fitted by least squares to ``1/MIL(d)² = dᵀ M d``; its
eigenvalues λ give the MIL ellipsoid radii ``r = 1/√λ``.

Two conventions are reported:

* BoneJ: ``DA = 1 − λ_min/λ_max`` (0 isotropic, → 1 anisotropic);
* Scanco and most papers: ``DA = r_max/r_min = √(λ_max/λ_min)`` (1 isotropic).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import asnumpy

__all__ = ["Anisotropy", "mean_intercept_length"]


@dataclass(frozen=True)
class Anisotropy:
    """MIL fabric: directions (unit vectors, z-y-x), MIL per direction (voxels), tensor and DA."""

    directions: np.ndarray
    mil_voxels: np.ndarray
    fabric: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    da_bonej: float
    da_ratio: float


def _directions(max_step: int = 2) -> list[tuple[int, int, int]]:
    dirs = set()
    for v in itertools.product(range(-max_step, max_step + 1), repeat=3):
        if v == (0, 0, 0) or np.gcd.reduce(np.abs(v)) != 1:
            continue
        # keep one of ±v
        if v < tuple(-c for c in v):
            continue
        dirs.add(v)
    return sorted(dirs)


def mean_intercept_length(mask: Any, within: Any | None = None, max_step: int = 2) -> Anisotropy:
    """MIL fabric tensor and degree of anisotropy of a binary structure.

    Parameters
    ----------
    mask : array of bool
        Bone.
    within : array of bool, optional
        VOI: only voxel pairs with both voxels inside count (line length and intercepts).
    max_step : int
        Directions are the integer vectors with components up to this (49 for 2).

    Returns
    -------
    Anisotropy
    """
    m = asnumpy(mask).astype(bool)
    if m.ndim != 3:
        raise ValueError(f"mask must be 3-D, got shape {m.shape}")
    w = np.ones(m.shape, bool) if within is None else asnumpy(within).astype(bool)
    dirs = _directions(max_step)
    units, inv_mil2 = [], []
    for d in dirs:
        sl_a = tuple(slice(max(0, -c), m.shape[i] - max(0, c)) for i, c in enumerate(d))
        sl_b = tuple(slice(max(0, c), m.shape[i] - max(0, -c)) for i, c in enumerate(d))
        both = w[sl_a] & w[sl_b]
        pairs = int(both.sum())
        if pairs == 0:
            continue
        crossings = int((both & (m[sl_a] & ~m[sl_b])).sum())  # bone → marrow along d
        length = pairs * float(np.linalg.norm(d))
        if crossings == 0:
            continue
        mil = length / crossings
        units.append(np.asarray(d, float) / np.linalg.norm(d))
        inv_mil2.append(1.0 / mil**2)
    if len(units) < 6:
        raise ValueError("too few intercepts to fit a fabric tensor (structure empty or VOI too small)")
    U = np.array(units)
    A = np.column_stack([U[:, 0] ** 2, U[:, 1] ** 2, U[:, 2] ** 2, 2 * U[:, 0] * U[:, 1], 2 * U[:, 0] * U[:, 2], 2 * U[:, 1] * U[:, 2]])
    c, *_ = np.linalg.lstsq(A, np.array(inv_mil2), rcond=None)
    M = np.array([[c[0], c[3], c[4]], [c[3], c[1], c[5]], [c[4], c[5], c[2]]])
    lam, vec = np.linalg.eigh(M)
    lam = np.maximum(lam, 1e-12)
    return Anisotropy(U, 1.0 / np.sqrt(np.array(inv_mil2)), M, lam, vec,
                      float(1.0 - lam[0] / lam[-1]), float(np.sqrt(lam[-1] / lam[0])))
