"""The benchmark cases of ``voxelbone bench`` and ``benchmarks/*.py``.

Groups:

* ``kernels`` — the remodeling step and its parts (activation, claims, update) on the
  site phantom; GPU cases carry the bytes the step's kernels move per voxel, read off their
  loads and stores (:data:`STEP_KERNEL_TRAFFIC`: 46 bytes per voxel for a step);
* ``metrics`` — local thickness, Euler characteristic, EDT, marching-cubes surface and the
  whole per-step metric set, each beside the reference library that computes the same
  thing (porespy, scikit-image, SciPy, ITK BoneMorphometry);
* ``scenario`` — a short postmenopausal run with metrics every 30 days: simulated years
  per second of wall time; and one year of the default scenario (``scenario.default_1yr``,
  at 128³ and at the site's default size only: ``--cases scenario.default_1yr --sizes 128,160``);
* ``transfer`` — host↔device copy of a volume (GPU only), counted apart from the rest;
* ``mechanics`` — the micro-FE apparent modulus of the phantom (both boundary conditions,
  rtol 1e-6) with iterations, time per iteration and the solver's bytes per voxel;
  ParOSol beside it runs from ``benchmarks/bench_fe.py`` (GPL: its own environment).
  Run only when named: ``voxelbone bench --cases mechanics --sizes 64,128``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import edt
import numpy as np
from scipy import ndimage as ndi
from scipy.ndimage import distance_transform_edt, gaussian_filter
from skimage.measure import euler_number, marching_cubes, mesh_surface_area

from .backend import Backend, asnumpy, cupy_available, get_backend
from .bench import (
    Case,
    Measurement,
    device_copy_bandwidth,
    environment,
    link_references,
    measure,
    skip,
)
from .biology import RemodelingRates
from .metrics import bone_surface_mm2, euler_characteristic, local_thickness, morphometry
from .phantom import make_phantom
from .remodel import Remodeler
from .remodel import cpu as remodel_cpu
from .remodel.state import RemodelState, step_scalars
from .scenario import DEFAULT_PRESET, Period, Scenario
from .simulate import simulate
from .sites import get_site

__all__ = ["CASES", "DEFAULT_SIZES", "QUICK_SIZES", "STEP_KERNEL_TRAFFIC", "kernel_bytes_per_voxel", "run_bench",
           "step_bytes_per_voxel"]

QUICK_SIZES = (64, 96)
DEFAULT_SIZES = (128, 256, 512)


_phantoms: dict[int, Any] = {}


def _phantom(be: Backend, size: int) -> Any:
    """The lumbar phantom at 30 µm, built once per size (minutes at 512³ on a few cores), a fresh copy per case."""
    if size < 48:
        skip("phantoms need at least 48³")
    if size not in _phantoms:
        _phantoms.clear()  # one size at a time: 1.2 GB of host memory at 512³
        _phantoms[size] = make_phantom("lumbar_spine", size, 30.0, seed=1)
    v = _phantoms[size]
    return v.copy() if be.xp is np else v.to(be.xp)


def _rates() -> Any:
    return RemodelingRates(0.45, 0.1, 55.0, 0.8, 0.8)


# ----------------------------------------------------------------------------- kernels
def _warm_engine(be: Backend, size: int) -> tuple[Any, Any]:
    """An engine on the site phantom with a remodeling space in flight (30 steps of 5 days), as in a run."""
    rem = Remodeler(_phantom(be, size), seed=1)
    rates = _rates()
    for k in range(30):
        rem.step(k, rates, 5)
    return rem, rates


def _step(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    rem, rates = _warm_engine(be, size)
    k = [30]

    def fn() -> None:
        rem.step(k[0], rates, 1)
        k[0] += 1

    return fn, {"bytes_moved": size**3 * step_bytes_per_voxel()}


#: Global-memory traffic of the step's kernels (``kernels/remodel.cu``) per voxel outside any
#: BMU — the steady state of all but a few per cent of the voxels —, in bytes: the arrays each
#: kernel loads and stores for such a voxel, each element counted once (the 6-neighbour
#: ``bone`` stencil of ``vb_activate`` is served by the cache: neighbouring threads read it).
#:
#: * ``vb_activate`` reads ``region``, then ``bmu_day`` and ``bone`` (tests for a surface
#:   voxel not yet in a BMU); it writes only the few seeds.
#: * ``vb_claim`` runs one block per seed over that seed's cavity box: its traffic scales with
#:   the seeds (~10⁻⁴ of the voxels per day), not with the grid, and is left out.
#: * ``vb_update`` reads ``claim``, ``bmu_day``, ``bmu_flags``, ``bmu_amount``, ``bone``,
#:   ``mineral``, ``osteoid`` for every voxel and writes ``bone``, ``mineral``, ``osteoid``
#:   back (unconditionally); ``bmu_*`` and ``claim`` are written only inside BMUs.
#:
#: 7 + 39 = 46 bytes per voxel: the step's memory-bandwidth floor. (Until 2026-11 the floor
#: assumed every state array read and written plus the claim scratch, 60 bytes, which made
#: ``ratio_to_floor`` look ~1.3× better than it was.) ``tests/test_device_path.py`` checks
#: every name against the kernel's signature and each size against the parameter's C type.
STEP_KERNEL_TRAFFIC: dict[str, dict[str, dict[str, int]]] = {
    "vb_activate": {"reads": {"region": 1, "bmu_day": 2, "bone": 4}, "writes": {}},
    "vb_update": {
        "reads": {"claim": 8, "bmu_day": 2, "bmu_flags": 1, "bmu_amount": 4, "bone": 4, "mineral": 4, "osteoid": 4},
        "writes": {"bone": 4, "mineral": 4, "osteoid": 4},
    },
}


def kernel_bytes_per_voxel(kernel: str) -> int:
    """Bytes one launch of ``kernel`` moves per voxel outside any BMU (reads + writes)."""
    t = STEP_KERNEL_TRAFFIC[kernel]
    return sum(t["reads"].values()) + sum(t["writes"].values())


def step_bytes_per_voxel() -> int:
    """Bytes a remodeling step moves per voxel (all its grid-wide kernels): the bandwidth floor."""
    return sum(kernel_bytes_per_voxel(k) for k in STEP_KERNEL_TRAFFIC)


_PART_KERNEL = {"activate": "vb_activate", "update": "vb_update"}


def _part(part: str) -> Callable[[Backend, int], tuple[Callable[[], Any], dict[str, Any]]]:
    """One launch of the step (GPU: the CUDA kernel; CPU: the NumPy twin)."""
    def setup(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
        rem, rates = _warm_engine(be, size)
        sc = step_scalars(rates, rem.params, rem.voxel_size_um, 1)
        st = rem.state
        n = size**3
        info = {"bytes_moved": n * kernel_bytes_per_voxel(_PART_KERNEL[part])} if part in _PART_KERNEL else {}
        if be.is_gpu:
            g = rem._gpu
            g.activate(st, 1, 99, sc)
            if part == "activate":
                return (lambda: g.activate(st, 1, 99, sc)), info
            if part == "claim":
                return (lambda: g.claim_cavities(st, 1, 99, sc)), info
            return (lambda: g.update(st, sc)), info
        if part == "activate":
            return (lambda: remodel_cpu.activate(st, 1, 99, sc)), info
        seeds = remodel_cpu.activate(st, 1, 99, sc)
        if part == "claim":
            return (lambda: remodel_cpu.claim(st, seeds, 1, 99, sc)), info
        empty_i, empty_c = np.empty(0, np.int64), np.empty(0, np.uint64)
        return (lambda: remodel_cpu.update(st, empty_i, empty_c, sc)), info
    return setup


# ----------------------------------------------------------------------------- metrics
_BVTV = 0.19
_structures: dict[int, dict[str, np.ndarray]] = {}
_exact_means: dict[tuple[int, str], float] = {}


def _structure(size: int) -> dict[str, np.ndarray]:
    """A random trabecular structure at BV/TV 0.19 (bone) and its complement (marrow), host arrays.

    The band ``|f| < t`` of Gaussian-smoothed noise (σ = 3 voxels) is a connected network of
    curved plates and rods whose scale does not change with the grid size, so times at
    128³, 256³ and 512³ compare the same structure on more voxels.
    """
    if size not in _structures:
        f = ndi.gaussian_filter(np.random.default_rng(size).standard_normal((size,) * 3, dtype=np.float32), 3.0,
                                mode="wrap")
        np.abs(f, out=f)
        bone = f < np.quantile(f[:: max(size // 64, 1)], _BVTV)
        _structures[size] = {"bone": bone, "marrow": ~bone}
    return _structures[size]


def _mask(be: Backend, size: int) -> tuple[float, Any]:
    """Voxel size (µm) and the random structure's bone on the backend."""
    return 30.0, be.xp.asarray(_structure(size)["bone"])


