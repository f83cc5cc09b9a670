"""CUDA kernel sources: finding them, compiling them, checking them.

The kernels live as ``*.cu`` files in the repository's ``kernels/`` folder and are
shipped inside the wheel as ``voxelbone/_kernels``. They are compiled at run time:

* on a GPU by CuPy (:func:`get_function`), once per (file, defines) and device;
* without a GPU by NVRTC through ``ctypes`` (:func:`nvrtc_compile`), which is how
  the tests make a kernel that does not compile turn CI red;
* by the host C++ compiler with ``host_grid.h`` (:func:`host_grid_launch`), which runs
  a kernel's real launch grid on CPU threads (thread-local indices, ``__atomic``
  atomics, fibers per block for barriers and warp shuffles, several block orders, an
  optional flush-to-zero mode and a ThreadSanitizer build), so the tests compare the
  kernels' results with the NumPy implementation and check them for data races.
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
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "HostParam",
    "HostRaceError",
    "KernelCompileError",
    "NVRTC_OPTIONS",
    "CUPY_EXTRA_OPTIONS",
    "KernelResources",
    "NvrtcOutput",
    "compile_as_cupy",
    "defines_from_options",
    "parse_ptxas_log",
    "get_function",
    "host_grid_launch",
    "host_kernel_params",
    "index_defines",
    "kernel_entry_points",
    "specialisation_suffix",
    "specialised_source",
    "kernel_source_inlined",
    "kernel_dir",
    "kernel_names",
    "kernel_source",
    "nvrtc_compile",
]

#: Options every kernel is compiled with. ``--fmad=false`` keeps float arithmetic
#: bit-identical to NumPy's float32 (no fused multiply-add contraction).
NVRTC_OPTIONS: tuple[str, ...] = ("--std=c++17", "--fmad=false")


_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)
_ENTRY = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')
_SYNC_WORDS = re.compile(r"__syncthreads|__syncwarp|__shfl\w*_sync|__ballot_sync|__any_sync|__all_sync|__shared__|VB_EXTERN_SHARED")
_ORDERS = {"forward": 0, "reverse": 1, "shuffled": 2}
_HOST_FLAGS = ("-O2", "-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-pthread")


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


def index_defines(max_index: int) -> tuple[tuple[str, int], ...]:
    """The index-width specialisation for a launch whose indices stay below ``max_index``.

    ``max_index`` must bound every linear index the kernel forms plus one grid stride
    (e.g. voxels + blocks × threads). Below 2³¹ the kernels are compiled with
    ``VB_INDEX32=1`` (32-bit division and modulo in the grid-stride loops), otherwise
    with ``VB_INDEX32=0`` (64-bit, for volumes past 2³¹ voxels).
    """
    if max_index < 0:
        raise ValueError(f"max_index must be >= 0, got {max_index}")
    return (("VB_INDEX32", 1 if max_index < 2**31 else 0),)


def specialisation_suffix(defines: Iterable[tuple[str, Any]]) -> str:
    """Suffix naming a kernel's specialisation: ``_i32`` / ``_i64`` plus any other define.

    ``vb_update`` compiled with ``VB_INDEX32=1`` is called ``vb_update_i32`` on the device,
    so profiles show which specialisation ran.
    """
    d = dict(defines)
    parts = ["i32" if str(d.pop("VB_INDEX32", 0)) not in ("0", "") else "i64"]
    parts += [re.sub(r"\W", "", f"{k}{v}").lower() for k, v in sorted(d.items())]
    return "_" + "_".join(parts)


def specialised_source(name: str, defines: Iterable[tuple[str, Any]] = ()) -> str:
    """The exact source string compiled for ``kernels/<name>.cu`` with ``defines``.

    Headers are inlined (:func:`kernel_source_inlined`) and every ``extern "C"`` kernel is
    renamed ``<kernel><suffix>`` (:func:`specialisation_suffix`); the first line records
    the file and defines, so a tool given only the source string (a CuPy stand-in) knows
    what it holds.
    """
    defines = tuple(defines)
    suffix = specialisation_suffix(defines)
    src = kernel_source_inlined(name)
    src = _ENTRY.sub(lambda m: m.group(0).replace(m.group(1), m.group(1) + suffix), src)
    spec = ",".join(f"{k}={v}" for k, v in defines)
    return f"// voxelbone kernel {name}.cu defines={spec} suffix={suffix}\n" + src


@functools.cache
def _module(name: str, defines: tuple[tuple[str, Any], ...], device_id: int) -> Any:
    import cupy  # noqa: PLC0415

    options = NVRTC_OPTIONS + _define_options(defines)
    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=specialised_source(name, defines), options=options)


def get_function(name: str, function: str, defines: Iterable[tuple[str, Any]] = ()) -> Any:
    """A compiled kernel from ``kernels/<name>.cu`` as a ``cupy.RawKernel``-like callable.

    The source string holds its headers inline, so CuPy's cache (source + options) never
    serves a binary built from an older header. Modules are built once per (file,
    defines, device); the kernel is named by its specialisation
    (``function + specialisation_suffix(defines)``).
    """
    import cupy  # noqa: PLC0415

    defines = tuple(defines)
    module = _module(name, defines, cupy.cuda.Device().id)
    return module.get_function(function + specialisation_suffix(defines))


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


@dataclass(frozen=True)
class NvrtcOutput:
    """What NVRTC produced for one source: PTX (virtual arch) or a cubin (real arch) and the log."""

    ptx: str | None
    cubin: bytes | None
    log: str


def _nvrtc(source: str, filename: str, options: Sequence[str]) -> NvrtcOutput:
    lib = _load_nvrtc()
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), filename.encode(), 0, None, None)
    if rc != 0:
        raise KernelCompileError(f"nvrtcCreateProgram failed for {filename} (code {rc})")
    try:
        opts = [o.encode() for o in options]
        arr = (ctypes.c_char_p * len(opts))(*opts)
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log_buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log_buf)
        log = log_buf.value.decode(errors="replace")
        if rc != 0:
            raise KernelCompileError(f"{filename} failed to compile ({' '.join(options)}):\n{log}")
        ptx = cubin = None
        if lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)) == 0 and size.value > 0:
            buf = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetCUBIN(prog, buf)
            cubin = buf.raw
        if lib.nvrtcGetPTXSize(prog, ctypes.byref(size)) == 0 and size.value > 1:
            buf = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetPTX(prog, buf)
            ptx = buf.value.decode()
        return NvrtcOutput(ptx=ptx, cubin=cubin, log=log)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


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
    defines = tuple(defines)
    src = source if source is not None else specialised_source(name, defines)
    out = _nvrtc(src, f"{name}.cu", NVRTC_OPTIONS + (f"--gpu-architecture={arch}",) + _define_options(defines))
    return len(out.ptx or "")


#: What CuPy adds to every NVRTC compile (cupy/cuda/compiler.py): flush-to-zero float32.
CUPY_EXTRA_OPTIONS: tuple[str, ...] = ("-ftz=true",)


@dataclass(frozen=True)
class KernelResources:
    """ptxas's account of one compiled kernel (``--ptxas-options=-v``)."""

    registers: int
    stack_frame_bytes: int
    spill_stores_bytes: int
    spill_loads_bytes: int
    shared_bytes: int


