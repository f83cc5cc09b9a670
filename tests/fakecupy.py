"""A NumPy-backed stand-in for the parts of CuPy that voxelbone's device path uses.

It lets the real ``voxelbone/remodel/gpu.py`` and ``voxelbone/metrics/gpu.py`` (and
``simulate(..., backend=<this>)``) run under CI on a machine without a GPU:

* device arrays are :class:`ndarray`, a thin ``numpy.ndarray`` subclass whose type lives in
  module ``cupy`` (so :func:`voxelbone.backend.is_device_array` routes to the device path)
  and whose ``.get()`` returns a plain NumPy copy. Mixing a device array with a plain
  NumPy array in an operator or ufunc raises ``TypeError``, as CuPy does;
* ``RawModule(code=..., options=...).get_function(name)`` and ``RawKernel(code, name)``
  return a :class:`Kernel`. A launch ``k(grid, block, args, shared_mem=0)`` parses the
  kernel's ``extern "C" __global__`` signature from its ``.cu`` source *after* the C
  preprocessor (the project's ``-D`` options, ``#include``s and typedefs applied) and
  checks every argument — count, pointer vs scalar, C scalar type against the NumPy
  scalar type, array dtype for ``T*``, C-contiguity, and that pointers are device arrays —
  raising :class:`LaunchArgumentError` with the kernel, the argument's index and name and
  what was expected. Then it runs the kernel with its launch configuration on the grid host
  build of the very source string CuPy was given (:func:`host_launch`, the one place that
  knows how: ``voxelbone.kernels.host_grid_launch``, shuffled block order, FTZ as CuPy
  compiles) — inline ``RawKernel`` sources too;
* ``cuda.Device``, ``cuda.Event`` / ``get_elapsed_time``, ``cuda.get_current_stream``,
  ``cuda.runtime.memGetInfo``, ``get_default_memory_pool``, ``asnumpy``,
  ``get_array_module`` and ``cupyx.scipy.ndimage`` (SciPy's, returning device arrays).

Every other attribute is NumPy's function of the same name, with NumPy results turned
into device arrays and plain NumPy array arguments refused (CuPy refuses them too),
except for the upload functions (``asarray``, ``array``, ``ascontiguousarray``).

The argument check reads the signature as CuPy's caller sees it (typedefs and macros
resolved, Python ``int``/``float`` passed as CuPy passes them: 64-bit), and adds what the
host build's own check (``host_grid_launch``: the compiled parameter list) cannot see:
host arrays where device pointers go, 0-d device arrays where scalars go, strides.

Installed for one test by the ``fake_cupy`` fixture of ``tests/test_device_path.py``.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import ndimage as _scipy_ndimage

from voxelbone.kernels import kernel_dir

__all__ = ["LaunchArgumentError", "check_arguments", "host_launch", "install", "module", "parse_signatures"]

__version__ = "0.0-numpy-standin"


class LaunchArgumentError(TypeError):
    """A kernel launch whose arguments do not match the kernel's C signature."""


# ------------------------------------------------------------------------------------------
# device arrays
# ------------------------------------------------------------------------------------------
#: Called with a short description at every device-to-host read (``.get()``, ``int()``,
#: ``float()``, ``bool()``, ``.item()`` of a device array): a synchronisation on a real GPU.
#: Tests set it to find host reads inside timed regions.
on_host_read: Callable[[str], None] | None = None


def _host_read(what: str) -> None:
    if on_host_read is not None:
        on_host_read(what)


class ndarray(np.ndarray):  # noqa: N801 - CuPy's name
    """A "device" array: NumPy memory, CuPy's type name and module.

    Reductions return 0-d device arrays (as CuPy's do); turning one into a Python number
    is a host read (see :data:`on_host_read`).
    """

    def get(self, stream: Any = None) -> np.ndarray:
        """Copy to the host (a plain ``numpy.ndarray``)."""
        _host_read("get")
        return np.array(self.view(np.ndarray), copy=True)

    def item(self, *args: Any) -> Any:
        _host_read("item")
        return self.view(np.ndarray).item(*args)

    def tolist(self) -> Any:
        _host_read("tolist")
        return self.view(np.ndarray).tolist()

    def __int__(self) -> int:
        _host_read("int")
        return int(self.view(np.ndarray))

    def __index__(self) -> int:
        _host_read("index")
        return self.view(np.ndarray).__index__()

    def __float__(self) -> float:
        _host_read("float")
        return float(self.view(np.ndarray))

    def __bool__(self) -> bool:
        _host_read("bool")
        return bool(self.view(np.ndarray))

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        for a in inputs + tuple(kwargs.get("out", ()) or ()):
            if type(a) is np.ndarray and a.ndim > 0:
                raise TypeError(
                    f"Unsupported type {type(a)} in {ufunc.__name__}: a host (NumPy) array met a device "
                    "array; CuPy does not convert implicitly — upload it with cupy.asarray"
                )
        plain = tuple(a.view(np.ndarray) if isinstance(a, ndarray) else a for a in inputs)
        if kwargs.get("out"):
            kwargs["out"] = tuple(a.view(np.ndarray) if isinstance(a, ndarray) else a for a in kwargs["out"])
        result = getattr(ufunc, method)(*plain, **kwargs)
        if method == "reduce" and isinstance(result, np.generic):
            return np.asarray(result).view(ndarray)  # CuPy reductions give 0-d device arrays
        return _to_device(result)