def _exact_mean_um(size: int, phase: str) -> float:
    """Mean of the exact local-thickness map (CPU path) over the phase, in voxels (computed once per size)."""
    if (size, phase) not in _exact_means:
        m = _structure(size)[phase]
        _exact_means[(size, phase)] = float(local_thickness(m, 1.0)[m].mean())
    return _exact_means[(size, phase)]


def _thickness(phase: str, impl: str) -> Callable[[Backend, int], tuple[Callable[[], Any], dict[str, Any]]]:
    """Local thickness of bone (Tb.Th) or marrow (Tb.Sp) by one implementation, with its error.

    The error is the relative error of the map's mean over the phase against the exact map
    (this package's CPU path, checked against the definition in the tests); porespy and
    ``localthickness`` return radii, doubled here.
    """
    def setup(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
        m = _structure(size)[phase]
        if impl == "voxelbone" and be.is_gpu:  # device stages timed with events, the two sizing reads apart
            from .metrics.gpu import local_thickness_gpu  # noqa: PLC0415

            dm = be.xp.asarray(m)
            last_gpu: dict[str, Any] = {}

            def staged(clock: Any) -> None:
                last_gpu["map"] = local_thickness_gpu(dm, 1.0, clock=clock)

            def gpu_error() -> float:
                return float(asnumpy(last_gpu["map"])[m].mean()) / _exact_mean_um(size, phase) - 1.0
            return staged, {"clock": "stages", "error_of": gpu_error, "error_label": "mean vs exact"}
        if impl == "voxelbone":

            dm = be.xp.asarray(m)
            run: Callable[[], Any] = lambda: local_thickness(dm, 1.0)  # noqa: E731
        elif impl == "porespy":
            import porespy  # deferred: optional reference library (dev extra), slow import  # noqa: PLC0415

            run = lambda: porespy.filters.local_thickness(m, method="dt", smooth=False)  # noqa: E731
        else:
            import localthickness  # deferred: optional reference library (dev extra)  # noqa: PLC0415

            run = lambda: localthickness.local_thickness(m)  # noqa: E731
        scale = 1.0 if impl == "voxelbone" else 2.0
        last: dict[str, Any] = {}

        def fn() -> None:
            last["map"] = run()

        def error() -> float:
            mean = scale * float(asnumpy(last["map"])[m].mean())
            if impl == "voxelbone" and not be.is_gpu:  # this is the exact map: keep it, do not compute it again
                _exact_means.setdefault((size, phase), mean)
            return mean / _exact_mean_um(size, phase) - 1.0
        return fn, {"error_of": error, "error_label": "mean vs exact"}
    return setup


def _euler(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:

    _, m = _mask(be, size)
    if not be.is_gpu:
        return (lambda: euler_characteristic(m)), {}
    from .metrics.gpu import euler_gpu, euler_sum_device  # noqa: PLC0415

    # timed: the bool -> uint8 copy (1 B read, 1 B written) and vb_euler8 (1 B read; the
    # 2×2×2 neighbours come from cache), the sum staying on the device; checked after
    want = euler_characteristic(asnumpy(m))
    return (lambda: euler_sum_device(m)), {"bytes_moved": 3 * size**3,
                                           "error_of": lambda: float(euler_gpu(m) - want),
                                           "error_label": "χ vs CPU"}


def _euler_skimage(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    _, m = _mask(be, size)
    return (lambda: euler_number(m, connectivity=3)), {}


def _edt(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    if be.is_gpu:
        skip("edt runs on the CPU")
    _, m = _mask(be, size)
    return (lambda: edt.edt(m, parallel=0)), {}


def _edt_scipy(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    _, m = _mask(be, size)
    return (lambda: distance_transform_edt(m)), {}


def _surface(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:

    vox, m = _mask(be, size)
    if not be.is_gpu:
        return (lambda: bone_surface_mm2(m, vox)), {}
    from .metrics.gpu import surface_area_device  # noqa: PLC0415
    from .metrics.surface import smoothed_field  # noqa: PLC0415 - keeps this GPU-only case self-contained

    # timed: what bone_surface_mm2 queues (smoothing, cubes, the fixed-order sum), the area
    # staying a device scalar; it is read once, after the timed runs
    last: dict[str, Any] = {}

    def fn() -> None:
        last["area"] = surface_area_device(smoothed_field(m, None), 0.5)

    def error() -> float:
        return float(last["area"]) * (vox / 1000.0) ** 2 / bone_surface_mm2(m, vox) - 1.0
    return fn, {"error_of": error, "error_label": "vs bone_surface_mm2"}


def _surface_skimage(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    vox, m = _mask(be, size)

    def fn() -> float:  # the same smoothed field and iso-level as bone_surface_mm2
        verts, faces, _, _ = marching_cubes(gaussian_filter(m.astype(np.float32), 0.7), 0.5, allow_degenerate=False)
        return mesh_surface_area(verts, faces) * (vox / 1000.0) ** 2
    return fn, {}


def _morphometry(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:

    v = _phantom(be, size)
    # the metric set reads its scalars back as it goes (by design): timed as wall time
    return (lambda: morphometry(v)), {"clock": "wall"}


def _plate_model(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:

    vox, m = _mask(be, size)

    def fn() -> tuple[float, float]:
        bv = float(m.sum())
        return bv / m.size, bone_surface_mm2(m, vox) / max(bv, 1.0)
    return fn, {"clock": "wall"}  # reads BV back before BS: wall time on a GPU


def _plate_model_itk(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    import itk  # deferred: optional reference library (dev extra), slow import  # noqa: PLC0415

    vox, m = _mask(be, size)
    img = itk.image_from_array(np.asarray(m, dtype=np.int16))
    img.SetSpacing([vox / 1000.0] * 3)

    def fn() -> float:
        f = itk.BoneMorphometryFeaturesFilter.New(img)
        f.SetThreshold(1)
        f.Update()
        return float(f.GetBVTV())
    return fn, {}


# ----------------------------------------------------------------------------- scenario
def _scenario(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    years = 0.25
    sc = Scenario(name="bench", site="lumbar_spine", periods=(Period("postmenopausal_untreated", years),), size=size,
                  seed=1, step_days=1, metrics_every_days=30, spin_up_days=10)
    return (lambda: simulate(sc, None, backend=be, progress=False, render=False)), {"simulated_years": years,
                                                                                     "clock": "wall"}


#: Edges at which the default scenario's year is timed: 128³ (the 1-minute target) and the site's default.
DEFAULT_YEAR_SIZES = (128, get_site(Scenario().site).default_size)


def _default_year(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    """One simulated year of the default scenario (``voxelbone run`` without options, one year) at ``size``:
    daily steps, metrics every 30 days; phantom, spin-up and metrics included; at 128³ and the default size."""
    if size not in DEFAULT_YEAR_SIZES:
        skip(f"the default scenario's year is timed at {' and '.join(f'{s}³' for s in DEFAULT_YEAR_SIZES)}; "
             f"time it with --sizes {','.join(str(s) for s in DEFAULT_YEAR_SIZES)}")
    sc = dataclasses.replace(Scenario(), name="bench-default", periods=(Period(DEFAULT_PRESET, 1.0),), size=size)
    info: dict[str, Any] = {"simulated_years": 1.0, "clock": "wall"}

    def fn() -> None:
        # beside the wall time: this process's CPU time (all its threads) and the machine's load
        # average, so that a time taken on a shared machine can be read
        load0, cpu0 = os.getloadavg()[0], time.process_time()
        simulate(sc, None, backend=be, progress=False, render=False)
        info.update(process_cpu_s=time.process_time() - cpu0, load_average_1min=(load0 + os.getloadavg()[0]) / 2)
    return fn, info


# ----------------------------------------------------------------------------- transfer
def _transfer(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    if not be.is_gpu:
        skip("host-device transfer needs a GPU")
    host = np.random.default_rng(0).random((size, size, size), dtype=np.float32)
    # counted apart: its floor is the host link (PCIe/NVLink), not the device memory
    return (lambda: be.xp.asarray(host)), {"transfer_bytes": host.nbytes}


# ----------------------------------------------------------------------------- mechanics
#: Groups run only when named (``--cases mechanics``): minutes per size on a CPU.
OPT_IN_GROUPS = ("mechanics",)
#: Largest edge at which the CPU micro-FE solver is benchmarked (a 256³ solve takes many minutes on 2 cores).
FE_CPU_MAX_SIZE = 128


def _fe(boundary: str) -> Callable[[Backend, int], tuple[Callable[[], Any], dict[str, Any]]]:
    """Apparent modulus of the site phantom (rtol 1e-6): iterations, time per iteration, bytes per voxel."""

    def setup(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
        from .mechanics import apparent_modulus  # noqa: PLC0415

        if not be.is_gpu and size > FE_CPU_MAX_SIZE:
            skip(f"the CPU micro-FE solver is benchmarked up to {FE_CPU_MAX_SIZE}³")
        v = _phantom(be, size)
        info: dict[str, Any] = {}

        def fn() -> float:
            r = apparent_modulus(v, boundary=boundary, rtol=1e-6)
            info.update(iterations=r.iterations, s_per_iteration=r.solve_s / max(r.iterations, 1),
                        bone_elements=r.bone_elements, e_app_mpa=r.e_app_mpa,
                        **{("device_bytes_per_voxel" if be.is_gpu else "host_bytes_per_voxel"): r.state_bytes / size**3})
            return r.e_app_mpa
        return fn, info
    return setup


CASES: tuple[tuple[str, Case], ...] = (
    ("kernels", Case("remodel.step", _step)),
    ("kernels", Case("remodel.activate", _part("activate"))),
    ("kernels", Case("remodel.claim", _part("claim"))),
    ("kernels", Case("remodel.update", _part("update"))),
    ("metrics", Case("tb_th.local_thickness", _thickness("bone", "voxelbone"))),
    ("metrics", Case("tb_th.local_thickness", _thickness("bone", "porespy"), impl="porespy", backends=("numpy",))),
    ("metrics", Case("tb_th.local_thickness", _thickness("bone", "localthickness"), impl="localthickness",
                     backends=("numpy",))),
    ("metrics", Case("tb_sp.local_thickness", _thickness("marrow", "voxelbone"))),
    ("metrics", Case("tb_sp.local_thickness", _thickness("marrow", "porespy"), impl="porespy", backends=("numpy",))),
    ("metrics", Case("tb_sp.local_thickness", _thickness("marrow", "localthickness"), impl="localthickness",
                     backends=("numpy",))),
    ("metrics", Case("euler", _euler)),
    ("metrics", Case("euler", _euler_skimage, impl="skimage", backends=("numpy",))),
    ("metrics", Case("edt", _edt, backends=("numpy",))),  # voxelbone uses the edt package
    ("metrics", Case("edt", _edt_scipy, impl="scipy", backends=("numpy",))),
    ("metrics", Case("surface", _surface)),
    ("metrics", Case("surface", _surface_skimage, impl="skimage", backends=("numpy",))),
    ("metrics", Case("morphometry", _morphometry)),
    # BV/TV and BS/BV (ITK BoneMorphometry's feature set: plate-model Tb.Th/Tb.Sp/Tb.N follow from them)
    ("metrics", Case("plate_model", _plate_model)),
    ("metrics", Case("plate_model", _plate_model_itk, impl="itk-bonemorphometry", backends=("numpy",))),
    ("scenario", Case("scenario.pm_0.25yr", _scenario)),
    ("scenario", Case("scenario.default_1yr", _default_year)),
    ("transfer", Case("transfer.h2d", _transfer, backends=("cupy",))),
    ("mechanics", Case("fe.constrained", _fe("constrained"))),
    ("mechanics", Case("fe.frictionless", _fe("frictionless"))),
)


def run_bench(sizes: Sequence[int], backends: Sequence[str], *, groups: Sequence[str] | None = None,
              repeats: int = 3, progress: Callable[[str], None] | None = None,
              quick_scenario: bool = False) -> tuple[list[Measurement], dict[str, Any]]:
    """Run the cases and return the measurements and the environment record.

    Parameters
    ----------
    sizes
        Volume edges in voxels.
    backends
        ``"numpy"`` and/or ``"cupy"``.
    groups
        Case groups or case names to run (default all but :data:`OPT_IN_GROUPS`); an unknown
        name raises ``ValueError`` listing the known ones.
    repeats
        Timed repeats per case (after one warm-up).
    quick_scenario
        Run the scenario case at the smallest size only.
    """
    if groups:
        known_groups = list(dict.fromkeys(g for g, _ in CASES))
        known_cases = list(dict.fromkeys(c.name for _, c in CASES))
        unknown = [g for g in groups if g not in known_groups and g not in known_cases]
        if unknown:
            raise ValueError(f"unknown bench case or group {', '.join(map(repr, unknown))}; groups: "
                             f"{', '.join(known_groups)}; cases: {', '.join(known_cases)}")
    bes = [get_backend(b) for b in backends]
    gpu = next((b for b in bes if b.is_gpu), None)
    bandwidth = device_copy_bandwidth() if gpu is not None else None
    out: list[Measurement] = []
    for size in sizes:
        for group, case in CASES:
            if groups and group not in groups and case.name not in groups:
                continue
            if not groups and group in OPT_IN_GROUPS:
                continue
            for be in bes:
                if be.name not in case.backends:
                    continue
                if progress:
                    progress(f"{case.name} [{case.impl}] {size}³ {be.name}")
                if group == "scenario" and quick_scenario and size != min(sizes):
                    continue  # quick mode: one scenario size
                r = 1 if group == "scenario" else repeats
                m = measure(case, be, size, repeats=r, floor_bandwidth=bandwidth)
                if m.ok and "simulated_years" in m.extra:
                    m.extra["years_per_second"] = m.extra["simulated_years"] / m.median_s
                if m.ok and "transfer_bytes" in m.extra:
                    m.extra["achieved_gb_per_s"] = m.extra["transfer_bytes"] / m.median_s / 1e9
                out.append(m)
    link_references(out)
    env = environment(gpu)
    if bandwidth:
        env["device_copy_bandwidth_bytes_per_s"] = bandwidth
    return out, env