_PTXAS_FUNC = re.compile(r"Compiling entry function '(\w+)'")
_PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_REGS = re.compile(r"Used (\d+) registers")
_PTXAS_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas_log(log: str) -> dict[str, KernelResources]:
    """Registers, stack frame and spills per entry function from a ``ptxas -v`` log."""
    out: dict[str, KernelResources] = {}
    parts = _PTXAS_FUNC.split(log)
    for fname, body in zip(parts[1::2], parts[2::2]):
        frame, regs, smem = _PTXAS_FRAME.search(body), _PTXAS_REGS.search(body), _PTXAS_SMEM.search(body)
        if not (frame and regs):
            continue
        out[fname] = KernelResources(
            registers=int(regs.group(1)), stack_frame_bytes=int(frame.group(1)),
            spill_stores_bytes=int(frame.group(2)), spill_loads_bytes=int(frame.group(3)),
            shared_bytes=int(smem.group(1)) if smem else 0)
    return out


def compile_as_cupy(name: str, defines: Iterable[tuple[str, Any]] = (), arch: str = "sm_90") -> tuple[NvrtcOutput, NvrtcOutput]:
    """Compile ``kernels/<name>.cu`` as CuPy does on a device of ``arch``, without a device.

    The source string :func:`get_function` gives CuPy, the project's options plus CuPy's
    ``-ftz=true``; once for the virtual architecture (PTX, to inspect instructions) and
    once for the real one (an ``sm_XX`` cubin, with ``--ptxas-options=-v`` so the log
    holds registers, stack frame and spills; see :func:`parse_ptxas_log`).

    Returns
    -------
    (NvrtcOutput, NvrtcOutput)
        The PTX build and the cubin build.
    """
    defines = tuple(defines)
    src = specialised_source(name, defines)
    base = NVRTC_OPTIONS + _define_options(defines) + CUPY_EXTRA_OPTIONS
    virtual = "compute_" + arch.split("_", 1)[1]
    ptx = _nvrtc(src, f"{name}.cu", base + (f"-arch={virtual}",))
    cubin = _nvrtc(src, f"{name}.cu", base + (f"-arch={arch}", "--ptxas-options=-v"))
    return ptx, cubin


