"""Counter-based random numbers shared bit for bit by the CPU and GPU paths.

A draw is a keyed hash of ``(seed, step, stream, index)``: no generator state, so a
voxel's draw at a step does not depend on the order voxels are visited or on how
many other draws were made. The CUDA twin is ``vb_hash`` / ``vb_uniform`` in
``kernels/vb_common.cuh``; the mixing function is SplitMix64's finaliser
(Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators").

Works on NumPy and CuPy arrays alike (the array module follows ``index``).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np

from .backend import array_module

__all__ = ["Stream", "hash64", "uniform"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MI = np.uint64(0xD1B54A32D192ED03)


class Stream(IntEnum):
    """Independent random streams (the low 8 bits of the step key)."""

    ACTIVATION = 1
    CAVITY_SIZE = 2
    CAVITY_SHAPE = 3
    PHANTOM = 10


def _mix64(z: Any) -> Any:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash64(seed: int, step: int, stream: int, index: Any) -> Any:
    """64 random bits per element of ``index`` (uint64 array, same module as ``index``).

    Parameters
    ----------
    seed : int
        Run seed (0 ≤ seed < 2**64).
    step : int
        Time-step counter (0 ≤ step < 2**56).
    stream : int
        Stream id, 0–255 (see :class:`Stream`).
    index : array_like of int
        Voxel or item indices.
    """
    xp = array_module(index)
    with np.errstate(over="ignore"):
        idx = xp.asarray(index).astype(xp.uint64, copy=False)
        k = _mix64(np.array(seed, dtype=np.uint64) + _GOLDEN)
        k = _mix64(k ^ ((np.uint64(step) << np.uint64(8)) | np.uint64(stream & 0xFF)))
        return _mix64(xp.asarray(k) ^ (idx * _MI))


def uniform(seed: int, step: int, stream: int, index: Any) -> Any:
    """Uniform float32 in [0, 1) with 24 random bits, identical to ``vb_uniform``."""
    xp = array_module(index)
    h = hash64(seed, step, stream, index)
    return (h >> np.uint64(40)).astype(xp.float32) * xp.float32(1.0 / 16777216.0)
