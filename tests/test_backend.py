"""Backend choice: NumPy everywhere, CuPy only where it can really run, clear errors otherwise."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from voxelbone.backend import BackendError, array_module, asnumpy, cupy_available, get_backend


def test_numpy_backend_always_available():
    b = get_backend("numpy")
    assert b.name == "numpy" and b.xp is np and not b.is_gpu
    assert b.details["cpu_count"] >= 1


def test_unknown_backend_name_is_rejected():
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        get_backend("cuda")


def test_env_var_is_read(monkeypatch):
    monkeypatch.setenv("VOXELBONE_BACKEND", "numpy")
    assert get_backend().name == "numpy"
    monkeypatch.setenv("VOXELBONE_BACKEND", "tpu")
    with pytest.raises(ValueError, match="VOXELBONE_BACKEND"):
        get_backend()


@pytest.mark.skipif(cupy_available(), reason="this machine has a working GPU")
def test_forced_cupy_without_gpu_says_why():
    with pytest.raises(BackendError) as info:
        get_backend("cupy")
    msg = str(info.value)
    assert any(word in msg for word in ("CuPy", "driver", "device", "NVRTC"))
    assert get_backend("auto").name == "numpy"


@pytest.mark.skipif(cupy_available(), reason="this machine has a working GPU")
def test_cli_forced_cupy_fails_cleanly():
    proc = subprocess.run(
        [sys.executable, "-m", "voxelbone", "run", "--backend", "cupy", "--size", "48", "--years", "0.01"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "cupy" in proc.stderr and "Traceback" not in proc.stderr
    assert "warning" not in proc.stderr, proc.stderr  # said before the sample-size warnings


def test_array_module_follows_input():
    a = np.zeros(3)
    assert array_module(a) is np
    assert asnumpy(a) is a or np.shares_memory(asnumpy(a), a)


@pytest.mark.gpu
def test_cupy_backend_on_gpu():
    import cupy

    b = get_backend("cupy")
    assert b.is_gpu and b.xp is cupy and b.details["total_memory_bytes"] > 0
    assert array_module(cupy.zeros(2)) is cupy