# ----------------------------------------------------------------------------------
# Grid host build: the real launch configuration on CPU threads (tests, CI)
# ----------------------------------------------------------------------------------
class HostRaceError(RuntimeError):
    """ThreadSanitizer reported a data race (or another error) in a host-grid launch."""


@dataclass(frozen=True)
class HostParam:
    """One kernel parameter as the C++ compiler sees it.

    Attributes
    ----------
    pointer : bool
        A pointer (an array argument) rather than a value.
    kind : str
        ``'i'`` signed integer, ``'u'`` unsigned integer, ``'f'`` floating point, ``'b'``
        bool, ``'v'`` void, ``'r'`` record; of the pointee for a pointer.
    size : int
        ``sizeof`` the value (of the pointee for a pointer; 0 for ``void``).
    const : bool
        The pointee is ``const`` (the kernel only reads the array).
    """

    pointer: bool
    kind: str
    size: int
    const: bool = False

    def c_type(self) -> str:
        """A readable C spelling, for messages (``const float*``, ``long long``)."""
        names = {("i", 1): "signed char", ("u", 1): "unsigned char", ("i", 2): "short",
                 ("u", 2): "unsigned short", ("i", 4): "int", ("u", 4): "unsigned int",
                 ("i", 8): "long long", ("u", 8): "unsigned long long", ("f", 4): "float",
                 ("f", 8): "double", ("b", 1): "bool", ("v", 0): "void"}
        base = names.get((self.kind, self.size), f"<{self.kind}{self.size}>")
        return f"{'const ' if self.const else ''}{base}*" if self.pointer else base




def _inline(path: Path, seen: set[Path]) -> str:
    text = path.read_text(encoding="utf-8")
    out: list[str] = [f'#line 1 "{path.name}"\n']
    pos = 0
    line = 1
    for m in _INCLUDE.finditer(text):
        chunk = text[pos:m.start()]
        out.append(chunk)
        line += chunk.count("\n") + m.group(0).count("\n")
        inc = (path.parent / m.group(1)).resolve()
        if not inc.is_file():
            raise FileNotFoundError(f"{path.name} includes {m.group(1)!r}, which is not in {path.parent}")
        if inc not in seen:  # every header here is #pragma once
            seen.add(inc)
            out.append(f"// ---- begin {m.group(1)} ----\n")
            out.append(_inline(inc, seen).replace("#pragma once", "// (#pragma once)"))
            out.append(f"\n// ---- end {m.group(1)} ----\n")
        out.append(f'#line {line} "{path.name}"\n')
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def kernel_source_inlined(name: str) -> str:
    """Source of ``kernels/<name>.cu`` with every ``#include "..."`` replaced by the header's text.

    This is the string given to CuPy and NVRTC: CuPy's kernel cache hashes the source
    string and the options, not headers found through ``-I``, so a change to a header
    (``vb_common.cuh``) must change this string or stale binaries would run. ``#line``
    directives keep compiler messages pointing at the original files.
    """
    path = kernel_dir() / f"{name}.cu"
    if not path.is_file():
        raise FileNotFoundError(f"no kernel source {name!r}; available: {', '.join(kernel_names())}")
    return _inline(path, {path.resolve()})


