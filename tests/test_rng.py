"""The counter-based generator: NumPy twin equals the kernel's bits; draws are well spread."""

from __future__ import annotations

import numpy as np
import pytest

from hostkernels import host_uniform
from voxelbone.rng import Stream, hash64, uniform


@pytest.mark.parametrize("seed,step,stream", [(0, 0, 1), (12345, 77, 2), (2**63 + 5, 2**40, 255)])
def test_numpy_twin_matches_kernel_bit_for_bit(seed, step, stream):
    n = 10_000
    ref = host_uniform(seed, step, stream, 1000, n)
    ours = uniform(seed, step, stream, np.arange(1000, 1000 + n, dtype=np.uint64))
    np.testing.assert_array_equal(ours, ref)


def test_uniform_statistics():
    u = uniform(7, 3, Stream.ACTIVATION, np.arange(200_000))
    assert u.dtype == np.float32
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005
    hist, _ = np.histogram(u, bins=20, range=(0, 1))
    assert hist.min() > 0.9 * hist.mean()


def test_keys_give_independent_draws():
    idx = np.arange(50_000)
    a = uniform(1, 0, 1, idx)
    for other in (uniform(2, 0, 1, idx), uniform(1, 1, 1, idx), uniform(1, 0, 2, idx)):
        assert abs(np.corrcoef(a, other)[0, 1]) < 0.02
        assert np.mean(a == other) < 0.001


def test_draw_depends_only_on_its_key():
    full = hash64(9, 4, 1, np.arange(1000))
    part = hash64(9, 4, 1, np.arange(500, 600))
    np.testing.assert_array_equal(full[500:600], part)


@pytest.mark.gpu
def test_cupy_matches_numpy():
    import cupy

    idx = np.arange(4096)
    np.testing.assert_array_equal(uniform(5, 6, 1, cupy.asarray(idx)).get(), uniform(5, 6, 1, idx))