ndarray.__module__ = "cupy"
ndarray.__qualname__ = "ndarray"


def _to_device(x: Any) -> Any:
    if type(x) is np.ndarray:
        return x.view(ndarray)
    if isinstance(x, tuple):
        return tuple(_to_device(v) for v in x)
    if isinstance(x, list):
        return [_to_device(v) for v in x]
    return x


def _refuse_host_arrays(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for a in args + tuple(kwargs.values()):
        if type(a) is np.ndarray and a.ndim > 0:
            raise TypeError(
                f"cupy.{name}: got a host numpy.ndarray; CuPy does not convert implicitly — upload it "
                "with cupy.asarray"
            )


_UPLOADS = {"asarray", "array", "ascontiguousarray", "asanyarray", "copy"}


def _wrap(name: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if name not in _UPLOADS:
            _refuse_host_arrays(name, args, kwargs)
        elif name in ("asarray", "ascontiguousarray", "asanyarray") and isinstance(args[0] if args else None, ndarray):
            out = fn(*args, **kwargs)  # stays on the device, no copy
            return out.view(ndarray) if type(out) is np.ndarray else out
        else:  # an upload: the device copy never shares the host's memory
            out = fn(*args, **kwargs)
            if isinstance(out, np.ndarray) and args and isinstance(args[0], np.ndarray) \
                    and np.shares_memory(out, args[0]):
                out = out.copy()
            return _to_device(out)
        return _to_device(fn(*args, **kwargs))

    return call


def asnumpy(a: Any, stream: Any = None) -> np.ndarray:
    """A host copy of a device array (NumPy input is returned as an array)."""
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def get_array_module(*args: Any) -> types.ModuleType:
    """This module for device arrays, NumPy otherwise."""
    return module if any(isinstance(a, ndarray) for a in args) else np


# ------------------------------------------------------------------------------------------
# kernel signatures
# ------------------------------------------------------------------------------------------
#: C scalar type (after typedefs) -> NumPy dtype of the scalar CuPy must be given.
C_SCALARS: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "char": np.dtype(np.int8), "signed char": np.dtype(np.int8), "unsigned char": np.dtype(np.uint8),
    "short": np.dtype(np.int16), "unsigned short": np.dtype(np.uint16),
    "int": np.dtype(np.int32), "unsigned int": np.dtype(np.uint32), "unsigned": np.dtype(np.uint32),
    "long long": np.dtype(np.int64), "long long int": np.dtype(np.int64),
    "unsigned long long": np.dtype(np.uint64), "unsigned long long int": np.dtype(np.uint64),
    "long": np.dtype(np.int64), "unsigned long": np.dtype(np.uint64),
    "float": np.dtype(np.float32), "double": np.dtype(np.float64),
}
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict", "signed"}


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its name, base C type and whether it is a pointer."""

    name: str
    ctype: str
    pointer: bool

    @property
    def dtype(self) -> np.dtype:
        return C_SCALARS[self.ctype]

    def describe(self) -> str:
        return f"{self.ctype}{'*' if self.pointer else ''} {self.name}"


def _preprocess(code: str, options: tuple[str, ...]) -> str:
    """The source after the C preprocessor, with the compile's -I/-D options."""
    cpp = shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")
    if cpp is None:  # pragma: no cover - the host build needs a compiler anyway
        raise RuntimeError("no C preprocessor (cpp/g++) found to read the kernel signatures")
    flags = [o for o in options if o.startswith(("-D", "-U", "-I"))]
    if not any(o.startswith("-I") for o in flags):
        flags.append(f"-I{kernel_dir()}")
    cmd = [cpp, "-E", "-P", "-x", "c++", *flags, "-"]
    proc = subprocess.run(cmd, input=code, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"preprocessing the kernel source failed:\n{proc.stderr}")
    return proc.stdout


def _resolve_typedefs(text: str) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for m in re.finditer(r"\btypedef\s+([A-Za-z_][\w\s]*?)\s+([A-Za-z_]\w*)\s*;", text):
        aliases[m.group(2)] = " ".join(m.group(1).split())
    return aliases


def _base_type(tokens: list[str], aliases: dict[str, str]) -> str:
    words = [t for t in tokens if t not in _QUALIFIERS]
    for _ in range(8):  # follow typedef chains
        expanded: list[str] = []
        for w in words:
            expanded += aliases[w].split() if w in aliases else [w]
        if expanded == words:
            break
        words = [t for t in expanded if t not in _QUALIFIERS]
    return " ".join(words)


@functools.cache
def parse_signatures(code: str, options: tuple[str, ...] = ()) -> dict[str, tuple[Param, ...]]:
    """Every ``extern "C" __global__`` kernel in ``code`` (preprocessed) with its parameters.

    Raises
    ------
    ValueError
        For a parameter type this stand-in does not know (it would rather fail than guess).
    """
    text = _preprocess(code, options)
    aliases = _resolve_typedefs(text)
    kernels: dict[str, tuple[Param, ...]] = {}
    for m in re.finditer(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', text):
        params = []
        for raw in (p.strip() for p in m.group(2).split(",")):
            if not raw or raw == "void":
                continue
            pointer = raw.count("*")
            if pointer > 1:
                raise ValueError(f"kernel {m.group(1)}: pointer-to-pointer parameter {raw!r} is not supported")
            tokens = raw.replace("*", " ").split()
            name, ctype = tokens[-1], _base_type(tokens[:-1], aliases)
            if ctype not in C_SCALARS:
                raise ValueError(f"kernel {m.group(1)}: unknown C type {ctype!r} of parameter {name!r}")
            params.append(Param(name, ctype, bool(pointer)))
        kernels[m.group(1)] = tuple(params)
    return kernels


def _scalar_dtype(v: Any) -> np.dtype | None:
    """The dtype CuPy passes a scalar argument as (Python int -> int64, float -> float64)."""
    if isinstance(v, (bool, np.bool_)):
        return np.dtype(np.bool_)
    if isinstance(v, np.generic):
        return v.dtype
    if isinstance(v, int):
        return np.dtype(np.int64)
    if isinstance(v, float):
        return np.dtype(np.float64)
    return None


def check_arguments(kernel: str, params: tuple[Param, ...], args: tuple[Any, ...]) -> list[Any]:
    """Check ``args`` against ``params`` as a launch would pass them; return host-side values.

    Raises
    ------
    LaunchArgumentError
        Naming the kernel, the argument (index and name) and what was expected.
    """
    if not isinstance(args, tuple):
        raise LaunchArgumentError(f"{kernel}: kernel arguments must be a tuple, got {type(args).__name__}")
    if len(args) != len(params):
        raise LaunchArgumentError(
            f"{kernel}: {len(args)} arguments given, the kernel takes {len(params)} "
            f"({', '.join(p.describe() for p in params)})"
        )
    host: list[Any] = []
    for i, (p, a) in enumerate(zip(params, args)):
        where = f"{kernel}: argument {i} ({p.describe()})"
        if p.pointer:
            if not isinstance(a, ndarray):
                raise LaunchArgumentError(f"{where} needs a device array of {p.dtype}, got {type(a).__module__}."
                                          f"{type(a).__name__}")
            if a.dtype != p.dtype:
                raise LaunchArgumentError(f"{where} needs an array of dtype {p.dtype}, got {a.dtype}")
            if a.size > 1 and not a.flags.c_contiguous:
                raise LaunchArgumentError(f"{where}: the array is not C-contiguous (the kernel indexes it flat)")
            host.append(a.view(np.ndarray))
        else:
            if isinstance(a, np.ndarray):
                raise LaunchArgumentError(
                    f"{where} is a scalar of {p.dtype}, got an array (CuPy would pass its pointer)")
            dt = _scalar_dtype(a)
            if dt is None:
                raise LaunchArgumentError(f"{where} is a scalar of {p.dtype}, got {type(a).__name__}")
            if dt != p.dtype:
                raise LaunchArgumentError(
                    f"{where} needs a numpy.{p.dtype} scalar, got {type(a).__name__} (passed as {dt}): the kernel "
                    "would read the wrong bytes"
                )
            host.append(p.dtype.type(a))
    return host


def _dims(v: Any, what: str) -> tuple[int, int, int]:
    t = tuple(int(x) for x in (v if isinstance(v, tuple) else (v,)))
    if not 1 <= len(t) <= 3 or any(x < 1 for x in t):
        raise LaunchArgumentError(f"{what} must be a tuple of 1-3 positive ints, got {v!r}")
    return t + (1,) * (3 - len(t))  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------
# running a kernel on the host: the one adapter to the host build
# ------------------------------------------------------------------------------------------
#: How the stand-in runs kernels on the host (tests may change these).
HOST_ORDER = "shuffled"   # blocks (and a block's threads) in a shuffled order, a new one per launch
HOST_FTZ = True           # float32 subnormals flush to zero, as CuPy compiles (-ftz=true)
HOST_WORKERS = 2
_launch_counter = 0


def host_launch(cu_name: str, kernel: str, grid: tuple[int, int, int], block: tuple[int, int, int],
                args: list[Any], shared_mem: int = 0, *, source: str, options: tuple[str, ...] = ()) -> None:
    """Run ``kernel`` of the module ``source`` (compiled with ``options``) on the host.

    The grid host build (:func:`voxelbone.kernels.host_grid_launch`) executes the real launch
    configuration — every (block, thread) of ``grid`` × ``block`` on a pool of threads, atomics
    as atomics — in a shuffled block order that changes with every launch, with the FTZ/DAZ
    bits set as CuPy's compile does. It builds the exact source string CuPy was given. This
    is the only function that knows how the stand-in runs kernels.
    """
    global _launch_counter
    from voxelbone.kernels import defines_from_options, host_grid_launch  # noqa: PLC0415

    _launch_counter += 1
    host_grid_launch(cu_name, kernel, grid, block, args, shared_mem=shared_mem, order=HOST_ORDER,
                     order_seed=_launch_counter, ftz=HOST_FTZ, workers=HOST_WORKERS,
                     defines=defines_from_options(options), source=source)


class Kernel:
    """A kernel of a module: checks each launch's arguments, then runs it on the host."""

    def __init__(self, module: "RawModule", name: str, params: tuple[Param, ...]) -> None:
        self.module, self.name, self.params = module, name, params
        self.launches = 0

    @property
    def num_regs(self) -> int:
        return 0

    def __call__(self, grid: Any, block: Any, args: tuple[Any, ...], *, shared_mem: int = 0,
                 stream: Any = None) -> None:
        g, b = _dims(grid, f"{self.name}: grid"), _dims(block, f"{self.name}: block")
        if b[0] * b[1] * b[2] > 1024:
            raise LaunchArgumentError(f"{self.name}: block {b} has more than 1024 threads")
        if int(shared_mem) < 0 or int(shared_mem) > 227 * 1024:
            raise LaunchArgumentError(f"{self.name}: shared_mem={shared_mem} is outside 0..227 KiB")
        host = check_arguments(self.name, self.params, args)
        host_launch(self.module.cu_name, self.name, g, b, host, int(shared_mem), source=self.module.code,
                    options=self.module.options)
        self.launches += 1


_SOURCE_TAG = re.compile(r"^// voxelbone kernel (\w+)\.cu ")


class RawModule:
    """``cupy.RawModule``: its kernels' signatures are parsed once, launches are checked."""

    def __init__(self, code: str | None = None, *, path: str | None = None, options: tuple[str, ...] = (),
                 backend: str = "nvrtc", name_expressions: Any = None, **_: Any) -> None:
        if code is None:
            if path is None:
                raise ValueError("RawModule needs code or path")
            with open(path, encoding="utf-8") as fh:
                code = fh.read()
        self.code, self.options = code, tuple(options)
        tag = _SOURCE_TAG.match(code)  # voxelbone.kernels.specialised_source names its file
        self.cu_name = tag.group(1) if tag else "inline"
        self.signatures = parse_signatures(code, self.options)

    def get_function(self, name: str) -> Kernel:
        if name not in self.signatures:
            raise AttributeError(f"no extern \"C\" __global__ kernel {name!r} in the module "
                                 f"(has {', '.join(self.signatures)})")
        return Kernel(self, name, self.signatures[name])


def RawKernel(code: str, name: str, options: tuple[str, ...] = (), **kwargs: Any) -> Kernel:  # noqa: N802
    """``cupy.RawKernel``: a one-kernel :class:`RawModule`."""
    return RawModule(code=code, options=options, **kwargs).get_function(name)


# ------------------------------------------------------------------------------------------
# cupy.cuda
# ------------------------------------------------------------------------------------------
class _Device:
    def __init__(self, device: int = 0) -> None:
        if int(device) != 0:
            raise ValueError(f"the stand-in has one device (0), not {device}")
        self.id = 0
        self.compute_capability = "90"
        self.attributes = {"MultiProcessorCount": 1, "MaxThreadsPerBlock": 1024}

    def __enter__(self) -> "_Device":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def synchronize(self) -> None:
        return None


class _Stream:
    done = True

    def synchronize(self) -> None:
        return None


_STREAM = _Stream()


class _Event:
    """Host-clock event: kernels run synchronously here, so elapsed time is the host work."""

    def __init__(self, *_: Any, **__: Any) -> None:
        self.t: float | None = None

    def record(self, stream: Any = None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        if self.t is None:
            raise RuntimeError("event synchronised before it was recorded")

    @property
    def done(self) -> bool:
        return self.t is not None


def _get_elapsed_time(start: _Event, stop: _Event) -> float:
    if start.t is None or stop.t is None:
        raise RuntimeError("both events must be recorded")
    return (stop.t - start.t) * 1000.0


class _MemoryPool:
    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        return None

    def set_limit(self, size: int = 0, fraction: float | None = None) -> None:
        return None

    def get_limit(self) -> int:
        return 0


_POOL = _MemoryPool()

_TOTAL_MEMORY = 512 << 20  # small: the benchmark sizes its bandwidth probe from it
runtime = types.SimpleNamespace(
    getDeviceCount=lambda: 1,
    memGetInfo=lambda: (_TOTAL_MEMORY, _TOTAL_MEMORY),
    runtimeGetVersion=lambda: 13000,
    driverGetVersion=lambda: 13000,
    getDeviceProperties=lambda i: {"name": b"NumPy stand-in", "totalGlobalMem": _TOTAL_MEMORY,
                                   "multiProcessorCount": 4},
)
cuda = types.SimpleNamespace(
    Device=_Device, Event=_Event, Stream=_Stream, get_current_stream=lambda: _STREAM,
    get_elapsed_time=_get_elapsed_time, runtime=runtime, Device_synchronize=lambda: None,
)


def get_default_memory_pool() -> _MemoryPool:
    return _POOL


def get_default_pinned_memory_pool() -> _MemoryPool:
    return _POOL


# ------------------------------------------------------------------------------------------
# the module objects
# ------------------------------------------------------------------------------------------
class _CupyModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        try:
            obj = getattr(np, name)
        except AttributeError:
            raise AttributeError(f"the CuPy stand-in has no attribute {name!r}") from None
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)) or (
            callable(obj) and type(obj).__name__ in ("_ArrayFunctionDispatcher", "function")
        ):
            wrapped = _wrap(name, obj)
            setattr(self, name, wrapped)
            return wrapped
        return obj  # dtypes, ufuncs (which keep the device type), constants


module = _CupyModule("cupy", __doc__)
for _name in ("ndarray", "asnumpy", "get_array_module", "RawModule", "RawKernel", "cuda",
              "get_default_memory_pool", "get_default_pinned_memory_pool", "__version__"):
    setattr(module, _name, globals()[_name])
module.fuse = lambda *a, **k: (lambda f: f)  # noqa: E731


def _ndimage_module() -> types.ModuleType:
    nd = types.ModuleType("cupyx.scipy.ndimage")

    def distance_transform_edt(x: Any, *args: Any, float64_distances: bool = True, block_params: Any = None,
                               **kwargs: Any) -> Any:
        _refuse_host_arrays("distance_transform_edt", (x,), {})
        out = _scipy_ndimage.distance_transform_edt(x.view(np.ndarray), *args, **kwargs)
        if not float64_distances:
            out = out.astype(np.float32)
        return _to_device(out)

    def __getattr__(name: str) -> Any:
        fn = getattr(_scipy_ndimage, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            _refuse_host_arrays(name, args[:1], {})  # structure/footprint may be host arrays (cupyx copies them)
            plain = [a.view(np.ndarray) if isinstance(a, ndarray) else a for a in args]
            return _to_device(fn(*plain, **kwargs))

        return call

    nd.distance_transform_edt = distance_transform_edt
    nd.__getattr__ = __getattr__  # type: ignore[attr-defined]
    return nd


ndimage = _ndimage_module()
cupyx = types.ModuleType("cupyx")
cupyx_scipy = types.ModuleType("cupyx.scipy")
cupyx_scipy.ndimage = ndimage  # type: ignore[attr-defined]
cupyx.scipy = cupyx_scipy  # type: ignore[attr-defined]

_MODULES = {"cupy": module, "cupyx": cupyx, "cupyx.scipy": cupyx_scipy, "cupyx.scipy.ndimage": ndimage}


def install(monkeypatch: Any) -> types.ModuleType:
    """Put the stand-in into ``sys.modules`` (undone by ``monkeypatch``) and return ``cupy``."""
    for name, mod in _MODULES.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return module