def kernel_entry_points(name: str) -> list[str]:
    """The ``extern "C" __global__`` kernels defined in ``kernels/<name>.cu``, in file order."""
    return _ENTRY.findall(kernel_source_inlined(name))


def _host_cache_dir() -> Path:
    out = Path(os.environ.get("VOXELBONE_HOST_CACHE") or Path(tempfile.gettempdir()) / "voxelbone-hostkernels")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _cxx() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise KernelCompileError("no C++ compiler (g++) found to build the host kernels")
    return cxx


def _needs_fibers(src: str) -> bool:
    """Whether code (comments and #define lines aside) uses barriers, shared memory or warp intrinsics."""
    code = re.sub(r"/\*.*?\*/", "", src, flags=re.DOTALL)
    code = re.sub(r"//[^\n]*", "", code)
    code = re.sub(r"^\s*#\s*define[^\n]*(\\\n[^\n]*)*", "", code, flags=re.MULTILINE)
    return bool(_SYNC_WORDS.search(code))


def _grid_wrapper(name: str, src: str, tsan: bool) -> str:
    entries = _ENTRY.findall(src)
    fibers = "true" if _needs_fibers(src) else "false"
    lines = [f"// generated by voxelbone.kernels for {name}.cu", src, "", 'extern "C" {']
    lines.append("int vbhost_launch(const char* name, const vbh::Config* c, void** argv, char* err, size_t n) {")
    for e in entries:
        lines.append(f'    if (!strcmp(name, "{e}")) return vbh::launch(&{e}, c, argv, {fibers}, err, n);')
    lines.append('    snprintf(err, n, "no kernel %s in this build", name);')
    lines.append("    return 2;\n}")
    lines.append("const char* vbhost_params(const char* name) {")
    for e in entries:
        lines.append(f'    if (!strcmp(name, "{e}")) {{ static const std::string s = vbh::describe(&{e}); return s.c_str(); }}')
    lines.append("    return nullptr;\n}\n}")
    if tsan:
        lines.append('#include "host_grid_driver.h"')
    return "\n".join(lines) + "\n"


