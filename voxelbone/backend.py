"""The one place where voxelbone chooses between CuPy (GPU) and NumPy (CPU).

Every other module asks this one for an array module (``xp``) or follows the
array it was given (:func:`array_module`), so a function called with a CuPy
array stays on the device and a NumPy array stays on the host.

The choice, in order:

1. an explicit ``name`` argument (the CLI's ``--backend``),
2. the ``VOXELBONE_BACKEND`` environment variable (``numpy`` | ``cupy`` | ``auto``),
3. ``auto``: CuPy when it imports, a device answers and a tiny kernel compiles
   with NVRTC; NumPy otherwise.

Forcing ``cupy`` where it cannot work raises :class:`BackendError` naming the
reason (CuPy not installed, no driver, no device, NVRTC missing).
"""

from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "Backend",
    "BackendError",
    "array_module",
    "asnumpy",
    "cupy_available",
    "get_backend",
    "is_device_array",
    "ndimage_module",
]

ENV_VAR = "VOXELBONE_BACKEND"
_VALID = ("auto", "numpy", "cupy")


class BackendError(RuntimeError):
    """The requested array backend cannot be used on this machine."""


@dataclass(frozen=True)
class Backend:
    """An array backend and the device behind it.

    Attributes
    ----------
    name : {"numpy", "cupy"}
        Backend name, as accepted by ``--backend``.
    xp : module
        The array module (``numpy`` or ``cupy``).
    device : str
        Human-readable device description (GPU name or CPU model).
    details : dict
        Versions and device properties recorded in ``run.json``.
    """

    name: str
    xp: ModuleType
    device: str
    details: dict[str, Any]

    @property
    def is_gpu(self) -> bool:
        """True for the CuPy backend."""
        return self.name == "cupy"

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Move ``a`` onto this backend (no copy when already there)."""
        return self.xp.asarray(a, dtype=dtype)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on NumPy)."""
        if self.is_gpu:
            self.xp.cuda.get_current_stream().synchronize()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _numpy_backend() -> Backend:
    details = {
        "numpy": np.__version__,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    return Backend("numpy", np, details["cpu"], details)


def _probe_cupy() -> Backend:
    """Import CuPy, find a device and compile a tiny kernel; raise BackendError on failure."""
    try:
        import cupy  # noqa: PLC0415
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        raise BackendError(
            "the 'cupy' backend needs CuPy: install the GPU extra "
            "(pip install 'voxelbone[gpu]', i.e. cupy-cuda13x and nvidia-cuda-nvrtc). "
            f"Import failed with: {exc}"
        ) from exc
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise BackendError(
            "the 'cupy' backend found no usable NVIDIA driver "
            f"(cudaGetDeviceCount failed: {exc}). Use --backend numpy on this machine."
        ) from exc
    if n < 1:
        raise BackendError("the 'cupy' backend found no CUDA device. Use --backend numpy.")
    try:
        probe = cupy.RawKernel(
            r'extern "C" __global__ void vb_probe(float* a) { a[threadIdx.x] += 1.0f; }',
            "vb_probe",
        )
        a = cupy.zeros(32, dtype=cupy.float32)
        probe((1,), (32,), (a,))
        ok = float(a.sum()) == 32.0
    except Exception as exc:
        raise BackendError(
            "the 'cupy' backend could not compile a kernel with NVRTC; install "
            f"nvidia-cuda-nvrtc matching your CUDA major version. Error: {exc}"
        ) from exc
    if not ok:
        raise BackendError("the 'cupy' backend ran a probe kernel that returned a wrong result.")
    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    details = {
        "cupy": cupy.__version__,
        "numpy": np.__version__,
        "gpu": name,
        "device_id": dev.id,
        "compute_capability": dev.compute_capability,
        "total_memory_bytes": int(props["totalGlobalMem"]),
        "multiprocessors": int(props["multiProcessorCount"]),
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        "cpu": _cpu_model(),
    }
    return Backend("cupy", cupy, name, details)


@functools.cache
def _resolve(name: str) -> Backend:
    if name == "numpy":
        return _numpy_backend()
    if name == "cupy":
        return _probe_cupy()
    try:
        return _probe_cupy()
    except BackendError:
        return _numpy_backend()


def get_backend(name: str | None = None) -> Backend:
    """Return the array backend to use.

    Parameters
    ----------
    name : {"auto", "numpy", "cupy"}, optional
        Requested backend. ``None`` reads ``VOXELBONE_BACKEND`` (default ``auto``).

    Returns
    -------
    Backend
        The resolved backend; the result is cached per name.

    Raises
    ------
    ValueError
        For an unknown backend name.
    BackendError
        When ``cupy`` is requested but cannot run here; the message says why.
    """
    requested = name if name is not None else os.environ.get(ENV_VAR, "auto")
    requested = requested.strip().lower() or "auto"
    if requested not in _VALID:
        source = "backend" if name is not None else f"${ENV_VAR}"
        raise ValueError(f"unknown {source} {requested!r}; choose one of {', '.join(_VALID)}")
    return _resolve(requested)


def cupy_available() -> bool:
    """True when the CuPy backend can run on this machine (probe is cached)."""
    try:
        _resolve("cupy")
    except BackendError:
        return False
    return True


def is_device_array(a: Any) -> bool:
    """True for a CuPy array (checked without importing CuPy)."""
    return type(a).__module__.split(".")[0] == "cupy"


def array_module(*arrays: Any) -> ModuleType:
    """The array module of the given arrays: ``cupy`` if any is a CuPy array, else ``numpy``."""
    for a in arrays:
        if is_device_array(a):
            import cupy  # noqa: PLC0415

            return cupy
    return np


def ndimage_module(xp: ModuleType) -> ModuleType:
    """``scipy.ndimage`` for NumPy, ``cupyx.scipy.ndimage`` for CuPy (same functions, same results)."""
    if xp is np:
        from scipy import ndimage  # noqa: PLC0415
    else:
        from cupyx.scipy import ndimage  # noqa: PLC0415
    return ndimage


def asnumpy(a: Any) -> np.ndarray:
    """Return ``a`` as a NumPy array (copying from the device when needed)."""
    if is_device_array(a):
        return a.get()
    return np.asarray(a)


class StepTimer:
    """Time spent in a repeated piece of work, summed without a host synchronisation per use.

    On the CuPy backend a pair of CUDA events is recorded on the current stream around
    each timed region (no wait), and the elapsed times are read only when
    :meth:`total_s` is called (after the host has synchronised anyway, e.g. at a metric
    evaluation, or at the end), or once every ``fold_every`` regions. On NumPy the wall
    clock is read around each region.

    Examples
    --------
    >>> timer = StepTimer(get_backend("numpy"))
    >>> with timer:
    ...     _ = sum(range(1000))
    >>> timer.total_s() > 0.0
    True
    """

    def __init__(self, backend: Backend, fold_every: int = 4096) -> None:
        self._xp = backend.xp
        self._gpu = backend.is_gpu
        self._fold_every = int(fold_every)
        self._start: Any = None
        self._pending: list[tuple[Any, Any]] = []
        self._total_s = 0.0

    def start(self) -> None:
        """Open a timed region."""
        if self._start is not None:
            raise RuntimeError("StepTimer.start() called twice without stop()")
        if self._gpu:
            self._start = self._xp.cuda.Event()
            self._start.record()
        else:
            self._start = time.perf_counter()

    def stop(self) -> None:
        """Close the timed region opened by :meth:`start`."""
        if self._start is None:
            raise RuntimeError("StepTimer.stop() called without start()")
        if self._gpu:
            end = self._xp.cuda.Event()
            end.record()
            self._pending.append((self._start, end))
            if len(self._pending) >= self._fold_every:
                self._fold()
        else:
            self._total_s += time.perf_counter() - self._start
        self._start = None

    def _fold(self) -> None:
        if not self._pending:
            return
        self._pending[-1][1].synchronize()
        elapsed_ms = sum(self._xp.cuda.get_elapsed_time(a, b) for a, b in self._pending)
        self._total_s += float(elapsed_ms) / 1000.0
        self._pending.clear()

    def total_s(self) -> float:
        """Seconds spent in the closed regions so far (waits for their device work)."""
        self._fold()
        return self._total_s

    def __enter__(self) -> "StepTimer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ += ["StepTimer"]
