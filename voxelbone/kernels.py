"""CUDA kernel sources: finding them, compiling them, checking them.

The kernels live as ``*.cu`` files in the repository's ``kernels/`` folder and are
shipped inside the wheel as ``voxelbone/_kernels``. They are compiled at run time:

* on a GPU by CuPy (:func:`get_function`), once per (file, defines) and device;
* without a GPU by NVRTC through ``ctypes`` (:func:`nvrtc_compile`), which is how
  the tests make a kernel that does not compile turn CI red;
* by the host C++ compiler with ``host_shim.h`` (:func:`build_host_library`), so the
  tests run the kernels' own per-voxel arithmetic on the CPU and compare it with the
  NumPy implementation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

__all__ = [
    "KernelCompileError",
    "NVRTC_OPTIONS",
    "build_host_library",
    "get_function",
    "kernel_dir",
    "kernel_names",
    "kernel_source",
    "nvrtc_compile",
]

#: Options every kernel is compiled with. ``--fmad=false`` keeps float arithmetic
#: bit-identical to NumPy's float32 (no fused multiply-add contraction).
NVRTC_OPTIONS: tuple[str, ...] = ("--std=c++17", "--fmad=false")


class KernelCompileError(RuntimeError):
    """A kernel source failed to compile; the message holds the compiler log."""


@functools.cache
def kernel_dir() -> Path:
    """Folder holding the ``*.cu`` sources (wheel: ``voxelbone/_kernels``; source tree: ``kernels/``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_kernels", here.parent / "kernels"):
        if candidate.is_dir() and any(candidate.glob("*.cu")):
            return candidate
    raise FileNotFoundError(
        f"CUDA kernel sources not found next to {here} (looked for _kernels/ and ../kernels/); "
        "the installation is incomplete — reinstall voxelbone."
    )


def kernel_names() -> list[str]:
    """Names (file stems) of every kernel source file, sorted."""
    return sorted(p.stem for p in kernel_dir().glob("*.cu"))


def kernel_source(name: str) -> str:
    """Source text of ``kernels/<name>.cu``."""
    path = kernel_dir() / f"{name}.cu"
    if not path.is_file():
        raise FileNotFoundError(f"no kernel source {name!r}; available: {', '.join(kernel_names())}")
    return path.read_text(encoding="utf-8")


def _define_options(defines: Iterable[tuple[str, Any]]) -> tuple[str, ...]:
    return tuple(f"-D{k}={v}" for k, v in defines)


@functools.cache
def _module(name: str, defines: tuple[tuple[str, Any], ...]) -> Any:
    import cupy  # noqa: PLC0415

    options = NVRTC_OPTIONS + (f"-I{kernel_dir()}",) + _define_options(defines)
    return cupy.RawModule(code=kernel_source(name), options=options, name_expressions=None)


def get_function(name: str, function: str, defines: Iterable[tuple[str, Any]] = ()) -> Any:
    """A compiled kernel from ``kernels/<name>.cu`` as a ``cupy.RawKernel``-like callable.

    Modules are compiled once per (file, defines); CuPy caches the binary per device.
    """
    return _module(name, tuple(defines)).get_function(function)


# ----------------------------------------------------------------------------------
# NVRTC without a GPU
# ----------------------------------------------------------------------------------
def _nvrtc_candidates() -> list[str]:
    found: list[str] = []
    for base in sys.path:
        found += glob.glob(os.path.join(base, "nvidia", "*", "lib", "libnvrtc.so*"))
        found += glob.glob(os.path.join(base, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*"))
    found = [f for f in found if "builtins" not in f and "alt" not in os.path.basename(f)]
    lib = ctypes.util.find_library("nvrtc")
    if lib:
        found.append(lib)
    for cuda in ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"):
        found += [f for f in glob.glob(os.path.join(cuda, "libnvrtc.so*")) if "builtins" not in f]
    return found


@functools.cache
def _load_nvrtc() -> ctypes.CDLL:
    errors = []
    for path in _nvrtc_candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    raise KernelCompileError(
        "NVRTC library not found; install the 'nvidia-cuda-nvrtc' wheel (part of the dev and "
        "gpu extras)." + (" Tried: " + "; ".join(errors) if errors else "")
    )


def nvrtc_compile(
    name: str,
    arch: str = "compute_90",
    defines: Iterable[tuple[str, Any]] = (),
    source: str | None = None,
) -> int:
    """Compile ``kernels/<name>.cu`` to PTX with NVRTC (no GPU needed).

    Parameters
    ----------
    name : str
        Kernel file stem.
    arch : str
        Virtual architecture, e.g. ``compute_90`` (Hopper).
    defines : iterable of (str, value)
        Extra ``-D`` macros, as used at run time.
    source : str, optional
        Compile this text instead of the file (tests use it to plant errors).

    Returns
    -------
    int
        Size of the PTX produced, in bytes.

    Raises
    ------
    KernelCompileError
        With NVRTC's log when compilation fails.
    """
    lib = _load_nvrtc()
    src = (source if source is not None else kernel_source(name)).encode()
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), src, f"{name}.cu".encode(), 0, None, None)
    if rc != 0:
        raise KernelCompileError(f"nvrtcCreateProgram failed for {name}.cu (code {rc})")
    try:
        opts = [o.encode() for o in NVRTC_OPTIONS + (f"--gpu-architecture={arch}", f"-I{kernel_dir()}")]
        opts += [o.encode() for o in _define_options(defines)]
        arr = (ctypes.c_char_p * len(opts))(*opts)
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        if rc != 0:
            raise KernelCompileError(f"{name}.cu failed to compile for {arch}:\n{log.value.decode(errors='replace')}")
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        return int(size.value)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


# ----------------------------------------------------------------------------------
# Host build of the kernels (tests)
# ----------------------------------------------------------------------------------
def build_host_library(names: Iterable[str], out_dir: str | os.PathLike[str] | None = None) -> ctypes.CDLL:
    """Compile kernel files for the host with ``host_shim.h`` and load them with ctypes.

    Each ``extern "C" __global__`` kernel becomes a plain C function that runs the
    whole grid-stride loop sequentially. Built once per set of sources (content hash).

    Raises
    ------
    KernelCompileError
        When no C++ compiler is found or compilation fails.
    """
    names = sorted(names)
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not cxx:
        raise KernelCompileError("no C++ compiler (g++/clang++) found to build the host kernels")
    kdir = kernel_dir()
    digest = hashlib.sha256()
    for f in sorted(kdir.glob("*.cu*")) + sorted(kdir.glob("*.h")):
        digest.update(f.name.encode() + f.read_bytes())
    digest.update(",".join(names).encode())
    out = Path(out_dir) if out_dir else Path(tempfile.gettempdir()) / "voxelbone-hostkernels"
    out.mkdir(parents=True, exist_ok=True)
    lib_path = out / f"vbhost_{digest.hexdigest()[:16]}.so"
    if not lib_path.exists():
        tmp = lib_path.with_suffix(f".{os.getpid()}.tmp")
        cmd = [cxx, "-O2", "-shared", "-fPIC", "-std=c++17", "-ffp-contract=off", "-fno-fast-math",
               "-x", "c++", "-include", str(kdir / "host_shim.h"), f"-I{kdir}"]
        cmd += [str(kdir / f"{n}.cu") for n in names] + ["-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise KernelCompileError(f"host build of {names} failed:\n{proc.stderr}")
        os.replace(tmp, lib_path)
    return ctypes.CDLL(str(lib_path))
