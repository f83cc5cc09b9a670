"""The benchmark cases of ``voxelbone bench`` and ``benchmarks/*.py``.

Groups:

* ``kernels`` — the remodeling step and its parts (activation, claims, update) on the
  site phantom; GPU cases carry the bytes a step must move (every state array read and
  written once, plus the claim scratch array);
* ``metrics`` — local thickness, Euler characteristic, EDT, marching-cubes surface and the
  whole per-step metric set, each beside the reference library that computes the same
  thing (porespy, scikit-image, SciPy, ITK BoneMorphometry);
* ``scenario`` — a short postmenopausal run with metrics every 30 days: simulated years
  per second of wall time;
* ``transfer`` — host↔device copy of a volume (GPU only), counted apart from the rest;
* ``mechanics`` — the micro-FE apparent modulus of the phantom (both boundary conditions,
  rtol 1e-6) with iterations, time per iteration and the solver's bytes per voxel;
  ParOSol beside it runs from ``benchmarks/bench_fe.py`` (GPL: its own environment).
  Run only when named: ``voxelbone bench --cases mechanics --sizes 64,128``.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Sequence

import numpy as np

from .backend import Backend, cupy_available, get_backend
from .bench import (
    Case,
    Measurement,
    compare_records,
    device_copy_bandwidth,
    environment,
    format_table,
    link_references,
    load_record,
    measure,
    skip,
    write_record,
)

__all__ = ["CASES", "bench_cli", "run_bench"]

QUICK_SIZES = (64, 96)
DEFAULT_SIZES = (128, 256, 512)


def _phantom(be: Backend, size: int) -> Any:
    from .phantom import make_phantom  # noqa: PLC0415

    if size < 48:
        skip("phantoms need at least 48³")
    return make_phantom("lumbar_spine", size, 30.0, seed=1).to(be.xp)


def _rates() -> Any:
    from .biology import RemodelingRates  # noqa: PLC0415

    return RemodelingRates(0.45, 0.1, 55.0, 0.8, 0.8)


# ----------------------------------------------------------------------------- kernels
def _warm_engine(be: Backend, size: int) -> tuple[Any, Any]:
    """An engine on the site phantom with a remodeling space in flight (30 steps of 5 days), as in a run."""
    from .remodel import Remodeler  # noqa: PLC0415

    rem = Remodeler(_phantom(be, size), seed=1)
    rates = _rates()
    for k in range(30):
        rem.step(k, rates, 5)
    return rem, rates


def _step(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    from .remodel.state import RemodelState  # noqa: PLC0415

    rem, rates = _warm_engine(be, size)
    k = [30]

    def fn() -> None:
        rem.step(k[0], rates, 1)
        k[0] += 1

    n = size**3
    return fn, {"bytes_moved": n * (2 * RemodelState.bytes_per_voxel() + 16)}


#: bytes a voxel outside any BMU must move in each launch (reads + writes), the floor
_PART_BYTES_PER_VOXEL = {
    "activate": 4 + 1 + 2,                  # bone (stencil cached), region, bmu_day
    "update": 8 + 2 + 3 * 4 + 3 * 4,        # claim, bmu_day; bone/mineral/osteoid read and written
}


def _part(part: str) -> Callable[[Backend, int], tuple[Callable[[], Any], dict[str, Any]]]:
    """One launch of the step (GPU: the CUDA kernel; CPU: the NumPy twin)."""
    def setup(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
        from .remodel import cpu  # noqa: PLC0415
        from .remodel.state import step_scalars  # noqa: PLC0415

        rem, rates = _warm_engine(be, size)
        sc = step_scalars(rates, rem.params, rem.voxel_size_um, 1)
        st = rem.state
        n = size**3
        info = {"bytes_moved": n * _PART_BYTES_PER_VOXEL[part]} if part in _PART_BYTES_PER_VOXEL else {}
        if be.is_gpu:
            g = rem._gpu
            g.activate(st, 1, 99, sc)
            if part == "activate":
                return (lambda: g.activate(st, 1, 99, sc)), info
            if part == "claim":
                return (lambda: g.claim_cavities(st, 1, 99, sc)), info
            return (lambda: g.update(st, sc)), info
        if part == "activate":
            return (lambda: cpu.activate(st, 1, 99, sc)), info
        seeds = cpu.activate(st, 1, 99, sc)
        if part == "claim":
            return (lambda: cpu.claim(st, seeds, 1, 99, sc)), info
        empty_i, empty_c = np.empty(0, np.int64), np.empty(0, np.uint64)
        return (lambda: cpu.update(st, empty_i, empty_c, sc)), info
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
        from scipy import ndimage as ndi  # noqa: PLC0415

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
    from .metrics import local_thickness  # noqa: PLC0415

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
        from .backend import asnumpy  # noqa: PLC0415

        m = _structure(size)[phase]
        if impl == "voxelbone":
            from .metrics import local_thickness  # noqa: PLC0415

            dm = be.xp.asarray(m)
            run: Callable[[], Any] = lambda: local_thickness(dm, 1.0)  # noqa: E731
        elif impl == "porespy":
            import porespy  # noqa: PLC0415

            run = lambda: porespy.filters.local_thickness(m, method="dt", smooth=False)  # noqa: E731
        else:
            import localthickness  # noqa: PLC0415

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
    from .metrics import euler_characteristic  # noqa: PLC0415

    _, m = _mask(be, size)
    return (lambda: euler_characteristic(m)), {"bytes_moved": 2 * size**3}


def _euler_skimage(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    from skimage.measure import euler_number  # noqa: PLC0415

    _, m = _mask(be, size)
    return (lambda: euler_number(m, connectivity=3)), {}


def _edt(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    import edt  # noqa: PLC0415

    if be.is_gpu:
        skip("edt runs on the CPU")
    _, m = _mask(be, size)
    return (lambda: edt.edt(m, parallel=0)), {}


def _edt_scipy(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    from scipy.ndimage import distance_transform_edt  # noqa: PLC0415

    _, m = _mask(be, size)
    return (lambda: distance_transform_edt(m)), {}


def _surface(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    from .metrics import bone_surface_mm2  # noqa: PLC0415

    vox, m = _mask(be, size)
    return (lambda: bone_surface_mm2(m, vox)), {}


def _surface_skimage(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    from scipy.ndimage import gaussian_filter  # noqa: PLC0415
    from skimage.measure import marching_cubes, mesh_surface_area  # noqa: PLC0415

    vox, m = _mask(be, size)

    def fn() -> float:  # the same smoothed field and iso-level as bone_surface_mm2
        verts, faces, _, _ = marching_cubes(gaussian_filter(m.astype(np.float32), 0.7), 0.5, allow_degenerate=False)
        return mesh_surface_area(verts, faces) * (vox / 1000.0) ** 2
    return fn, {}


def _morphometry(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    from .metrics import morphometry  # noqa: PLC0415

    v = _phantom(be, size)
    return (lambda: morphometry(v)), {}


def _plate_model(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    from .metrics import bone_surface_mm2  # noqa: PLC0415

    vox, m = _mask(be, size)

    def fn() -> tuple[float, float]:
        bv = float(m.sum())
        return bv / m.size, bone_surface_mm2(m, vox) / max(bv, 1.0)
    return fn, {}


def _plate_model_itk(be: Backend, size: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    import itk  # noqa: PLC0415

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
    from .scenario import Period, Scenario  # noqa: PLC0415
    from .simulate import simulate  # noqa: PLC0415

    years = 0.25
    sc = Scenario(name="bench", site="lumbar_spine", periods=(Period("postmenopausal_untreated", years),), size=size,
                  seed=1, step_days=1, metrics_every_days=30, spin_up_days=10)
    return (lambda: simulate(sc, None, backend=be, progress=False, render=False)), {"simulated_years": years}


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
        Case groups or case names to run (default all).
    repeats
        Timed repeats per case (after one warm-up).
    quick_scenario
        Run the scenario case at the smallest size only.
    """
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


