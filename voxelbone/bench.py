"""Benchmark harness: honest timings with the physical floor beside each number.

* GPU cases are timed with CUDA events after warm-up (kernel compilation excluded), never
  with a host clock around asynchronous work; CPU cases with ``time.perf_counter``.
  Each case reports the median of its repeats and the spread (min–max). A GPU case's
  timed function queues device work only: no ``.get()``, ``int()``/``float()`` of a device
  value inside (results stay device scalars and are read after the stop event). Where a
  size must come back to the host (local thickness), the case is *staged*
  (``clock="stages"``): CUDA events around each device stage, summed, and the sizing
  stages' host time reported apart (``extra["sizing_s"]``). Whole pipelines that read
  values back by design (morphometry, a scenario) are timed as wall time
  (``clock="wall"``, the device synchronised at the end); ``extra["timing"]`` names the clock.
* GPU cases carry the bytes the kernels move (counted from each kernel's reads and writes
  per voxel, not measured), the device-to-device copy bandwidth measured in the same run,
  and the ratio of the achieved time to that memory-bandwidth floor.
* CPU cases are run beside the reference library that computes the same thing (porespy,
  ITK BoneMorphometry, edt, SciPy, scikit-image) in the same run, with the ratio.
* Peak device memory (CuPy pool) and peak host memory (resident set, sampled) per case;
  sizes that do not fit are skipped with the reason.
* The JSON record names the device, driver, CUDA and CuPy versions, CPU model, package
  version and git commit, so results from two machines can be compared
  (``voxelbone bench --compare A.json B.json``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ._version import __version__
from .backend import Backend, get_backend
from .results import write_json
from .runfolder import git_commit

__all__ = [
    "Case",
    "Measurement",
    "compare_records",
    "EventStages",
    "device_copy_bandwidth",
    "environment",
    "format_table",
    "measure",
    "time_cpu",
    "time_gpu",
    "time_gpu_stages",
    "time_wall",
]


@dataclass
class Measurement:
    """One timed case at one size on one implementation."""

    case: str
    size: int
    impl: str
    backend: str
    median_s: float = float("nan")
    min_s: float = float("nan")
    max_s: float = float("nan")
    repeats: int = 0
    bytes_moved: int | None = None
    floor_s: float | None = None
    ratio_to_floor: float | None = None
    ratio_to_reference: float | None = None
    reference: str | None = None
    error: float | None = None
    error_label: str | None = None
    peak_device_bytes: int | None = None
    peak_host_bytes: int | None = None
    skipped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the case ran."""
        return self.skipped is None


@dataclass(frozen=True)
class Case:
    """A benchmark case: ``setup(backend, size) -> (fn, info)``; ``fn()`` is what is timed.

    ``info`` may hold ``bytes_moved`` (int), ``reference`` (a name), ``error`` (a number) or
    ``error_of`` (called after the timed runs, e.g. to compare the last result with an exact
    answer) and ``error_label``.
    """

    name: str
    setup: Callable[[Backend, int], tuple[Callable[[], Any], dict[str, Any]]]
    impl: str = "voxelbone"
    backends: tuple[str, ...] = ("numpy", "cupy")
    group: str = ""


