"""Shared fixtures: array modules (NumPy always, CuPy when a GPU answers).

The kernels run on the CPU through the grid host build (tests/hostkernels.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
# Under pytest-xdist every core already runs a worker process: Numba's threads in each would
# only spin waiting on each other (8 % of the suite's time on 2 cores). Set on the thread the
# tests run on, not by NUMBA_NUM_THREADS: porespy sets that variable to the core count, which
# Numba refuses once its pool has started with another.
ONE_NUMBA_THREAD = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1

import numba
import numpy as np
import pytest

if ONE_NUMBA_THREAD:
    numba.set_num_threads(1)

from voxelbone.backend import cupy_available

GPU = cupy_available()


def pytest_collection_modifyitems(config, items):
    if GPU:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device and CuPy")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test: NumPy, and CuPy on a GPU machine."""
    if request.param == "numpy":
        return np
    import cupy

    return cupy