def _host_grid_build(name: str, defines: tuple[tuple[str, Any], ...], tsan: bool, source: str | None = None) -> Path:
    """Build (once per content hash) the grid host build of one kernel file.

    ``tsan=False``: a shared library loaded with ctypes; ``tsan=True``: a standalone
    driver executable built with ``-fsanitize=thread``.
    """
    kdir = kernel_dir()
    cxx = _cxx()
    src = kernel_source_inlined(name) if source is None else source
    if _INCLUDE.search(src):
        raise ValueError(f"the source of {name} still has #include \"...\" lines: give it with headers inlined")
    wrapper = _grid_wrapper(name, src, tsan)
    flags = list(_HOST_FLAGS) + list(_define_options(defines))
    flags += ["-fsanitize=thread", "-g"] if tsan else ["-shared", "-fPIC"]
    digest = hashlib.sha256()
    for part in (wrapper, (kdir / "host_grid.h").read_text(), (kdir / "host_grid_driver.h").read_text(),
                 " ".join(flags), cxx):
        digest.update(part.encode() + b"\0")
    out = _host_cache_dir()
    label = re.sub(r"\W", "_", name)[:40]
    target = out / f"vbgrid_{label}_{'tsan' if tsan else 'plain'}_{digest.hexdigest()[:16]}{'' if tsan else '.so'}"
    if target.exists():
        return target
    src = out / f"{target.name}.{os.getpid()}.cpp"
    src.write_text(wrapper, encoding="utf-8")
    tmp = out / f"{target.name}.{os.getpid()}.tmp"
    cmd = [cxx, *flags, "-include", str(kdir / "host_grid.h"), f"-I{kdir}", str(src), "-o", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    src.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise KernelCompileError(f"grid host build of {name}.cu ({'tsan' if tsan else 'plain'}) failed:\n{proc.stderr}")
    os.replace(tmp, target)
    return target


def _host_grid_library(name: str, defines: tuple[tuple[str, Any], ...], source: str | None = None) -> ctypes.CDLL:
    return _load_host_grid(_host_grid_build(name, defines, False, source))


@functools.cache
def _load_host_grid(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.vbhost_launch.restype = ctypes.c_int
    lib.vbhost_launch.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.vbhost_params.restype = ctypes.c_char_p
    lib.vbhost_params.argtypes = [ctypes.c_char_p]
    return lib


def _parse_params(desc: str) -> list[HostParam]:
    params = []
    for item in filter(None, desc.split(";")):
        pointer = item[0] == "p"
        rest = item[1:]
        const = rest.startswith("c")
        rest = rest[1:] if const else rest
        params.append(HostParam(pointer=pointer, kind=rest[0], size=int(rest[1:]), const=const))
    return params


def defines_from_options(options: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """The ``-DNAME=VALUE`` macros among NVRTC/CuPy options, in order (others ignored)."""
    out = []
    for o in options:
        if o.startswith("-D") and len(o) > 2:
            key, _, value = o[2:].partition("=")
            out.append((key, value or "1"))
    return tuple(out)


def host_kernel_params(cu_name: str, kernel_name: str, defines: Iterable[tuple[str, Any]] = (),
                       source: str | None = None) -> list[HostParam]:
    """Parameter list of one kernel, as the host C++ compiler sees it (no text parsing).

    Raises
    ------
    ValueError
        When ``kernel_name`` is not an ``extern "C" __global__`` kernel of the file.
    """
    lib = _host_grid_library(cu_name, tuple(defines), source)
    desc = lib.vbhost_params(kernel_name.encode())
    if desc is None:
        names = _ENTRY.findall(source) if source is not None else kernel_entry_points(cu_name)
        raise ValueError(f"{cu_name}.cu has no kernel {kernel_name!r}; it defines {', '.join(names)}")
    return _parse_params(desc.decode())


def _dims(value: int | Sequence[int], what: str) -> tuple[int, int, int]:
    dims = (int(value),) if np.isscalar(value) else tuple(int(v) for v in value)  # type: ignore[arg-type]
    if not 1 <= len(dims) <= 3 or any(d < 1 for d in dims):
        raise ValueError(f"{what} must be 1 to 3 positive integers, got {value!r}")
    return (dims + (1, 1))[:3]  # type: ignore[return-value]


_KIND = {"i": "i", "u": "u", "f": "f", "b": "b"}


def _check_args(cu_name: str, kernel_name: str, params: list[HostParam], args: Sequence[Any]) -> None:
    where = f"{cu_name}.cu:{kernel_name}"
    if len(args) != len(params):
        raise TypeError(f"{where} takes {len(params)} arguments, got {len(args)}")
    for i, (p, a) in enumerate(zip(params, args)):
        if p.pointer:
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{where} argument {i} is {p.c_type()}: pass a NumPy array, got {type(a).__name__}")
            if not a.flags.c_contiguous:
                raise TypeError(f"{where} argument {i}: the array must be C-contiguous")
            if p.kind not in ("v", "r") and (a.dtype.itemsize != p.size or _KIND.get(a.dtype.kind) != p.kind) \
                    and not (p.size == 1 and a.dtype.itemsize == 1 and a.dtype.kind in "iub"):
                raise TypeError(f"{where} argument {i} is {p.c_type()}, got an array of {a.dtype}")
            if not p.const and not a.flags.writeable:
                raise TypeError(f"{where} argument {i} is {p.c_type()} (written): the array is read-only")
        else:
            if not isinstance(a, np.generic):
                raise TypeError(f"{where} argument {i} is {p.c_type()}: pass a NumPy scalar "
                                f"(e.g. np.{np.dtype(f'{p.kind}{p.size}').name}), got {type(a).__name__}")
            if a.dtype.itemsize != p.size or _KIND.get(a.dtype.kind) != p.kind:
                raise TypeError(f"{where} argument {i} is {p.c_type()}, got a {a.dtype} scalar")


def host_grid_launch(
    cu_name: str,
    kernel_name: str,
    grid: int | Sequence[int],
    block: int | Sequence[int],
    args: Sequence[Any],
    *,
    shared_mem: int = 0,
    order: str = "forward",
    order_seed: int = 0,
    ftz: bool = False,
    tsan: bool = False,
    workers: int = 4,
    defines: Iterable[tuple[str, Any]] = (),
    source: str | None = None,
) -> None:
    """Run one kernel of ``kernels/<cu_name>.cu`` on CPU threads with its real launch configuration.

    Every (block, thread) of ``grid`` × ``block`` runs: blocks are taken by a pool of
    ``workers`` ``std::thread``\\ s in ``order``, a block's threads run as fibers of one
    worker (so ``__syncthreads``, shared memory and 32-lane warp shuffles behave as on a
    device), thread and block indices are ``thread_local`` and atomics are GCC
    ``__atomic`` builtins. Array arguments are written in place.

    Parameters
    ----------
    cu_name : str
        Kernel file stem in ``kernels/`` (e.g. ``"remodel"``).
    kernel_name : str
        An ``extern "C" __global__`` kernel of that file.
    grid, block : int or tuple of int
        Launch configuration, as given to CuPy (x, y, z); ``block`` at most 1024 threads.
    args : sequence
        C-contiguous NumPy arrays for pointer parameters (dtype itemsize and kind must
        match the pointee) and NumPy scalars of exactly the parameter's type for values.
    shared_mem : int
        Dynamic shared memory per block in bytes (``VB_EXTERN_SHARED`` in a kernel).
    order : {"forward", "reverse", "shuffled"}
        Order in which blocks (and the threads of a block) are started.
    order_seed : int
        Seed of the ``"shuffled"`` permutation.
    ftz : bool
        Set the FTZ and DAZ bits of MXCSR in every worker: float32 subnormals flush to
        zero as on a device compiled with ``-ftz=true`` (CuPy's default). On the CPU this
        also flushes float64 subnormals, which the device does not.
    tsan : bool
        Run the launch in a ThreadSanitizer build (a separate driver process, so the
        sanitizer runtime never enters Python); any report raises :class:`HostRaceError`.
    workers : int
        Number of worker threads (under ``tsan``, at most 6000 / threads per block).
    defines : iterable of (str, value)
        ``-D`` macros, as given to :func:`get_function`.
    source : str, optional
        Build this source string instead of ``kernels/<cu_name>.cu`` (headers must be
        inlined, as in the string :func:`get_function` gives CuPy, e.g.
        :func:`specialised_source`; kernel names are then as in that string). ``cu_name``
        only labels the build. Pass the ``-D`` options as ``defines``
        (:func:`defines_from_options`).

    Raises
    ------
    TypeError
        An argument does not match the kernel's parameter (message names it).
    ValueError
        Bad launch configuration or unknown kernel.
    HostRaceError
        ``tsan=True`` and ThreadSanitizer reported a race.
    RuntimeError
        The launch failed (e.g. a ``__syncthreads()`` not reached by every thread).
    """
    defines = tuple(defines)
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {', '.join(_ORDERS)}, got {order!r}")
    g, b = _dims(grid, "grid"), _dims(block, "block")
    if b[0] * b[1] * b[2] > 1024:
        raise ValueError(f"a block holds at most 1024 threads, got {b}")
    if shared_mem < 0 or workers < 1:
        raise ValueError("shared_mem must be >= 0 and workers >= 1")
    if tsan:  # every thread of a worker's block is a sanitizer thread; older runtimes cap them near 8192
        workers = max(1, min(workers, 6000 // (b[0] * b[1] * b[2])))
    params = host_kernel_params(cu_name, kernel_name, defines, source)
    _check_args(cu_name, kernel_name, params, args)
    # vbh::Config in kernels/host_grid.h (56 bytes, x86-64 alignment: 4 bytes of padding before the seed)
    cfg = struct.pack("<3I3IQi4xQii", *g, *b, shared_mem, _ORDERS[order], order_seed & (2**64 - 1), int(ftz), workers)
    if tsan:
        _tsan_launch(cu_name, kernel_name, cfg, args, defines, params, source)
        return
    lib = _host_grid_library(cu_name, defines, source)
    keep: list[Any] = []
    argv = (ctypes.c_void_p * max(len(args), 1))()
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            holder = ctypes.c_void_p(a.ctypes.data if a.size else 0)
        else:
            holder = ctypes.create_string_buffer(a.tobytes(), max(a.dtype.itemsize, 8))
        keep.append(holder)
        argv[i] = ctypes.cast(ctypes.pointer(holder), ctypes.c_void_p) if isinstance(holder, ctypes.c_void_p) \
            else ctypes.cast(holder, ctypes.c_void_p)
    cfg_buf = ctypes.create_string_buffer(cfg, len(cfg))
    err = ctypes.create_string_buffer(512)
    rc = lib.vbhost_launch(kernel_name.encode(), cfg_buf, argv, err, len(err))
    if rc != 0:
        raise RuntimeError(f"{cu_name}.cu:{kernel_name} host grid launch failed: {err.value.decode(errors='replace')}")


def _tsan_launch(cu_name: str, kernel_name: str, cfg: bytes, args: Sequence[Any], defines: tuple,
                 params: list[HostParam], source: str | None) -> None:
    exe = _host_grid_build(cu_name, defines, True, source)
    arrays: list[np.ndarray] = []
    written: set[int] = set()
    index: dict[tuple[int, int], int] = {}
    spec = bytearray(b"VBH1")
    spec += struct.pack("<I", len(kernel_name)) + kernel_name.encode() + cfg
    refs = []
    for a, p in zip(args, params):
        if isinstance(a, np.ndarray):
            key = (a.ctypes.data, a.nbytes)
            if key not in index:
                for other in arrays:
                    if np.shares_memory(a, other):
                        raise ValueError("tsan=True: two array arguments overlap without being the same array")
                index[key] = len(arrays)
                arrays.append(a)
            if not p.const:
                written.add(index[key])
            refs.append(struct.pack("<BI", 0, index[key]))
        else:
            data = a.tobytes()
            refs.append(struct.pack("<BI", 1, len(data)) + data)
    spec += struct.pack("<I", len(arrays))
    for a in arrays:
        spec += struct.pack("<Q", a.nbytes) + a.tobytes()
    spec += struct.pack("<I", len(refs)) + b"".join(refs)
    with tempfile.TemporaryDirectory(prefix="vbtsan") as tmp:
        spec_path, out_path = Path(tmp) / "spec", Path(tmp) / "out"
        spec_path.write_bytes(bytes(spec))
        env = dict(os.environ)
        env["TSAN_OPTIONS"] = "halt_on_error=1 exitcode=66 second_deadlock_stack=1 " + env.get("TSAN_OPTIONS", "")
        env.pop("LD_PRELOAD", None)
        cmd = [str(exe), str(spec_path), str(out_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if "unexpected memory mapping" in proc.stderr and shutil.which("setarch"):
            # kernels with high mmap randomisation (vm.mmap_rnd_bits = 32) defeat older TSan
            # runtimes; without address-space randomisation the layout is the expected one
            import platform  # noqa: PLC0415

            proc = subprocess.run(["setarch", platform.machine(), "-R", *cmd], capture_output=True, text=True, env=env)
        if proc.returncode != 0 or "ThreadSanitizer" in proc.stderr:
            raise HostRaceError(
                f"{cu_name}.cu:{kernel_name} under ThreadSanitizer (exit {proc.returncode}):\n{proc.stderr[-8000:]}")
        data = out_path.read_bytes()
    pos = 0
    for k, a in enumerate(arrays):
        if k in written:  # const arrays were only read
            np.copyto(a, np.frombuffer(data, dtype=a.dtype, count=a.size, offset=pos).reshape(a.shape))
        pos += a.nbytes