# ------------------------------------------------------------------------------------
# clocks
# ------------------------------------------------------------------------------------
def time_cpu(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall times of ``fn()`` in seconds (monotonic clock), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def time_gpu(fn: Callable[[], Any], repeats: int = 10, warmup: int = 2) -> list[float]:
    """Device times of ``fn()`` in seconds, measured with CUDA events on the current stream."""
    import cupy  # deferred: GPU only, heavy import  # noqa: PLC0415

    for _ in range(warmup):
        fn()
    cupy.cuda.get_current_stream().synchronize()
    out = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        out.append(cupy.cuda.get_elapsed_time(start, stop) / 1000.0)
    return out


class EventStages:
    """A stage clock (:class:`voxelbone.metrics.gpu.StageClock`) for one call of a staged case.

    ``stage("device", name)`` opens a stage bracketed by CUDA events on the current stream;
    ``stage("sizing", name)`` one timed by the host clock (it reads a value back, i.e.
    synchronises); each call closes the stage before it, ``stage(None, None)`` the last.
    """

    def __init__(self) -> None:
        self.device_events: list[tuple[str, Any, Any]] = []
        self.sizing_s = 0.0
        self._open: tuple[str, str, Any] | None = None

    def stage(self, kind: str | None, name: str | None) -> None:
        import cupy  # noqa: PLC0415

        if self._open is not None:
            open_kind, open_name, start = self._open
            if open_kind == "device":
                stop = cupy.cuda.Event()
                stop.record()
                self.device_events.append((open_name, start, stop))
            else:
                self.sizing_s += time.perf_counter() - start
            self._open = None
        if kind == "device":
            start = cupy.cuda.Event()
            start.record()
            self._open = ("device", str(name), start)
        elif kind == "sizing":
            self._open = ("sizing", str(name), time.perf_counter())
        elif kind is not None:
            raise ValueError(f"unknown stage kind {kind!r} (device, sizing or None)")

    def device_s(self) -> float:
        """Sum of the device stages' event times, in seconds (waits for the last stage)."""
        import cupy  # noqa: PLC0415

        if self._open is not None:
            raise RuntimeError(f"stage {self._open[1]!r} was never closed (stage(None, None))")
        if not self.device_events:
            return 0.0
        self.device_events[-1][2].synchronize()
        return sum(cupy.cuda.get_elapsed_time(a, b) for _, a, b in self.device_events) / 1000.0


def time_gpu_stages(fn: Callable[[EventStages], Any], repeats: int = 10,
                    warmup: int = 2) -> tuple[list[float], list[float]]:
    """Device time (sum of event-timed device stages) and sizing time of ``fn(clock)``, per repeat."""
    import cupy  # noqa: PLC0415

    for _ in range(warmup):
        fn(EventStages())
    cupy.cuda.get_current_stream().synchronize()
    device, sizing = [], []
    for _ in range(repeats):
        clock = EventStages()
        fn(clock)
        device.append(clock.device_s())
        sizing.append(clock.sizing_s)
    return device, sizing


def time_wall(fn: Callable[[], Any], backend: Backend, repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall times of ``fn()`` with the device synchronised before the start and at the end."""
    def run() -> None:
        fn()
        backend.synchronize()

    backend.synchronize()
    return time_cpu(run, repeats=repeats, warmup=warmup)


def device_copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    import cupy  # deferred: GPU only, heavy import  # noqa: PLC0415

    free = cupy.cuda.runtime.memGetInfo()[0]
    nbytes = int(min(nbytes, free // 4))
    a = cupy.empty(nbytes // 4, dtype=cupy.float32)
    b = cupy.empty_like(a)
    times = time_gpu(lambda: cupy.copyto(b, a), repeats=10, warmup=3)
    return 2.0 * nbytes / statistics.median(times)


class _HostPeak:
    """Peak resident set size of this process while active (sampled every 5 ms)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm", encoding="ascii") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(0.005)

    def __enter__(self) -> "_HostPeak":
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def measure(case: Case, backend: Backend, size: int, *, repeats: int, floor_bandwidth: float | None = None) -> Measurement:
    """Run one case: setup, warm-up, timed repeats, memory peaks; skip (with the reason) what does not fit."""
    m = Measurement(case.name, size, case.impl, backend.name)
    pool = None
    if backend.is_gpu:
        import cupy  # deferred: GPU only, heavy import  # noqa: PLC0415

        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()
    try:
        with _HostPeak() as host:
            fn, info = case.setup(backend, size)
            clock = info.pop("clock", "events") if backend.is_gpu else "host"
            sizing: list[float] = []
            if clock == "stages":
                times, sizing = time_gpu_stages(fn, repeats=repeats)
            elif clock == "wall":
                times = time_wall(fn, backend, repeats=repeats)
            elif clock == "events":
                times = time_gpu(fn, repeats=repeats)
            elif clock == "host":
                info.pop("clock", None)
                times = time_cpu(fn, repeats=repeats)
            else:
                raise ValueError(f"case {case.name}: unknown clock {clock!r} (events, stages or wall)")
        m.peak_host_bytes = host.peak
        if pool is not None:
            m.peak_device_bytes = int(pool.total_bytes())
    except MemoryError as exc:
        m.skipped = f"does not fit in memory ({exc})"
        return m
    except Exception as exc:  # an out-of-memory from CuPy, or a missing reference library
        name = type(exc).__name__
        if "OutOfMemory" in name or "out of memory" in str(exc).lower():
            m.skipped = "does not fit in device memory"
        elif isinstance(exc, ImportError):
            m.skipped = f"not installed: {exc.name or exc}"
        elif isinstance(exc, _Skip):
            m.skipped = str(exc)
        else:
            raise
        return m
    finally:
        if pool is not None:
            pool.free_all_blocks()
    m.repeats = len(times)
    m.median_s = statistics.median(times)
    m.min_s, m.max_s = min(times), max(times)
    m.bytes_moved = info.get("bytes_moved")
    m.reference = info.get("reference")
    m.error = info["error_of"]() if "error_of" in info else info.get("error")
    m.error_label = info.get("error_label")
    m.extra = {k: v for k, v in info.items() if k not in {"bytes_moved", "reference", "error", "error_of", "error_label"}}
    if backend.is_gpu:
        m.extra["timing"] = {"events": "CUDA events", "stages": "CUDA events, device stages summed; sizing apart",
                             "wall": "wall clock, device synchronised at the end"}[clock]
    if sizing:
        m.extra["sizing_s"] = statistics.median(sizing)
    if backend.is_gpu and m.bytes_moved and floor_bandwidth:
        m.floor_s = m.bytes_moved / floor_bandwidth
        m.ratio_to_floor = m.median_s / m.floor_s
    return m


class _Skip(Exception):
    """Raised by a case's setup to skip it with a reason."""


def skip(reason: str) -> None:
    """Skip the current case (from a setup function) with ``reason``."""
    raise _Skip(reason)


# ------------------------------------------------------------------------------------
# environment, output
# ------------------------------------------------------------------------------------
def environment(backend: Backend | None = None) -> dict[str, Any]:
    """Machine and software description for the JSON record."""
    env: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "voxelbone_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": get_backend("numpy").device,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    if backend is not None and backend.is_gpu:
        d = backend.details
        env.update(gpu=d.get("gpu"), cuda_runtime=d.get("cuda_runtime"), cuda_driver=d.get("cuda_driver"),
                   cupy=d.get("cupy"), compute_capability=d.get("compute_capability"),
                   gpu_memory_bytes=d.get("total_memory_bytes"))
    return env


def _fmt_s(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _fmt_b(b: int | None) -> str:
    if not b:
        return "-"
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= k:
            return f"{b / k:.1f} {unit}"
    return f"{b} B"


def format_table(measurements: Sequence[Measurement]) -> str:
    """A readable text table of measurements."""
    head = ["case", "size", "impl", "backend", "median", "spread", "×floor", "×ref", "error", "host peak", "dev peak"]
    rows = []
    for m in measurements:
        if m.skipped:
            rows.append([m.case, f"{m.size}³", m.impl, m.backend, "skipped: " + m.skipped, "", "", "", "", "", ""])
            continue
        spread = f"{_fmt_s(m.min_s)}–{_fmt_s(m.max_s)}"
        err = "-" if m.error is None else f"{m.error:+.1%}" + (f" {m.error_label}" if m.error_label else "")
        rows.append([
            m.case, f"{m.size}³", m.impl, m.backend, _fmt_s(m.median_s), spread,
            "-" if m.ratio_to_floor is None else f"{m.ratio_to_floor:.2f}",
            "-" if m.ratio_to_reference is None else f"{m.ratio_to_reference:.2f}",
            err, _fmt_b(m.peak_host_bytes), _fmt_b(m.peak_device_bytes),
        ])
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def link_references(measurements: Iterable[Measurement]) -> None:
    """Fill ``ratio_to_reference``: each voxelbone case vs the fastest reference of the same case and size."""
    ms = list(measurements)
    for m in ms:
        if m.impl != "voxelbone" or not m.ok:
            continue
        refs = [r for r in ms if r.case == m.case and r.size == m.size and r.impl != "voxelbone" and r.ok]
        if refs:
            best = min(refs, key=lambda r: r.median_s)
            m.ratio_to_reference = m.median_s / best.median_s
            m.reference = best.impl


def write_record(path: str | Path, measurements: Sequence[Measurement], env: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Write the JSON record (environment + measurements)."""
    write_json(path, {"environment": env, **(extra or {}),
                      "measurements": [dataclasses.asdict(m) for m in measurements]})


def compare_records(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Table of B/A time ratios for the cases both records hold."""
    def key(m: dict[str, Any]) -> tuple[Any, ...]:
        return (m["case"], m["size"], m["impl"], m["backend"])

    ma = {key(m): m for m in a["measurements"] if not m.get("skipped")}
    mb = {key(m): m for m in b["measurements"] if not m.get("skipped")}
    ea, eb = a["environment"], b["environment"]
    name_a = ea.get("gpu") or ea.get("cpu")
    name_b = eb.get("gpu") or eb.get("cpu")
    lines = [f"A: {name_a} ({ea.get('date')}, {ea.get('git_commit')})",
             f"B: {name_b} ({eb.get('date')}, {eb.get('git_commit')})", ""]
    head = ["case", "size", "impl", "backend", "A median", "B median", "B/A"]
    rows = []
    for k in sorted(set(ma) & set(mb), key=str):
        ta, tb = ma[k]["median_s"], mb[k]["median_s"]
        rows.append([k[0], f"{k[1]}³", k[2], k[3], _fmt_s(ta), _fmt_s(tb), f"{tb / ta:.2f}"])
    if not rows:
        return "\n".join(lines + ["no case appears in both records"])
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    lines.append("  ".join(c.ljust(w) for c, w in zip(head, widths)))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def load_record(path: str | Path) -> dict[str, Any]:
    """Read a JSON record written by :func:`write_record`."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"benchmark record not found: {p}")
    data = json.loads(p.read_text(encoding="utf-8"))
    if "measurements" not in data or "environment" not in data:
        raise ValueError(f"{p} is not a voxelbone benchmark record (no 'measurements'/'environment')")
    return data