def bench_cli(args: argparse.Namespace) -> int:
    """``voxelbone bench``."""
    if args.compare:
        print(compare_records(load_record(args.compare[0]), load_record(args.compare[1])))
        return 0
    if args.sizes:
        try:
            sizes = tuple(int(s) for s in args.sizes.split(","))
        except ValueError:
            raise ValueError(f"--sizes must be comma-separated integers, got {args.sizes!r}") from None
        if any(s < 16 for s in sizes):
            raise ValueError(f"sizes must be at least 16 voxels, got {sizes}")
    else:
        sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    if args.backend == "all":
        backends = ["numpy", "cupy"] if cupy_available() else ["numpy"]
    elif args.backend == "auto":
        backends = [get_backend("auto").name]
    else:
        backends = [args.backend]
    repeats = args.repeats or (2 if args.quick else 5)
    groups = args.cases.split(",") if args.cases else None
    ms, env = run_bench(sizes, backends, groups=groups, repeats=repeats,
                        progress=lambda s: print(f"  {s}", flush=True), quick_scenario=bool(args.quick))
    print()
    print(format_table(ms))
    for m in ms:
        if m.ok and "achieved_gb_per_s" in m.extra:
            print(f"{m.case} {m.size}³: {m.extra['achieved_gb_per_s']:.1f} GB/s host to device")
        if m.ok and "years_per_second" in m.extra:
            print(f"{m.case} {m.size}³ {m.backend}: {m.extra['years_per_second']:.3g} simulated years per second")
    if env.get("device_copy_bandwidth_bytes_per_s"):
        print(f"device copy bandwidth: {env['device_copy_bandwidth_bytes_per_s'] / 1e9:.0f} GB/s")
    if args.json:
        write_record(args.json, ms, env, {"sizes": list(sizes), "backends": backends, "quick": bool(args.quick)})
        print(f"record: {args.json}")
    return 0
