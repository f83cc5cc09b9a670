"""The device path's Python glue under CI: the real ``remodel/gpu.py``, ``metrics/gpu.py`` and
``simulate(backend=cupy)`` run through a NumPy-backed CuPy stand-in (``tests/fakecupy.py``)
that checks every kernel launch against the kernel's C signature and runs it on the host build.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fakecupy
from test_remodel import FAST, Rates
from voxelbone import backend as backend_mod
from voxelbone import kernels
from voxelbone.phantom import make_phantom
from voxelbone.remodel import Remodeler


def _clear_device_caches() -> None:
    from voxelbone.metrics import gpu as metrics_gpu

    kernels._module.cache_clear()
    metrics_gpu._surface_tables.cache_clear()
    metrics_gpu._euler_lut_device.cache_clear()


@pytest.fixture
def fake_cupy(monkeypatch):
    """CuPy replaced by the NumPy-backed stand-in for one test; the ``cupy`` backend resolves to it."""
    cp = fakecupy.install(monkeypatch)
    _clear_device_caches()
    fake = backend_mod._probe_cupy()  # the real probe: a device count, a tiny inline kernel, properties
    assert fake.xp is cp and fake.device == "NumPy stand-in"
    real_resolve = backend_mod._resolve
    monkeypatch.setattr(backend_mod, "_resolve", lambda name: fake if name == "cupy" else real_resolve(name))
    yield cp
    _clear_device_caches()


@pytest.fixture(params=["standin", pytest.param("cupy", marks=pytest.mark.gpu)])
def device_cupy(request):
    """The device array module: the stand-in everywhere (kernels on the grid host build: real
    launch configurations, shuffled block order, FTZ), and real CuPy on a GPU machine."""
    if request.param == "standin":
        yield request.getfixturevalue("fake_cupy")
        return
    import cupy

    _clear_device_caches()
    yield cupy
    _clear_device_caches()


def _is_standin(cp) -> bool:
    return cp is fakecupy.module


@pytest.fixture(scope="module")
def small():
    """A small femoral-neck-like phantom with trabeculae, cortex and canals (32³ voxels of 40 µm)."""
    return make_phantom("femoral_neck", 32, 40.0, seed=3, ct_th_um=320, tb_sp_um=450, bv_tv=0.2, tb_th_um=100)


def _twins(volume, xp, seed: int = 5) -> tuple[Remodeler, Remodeler]:
    """The NumPy twin and the device run (arrays of ``xp``) of the same volume and seed."""
    return Remodeler(volume.copy(), seed=seed), Remodeler(volume.to(xp), seed=seed)


def _assert_same_state(a: Remodeler, g: Remodeler, xp, when: str = "") -> None:
    """Every state array of the device run ``g`` equals the NumPy twin's, bit for bit."""
    for name, arr in a.state_arrays().items():
        np.testing.assert_array_equal(arr, xp.asnumpy(g.state_arrays()[name]), err_msg=name + when)


def _captured_launch(holder, name: str, run) -> tuple:
    """Kernel ``name`` of ``holder`` (an attribute, or a key of a dict) and the one launch ``run()``
    makes of it, captured instead of run: ``(kernel, (grid, block, args))``."""
    get = holder.__getitem__ if isinstance(holder, dict) else lambda key: getattr(holder, key)
    put = holder.__setitem__ if isinstance(holder, dict) else lambda key, value: setattr(holder, key, value)
    kernel, seen = get(name), []
    put(name, lambda grid, block, args, **kw: seen.append((grid, block, args)))
    run()
    assert len(seen) == 1
    return kernel, seen[0]


#: Wrong versions of a launch argument ``a`` (``cp``: the array module): name -> maker.
_WRONG = {
    "float16": lambda a, cp: a.astype(np.float16),
    "int32": lambda a, cp: a.astype(np.int32),
    "float64": lambda a, cp: a.astype(np.float64),
    "host": lambda a, cp: a.get(),
    "strided": lambda a, cp: cp.repeat(a, 2, axis=2)[:, :, ::2],
    "python-int": lambda a, cp: int(a),
    "float64-scalar": lambda a, cp: np.float64(a),
    "float32-scalar": lambda a, cp: np.float32(a),
    "device-0d": lambda a, cp: cp.asarray(a),
}


def _assert_wrong_argument_caught(captured, cp, index: int, bad: str, expected: str) -> None:
    """Argument ``index`` of a captured launch made ``bad`` (:data:`_WRONG`) fails with ``expected``;
    the captured arguments themselves pass."""
    kernel, (grid, block, args) = captured
    wrong = _WRONG[bad](args[index], cp)
    with pytest.raises(fakecupy.LaunchArgumentError, match=expected):
        kernel(grid, block, args[:index] + (wrong,) + args[index + 1:])
    kernel(grid, block, args)


# ---------------------------------------------------------------------------------------
# the stand-in itself
# ---------------------------------------------------------------------------------------
def test_standin_arrays_route_to_the_device_path(fake_cupy):
    a = fake_cupy.zeros((2, 3), dtype=fake_cupy.float32)
    assert backend_mod.is_device_array(a) and backend_mod.array_module(a) is fake_cupy
    h = backend_mod.asnumpy(a + 1)
    assert type(h) is np.ndarray and h.sum() == 6
    host = np.zeros(3, np.float32)
    up = fake_cupy.asarray(host)
    up += 1  # an upload is a copy: the host array keeps its values
    assert host.sum() == 0 and fake_cupy.asarray(up) is not None and np.shares_memory(fake_cupy.asarray(up), up)
    with pytest.raises(TypeError, match="host"):
        a + np.ones((2, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="host"):
        fake_cupy.where(np.ones(3) > 0, 1, 0)


def test_signatures_are_parsed_after_the_preprocessor():
    sig = fakecupy.parse_signatures(kernels.kernel_source("remodel"))
    act = {p.name: p for p in sig["vb_activate"]}
    assert act["nz"].ctype == "long long" and not act["nz"].pointer  # vb_i64, a typedef
    assert act["seed"].ctype == "unsigned long long"
    assert act["bmu_day"].ctype == "short" and act["bmu_day"].pointer
    assert act["capacity"].dtype == np.uint32 and act["p_hemi"].dtype == np.float32
    assert [p.name for p in sig["vb_update"]][-1] == "refill_mod"
    euler = fakecupy.parse_signatures(kernels.kernel_source("metrics_euler"))["vb_euler8"]
    assert [p.describe() for p in euler] == ["unsigned char* mask", "long long nz", "long long ny", "long long nx",
                                             "int* lut8", "unsigned long long* total"]
    defined = fakecupy.parse_signatures('#define T double\nextern "C" __global__ void k(T* a, T b) {}', ())
    assert defined["k"][0].dtype == np.float64 and defined["k"][1].dtype == np.float64


# ---------------------------------------------------------------------------------------
# the real device code through the stand-in
# ---------------------------------------------------------------------------------------
def test_remodel_steps_on_the_device_path_equal_the_numpy_twin(device_cupy, small):
    # the host runs every thread of the claim pass (2048 blocks of 128): a few long steps there
    steps, dt = (4, 8) if _is_standin(device_cupy) else (24, 2)
    a, g = _twins(small, device_cupy)
    assert g._gpu is not None, "a device volume must take remodel/gpu.py"
    for k in range(steps):
        a.step(k, FAST, dt)
        g.step(k, FAST, dt)
        if k % (steps // 2) == steps // 2 - 1:
            a.remove_fragments()
            g.remove_fragments()
    if _is_standin(device_cupy):
        assert g._gpu._update.launches == steps
    _assert_same_state(a, g, device_cupy)
    s = a.stats()
    assert s == g.stats() and s.bmus_trabecular > 10 and s.bmus_osteonal > 0
    assert (a.state.bmu_day >= 0).any() and (a.state.bone < small.bone).any()


def test_modelling_based_formation_on_the_device_path_equals_the_numpy_twin(device_cupy, small):
    """``vb_model`` (launched by remodel/gpu.py only while the modelling rate is positive) matches ``cpu.model``."""
    from voxelbone.remodel.state import RemodelingRates

    steps, dt = (3, 8) if _is_standin(device_cupy) else (12, 5)
    a, g = _twins(small, device_cupy)
    for k in range(steps):
        rates = RemodelingRates(3.0, 3.0, 60.0, 1.3, 0.9, modelling_um_per_day=0.8 if k else 0.0)
        a.step(k, rates, dt)
        g.step(k, rates, dt)
    if _is_standin(device_cupy):
        assert g._gpu._model.launches == steps - 1  # not on the step without modelling
    _assert_same_state(a, g, device_cupy)
    assert (a.state.osteoid[small.bone < 0.5] > 0).any(), "modelling forms bone in the marrow next to surfaces"


def test_morphometry_of_a_device_volume_equals_the_numpy_one(device_cupy, small, monkeypatch):
    from voxelbone.metrics import morphometry

    launched: list[str] = []
    real = fakecupy.host_launch

    def spy(cu_name, kernel, *args, **kwargs):
        launched.append(kernel)
        return real(cu_name, kernel, *args, **kwargs)

    monkeypatch.setattr(fakecupy, "host_launch", spy)
    dev = morphometry(small.to(device_cupy))
    host = morphometry(small)
    if _is_standin(device_cupy):
        assert {"vb_euler8_i32", "vb_ridge_flags_i32", "vb_insert_balls_i32", "vb_surface_area_i32"} <= set(launched)
    # the surface's float64 partial sums are added in another order (per thread, then a tree):
    # equal to rounding; every other number is exact integer or identical float arithmetic
    from_surface = {"bs_bv_per_mm", "bs_tv_per_mm", "tb_th_plate_um"}
    for f in dataclasses.fields(host):
        a, b = getattr(host, f.name), getattr(dev, f.name)
        if isinstance(a, float) and np.isnan(a):
            assert np.isnan(b), f.name
        elif f.name in from_surface:
            assert b == pytest.approx(a, rel=1e-12), f.name
        else:
            assert a == b, f"{f.name}: numpy {a!r} != device path {b!r}"
    assert host.tb_th_um > 0 and host.conn_d_per_mm3 > 0 and host.bs_bv_per_mm > 0


def test_metric_kernels_with_their_launch_configuration_equal_the_cpu_path(device_cupy):
    """euler_gpu, local_thickness_gpu and surface_area_gpu, each launch run block by block."""
    from scipy import ndimage as ndi

    from voxelbone.metrics import euler_characteristic, local_thickness
    from voxelbone.metrics.gpu import euler_gpu, local_thickness_gpu, surface_area_gpu
    from voxelbone.metrics.marching_cubes import surface_area_voxels

    f = ndi.gaussian_filter(np.random.default_rng(4).standard_normal((20, 22, 18)).astype(np.float32), 1.5)
    mask = f > 0.1
    d = device_cupy.asarray(mask)
    assert euler_gpu(d) == euler_characteristic(mask) != 0
    np.testing.assert_array_equal(device_cupy.asnumpy(local_thickness_gpu(d, 30.0)), local_thickness(mask, 30.0))
    field = np.ascontiguousarray(f + 0.5)
    want = surface_area_voxels(field, 0.5)
    assert surface_area_gpu(device_cupy.asarray(field), 0.5) == pytest.approx(want, rel=1e-12) and want > 0


# ---------------------------------------------------------------------------------------
# launch argument checks
# ---------------------------------------------------------------------------------------
def _captured_update_args(fake_cupy, small):
    """The launch remodel/gpu.py makes of vb_update in a step (captured, not run)."""
    from voxelbone.remodel import step_scalars

    g = Remodeler(small.to(fake_cupy), seed=5)
    return _captured_launch(g._gpu, "_update",
                            lambda: g._gpu.update(g.state, step_scalars(FAST, g.params, g.voxel_size_um, 2)))


@pytest.mark.parametrize("index,bad,expected", [
    (0, "float16", r"vb_update_i32: argument 0 \(float\* bone\) needs an array of dtype float32, got float16"),
    (3, "int32", r"argument 3 \(short\* bmu_day\) needs an array of dtype int16, got int32"),
    (3, "host", r"argument 3 \(short\* bmu_day\) needs a device array of int16, got numpy.ndarray"),
    (3, "strided", r"argument 3 \(short\* bmu_day\): the array is not C-contiguous"),
    (8, "int32", r"argument 8 \(unsigned int\* bmu_seed\) needs an array of dtype uint32, got int32"),
    (10, "int32", r"argument 10 \(long long n\) needs a numpy.int64 scalar, got int32"),
    (11, "python-int", r"argument 11 \(int dt\) needs a numpy.int32 scalar, got int \(passed as int64\)"),
    (12, "float64-scalar", r"argument 12 \(float t_resorb\) needs a numpy.float32 scalar, got float64"),
    (12, "device-0d", r"argument 12 \(float t_resorb\) is a scalar of float32, got an array"),
])
def test_a_wrong_launch_argument_is_caught(fake_cupy, small, index, bad, expected):
    _assert_wrong_argument_caught(_captured_update_args(fake_cupy, small), fake_cupy, index, bad, expected)


def test_a_wrong_argument_count_or_launch_shape_is_caught(fake_cupy, small):
    kernel, (grid, block, args) = _captured_update_args(fake_cupy, small)
    with pytest.raises(fakecupy.LaunchArgumentError, match="vb_update_i32: 25 arguments given, the kernel takes 26"):
        kernel(grid, block, args[:-1])
    with pytest.raises(fakecupy.LaunchArgumentError, match="more than 1024 threads"):
        kernel(grid, (2048,), args)
    with pytest.raises(fakecupy.LaunchArgumentError, match="positive"):
        kernel((0,), block, args)


def test_a_planted_wrong_scalar_type_in_the_step_is_caught(fake_cupy, small, monkeypatch):
    """remodel/gpu.py passing the step length as a Python int (8 bytes for an ``int``) fails the launch."""
    from voxelbone.remodel import gpu as remodel_gpu
    from voxelbone.remodel import step_scalars

    g = Remodeler(small.to(fake_cupy), seed=5)
    class PlantedNumpy:  # NumPy, except that np.int32(sc.dt) becomes int(sc.dt)
        def __getattr__(self, name):
            return int if name == "int32" else getattr(np, name)

    monkeypatch.setattr(remodel_gpu, "np", PlantedNumpy())
    with pytest.raises(fakecupy.LaunchArgumentError, match=r"vb_update_i32: argument 11 \(int dt\)"):
        g._gpu.update(g.state, step_scalars(FAST, g.params, g.voxel_size_um, 2))


def test_simulate_on_the_device_path_equals_numpy(device_cupy, tmp_path):
    """``simulate(backend="cupy")``: the whole loop (spin-up, steps, fragments, metrics, the run
    folder) through the device glue gives the NumPy run's rows."""
    from voxelbone.scenario import Period, Scenario
    from voxelbone.simulate import simulate

    from voxelbone.metrics import bone_surface_mm2, euler_characteristic

    def measure(v):  # device-side metrics of the evolving volume (the full set: the morphometry test)
        bone = v.bone >= 0.5
        return {"bv": float(bone.sum()), "euler": float(euler_characteristic(bone)),
                "bs_mm2": bone_surface_mm2(v.bone, v.voxel_size_um), "mineral": float(v.mineral.sum(dtype=np.float64))}

    sc = Scenario(name="x", site="lumbar_spine", periods=(Period("postmenopausal_untreated", 0.1),), size=48, seed=2,
                  step_days=10, metrics_every_days=20, spin_up_days=10, fragments_every_days=20)
    dev = simulate(sc, tmp_path / "dev", progress=False, render=False, backend="cupy", measure=measure)
    host = simulate(sc, None, progress=False, render=False, backend="numpy", measure=measure)
    assert dev.backend == "cupy" and host.backend == "numpy"
    assert len(dev.rows) == len(host.rows) >= 3
    surface = {"bs_mm2"}
    for rd, rh in zip(dev.rows, host.rows):
        for key, want in rh.items():
            got = rd[key]
            if key in surface:
                assert got == pytest.approx(want, rel=1e-12, nan_ok=True), key
            elif isinstance(want, float) and np.isnan(want):
                assert np.isnan(got), key
            else:
                assert got == want, f"day {rh['day']}: {key} numpy {want!r} != device path {got!r}"
    np.testing.assert_array_equal(dev.volume.bone, host.volume.bone)
    assert (tmp_path / "dev" / "metrics.csv").is_file()


# ---------------------------------------------------------------------------------------
# the micro-FE solver (mechanics/gpu.py) through the stand-in
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fe_levels():
    from fe_reference import random_structure
    from voxelbone.mechanics import problem

    mask = random_structure((14, 12, 10), 7)
    e = np.where(problem.load_bearing(mask), 10_000.0, 0.0) * np.random.default_rng(0).uniform(0.5, 1.5, mask.shape)
    return problem.build_levels(e, "frictionless", coarse_dofs=60)


def test_fe_operators_on_the_device_path_equal_the_cpu_operators(device_cupy, fe_levels):
    """GpuOps (the real launches of mechanics/gpu.py) give CpuOps' bits on every level."""
    from voxelbone.mechanics.gpu import FE_KERNELS, GpuOps
    from voxelbone.mechanics.solver import CpuOps

    assert len(fe_levels) >= 2
    c, g = CpuOps(fe_levels, 0.3), GpuOps(fe_levels, 0.3)
    assert g.defines == (("VB_INDEX32", 1),)
    rng = np.random.default_rng(5)
    for lv in range(len(fe_levels)):
        x = rng.standard_normal(3 * fe_levels[lv].n_nodes)
        for masked in (True, False):
            yc, yg = c.zeros(lv), g.zeros(lv)
            c.apply(lv, x, yc, masked)
            g.apply(lv, device_cupy.asarray(x), yg, masked)
            np.testing.assert_array_equal(device_cupy.asnumpy(yg), yc)
        np.testing.assert_array_equal(device_cupy.asnumpy(g.diag(lv)), c.diag(lv))
        if lv + 1 < len(fe_levels):
            rc_c, rc_g = c.zeros(lv + 1), g.zeros(lv + 1)
            c.restrict(lv, x, rc_c)
            g.restrict(lv, device_cupy.asarray(x), rc_g)
            np.testing.assert_array_equal(device_cupy.asnumpy(rc_g), rc_c)
            assert np.count_nonzero(rc_c) > 0
            xf_c, xf_g = x.copy(), device_cupy.asarray(x)
            c.prolong_add(lv, rc_c, xf_c)
            g.prolong_add(lv, rc_g, xf_g)
            np.testing.assert_array_equal(device_cupy.asnumpy(xf_g), xf_c)
    x = rng.standard_normal(3 * fe_levels[0].n_nodes)
    sed = c.energy(x)
    assert (sed > 0).any()
    np.testing.assert_array_equal(device_cupy.asnumpy(g.energy(device_cupy.asarray(x))), sed)
    if _is_standin(device_cupy):
        assert all(g._k[k].launches > 0 for k in FE_KERNELS)
        assert {g._k[k].name for k in FE_KERNELS} == {k + "_i32" for k in FE_KERNELS}


def test_fe_solve_on_the_device_path_equals_the_cpu_solve(device_cupy):
    """apparent_modulus on a device mask: the whole PCG + multigrid solve through mechanics/gpu.py."""
    from fe_reference import random_structure
    from voxelbone.mechanics import apparent_modulus

    mask = random_structure((16, 14, 12), 1)
    for boundary in ("constrained", "frictionless", "kinematic"):
        c = apparent_modulus(mask, boundary=boundary, rtol=1e-9)
        g = apparent_modulus(device_cupy.asarray(mask), boundary=boundary, rtol=1e-9)
        assert g.backend == "cupy" and isinstance(g.sed_mpa, device_cupy.ndarray)
        assert c.e_app_mpa > 0 and c.iterations > 1 and c.levels >= 2  # PCG with a multigrid cycle
        # same kernels bit for bit; dot products are summed in another order (Numba's parallel
        # reduction vs the array module's): the stand-in agrees to rounding (measured 2e-15),
        # a device's reductions to the solver's tolerance
        rel, its = (1e-12, 0) if _is_standin(device_cupy) else (1e-7, 1)
        assert g.e_app_mpa == pytest.approx(c.e_app_mpa, rel=rel)
        assert abs(g.iterations - c.iterations) <= its
        np.testing.assert_allclose(device_cupy.asnumpy(g.sed_mpa), c.sed_mpa, rtol=1e-4 if its else 1e-9, atol=1e-6)


def _captured_fe_apply(fake_cupy, fe_levels):
    """The launch mechanics/gpu.py makes of vb_fe_apply (captured, not run)."""
    from voxelbone.mechanics.gpu import GpuOps

    g = GpuOps(fe_levels, 0.3)
    return _captured_launch(g._k, "vb_fe_apply", lambda: g.apply(0, g.zeros(0), g.zeros(0)))


@pytest.mark.parametrize("index,bad,expected", [
    (3, "int32", r"vb_fe_apply_i32: argument 3 \(long long\* nodes\) needs an array of dtype int64, got int32"),
    (5, "float64", r"argument 5 \(unsigned char\* mask\) needs an array of dtype uint8, got float64"),
    (7, "float32-scalar", r"argument 7 \(double scale\) needs a numpy.float64 scalar, got float32"),
    (4, "int32", r"argument 4 \(long long n_active\) needs a numpy.int64 scalar, got int32"),
])
def test_a_wrong_fe_launch_argument_is_caught(fake_cupy, fe_levels, index, bad, expected):
    _assert_wrong_argument_caught(_captured_fe_apply(fake_cupy, fe_levels), fake_cupy, index, bad, expected)


def test_a_planted_wrong_node_dtype_in_the_fe_solver_is_caught(fake_cupy, fe_levels):
    """Node lists handed to GpuOps as int32 (the C type is long long*) fail the first launch."""
    from voxelbone.mechanics.gpu import GpuOps

    planted = [dataclasses.replace(lv, nodes=lv.nodes.astype(np.int32)) for lv in fe_levels]
    with pytest.raises(fakecupy.LaunchArgumentError,  # the first launch: the Galerkin stencil of level 1
                       match=r"vb_fe_galerkin_fine_i32: argument 2 \(long long\* nodes_c\) needs an array of dtype"):
        GpuOps(planted, 0.3)
    g = GpuOps(fe_levels[:1], 0.3)  # one level: no stencils; the fine operators' launches check too
    g.nodes[0] = g.nodes[0].astype(np.int32)
    with pytest.raises(fakecupy.LaunchArgumentError,
                       match=r"vb_fe_diag_i32: argument 2 \(long long\* nodes\) needs an array of dtype int64"):
        g.diag(0)


# ---------------------------------------------------------------------------------------
# benchmark honesty
# ---------------------------------------------------------------------------------------
def test_step_traffic_table_matches_the_kernels():
    """Every array in the bandwidth floor is a pointer of that kernel, counted at its C type's size."""
    from voxelbone.bench_cases import STEP_KERNEL_TRAFFIC, step_bytes_per_voxel

    sig = fakecupy.parse_signatures(kernels.kernel_source("remodel"))
    state_names = {"region", "bmu_day", "bone", "mineral", "osteoid", "bmu_flags", "bmu_amount", "claim"}
    for kernel, traffic in STEP_KERNEL_TRAFFIC.items():
        params = {p.name: p for p in sig[kernel]}
        for way in ("reads", "writes"):
            for name, nbytes in traffic[way].items():
                assert name in params and params[name].pointer, f"{kernel} has no array {name}"
                assert nbytes == params[name].dtype.itemsize, f"{kernel}.{name}: {nbytes} B, C type {params[name].ctype}"
                assert name in state_names
    assert step_bytes_per_voxel() == 46


def test_bench_device_cases_time_device_work_only(fake_cupy, monkeypatch):
    """The GPU benchmark cases run (through the stand-in): the step's floor is 46 B/voxel, Euler and
    surface results stay device values inside the timed region, thickness is timed in stages."""
    from voxelbone import bench, bench_cases
    from voxelbone.bench_cases import run_bench

    reads: list[str] = []
    timing = {"inside": False}

    def host_read(what):  # a host read inside a timed region is a synchronisation on a GPU
        if timing["inside"]:
            reads.append(what)

    real_time_gpu = bench.time_gpu

    def spy_time_gpu(fn, repeats=10, warmup=2):
        def timed():
            timing["inside"] = True
            try:
                return fn()
            finally:
                timing["inside"] = False
        return real_time_gpu(timed, repeats, warmup)

    real_stage = bench.EventStages.stage

    def spy_stage(self, kind, name):
        real_stage(self, kind, name)
        timing["inside"] = kind == "device"

    real_warm = bench_cases._warm_engine

    def warm_engine_one_step(be, size):  # the cases' 30 warm-up steps cost minutes on the host
        from voxelbone.remodel import Remodeler

        rem = Remodeler(bench_cases._phantom(be, size), seed=1)
        rem.step(0, bench_cases._rates(), 5)
        return rem, bench_cases._rates()

    assert real_warm is not None
    monkeypatch.setattr(bench_cases, "_warm_engine", warm_engine_one_step)
    monkeypatch.setattr(fakecupy, "on_host_read", host_read)
    monkeypatch.setattr(bench, "time_gpu", spy_time_gpu)
    monkeypatch.setattr(bench.EventStages, "stage", spy_stage)
    ms, env = run_bench([48], ["cupy"], groups=["remodel.step", "remodel.update"], repeats=1)
    ms += run_bench([20], ["cupy"], groups=["euler", "surface", "tb_th.local_thickness"], repeats=1)[0]
    by = {m.case: m for m in ms}
    assert all(m.ok for m in ms), [(m.case, m.skipped) for m in ms]
    assert by["remodel.step"].bytes_moved == 46 * 48**3 and by["remodel.update"].bytes_moved == 39 * 48**3
    assert by["remodel.step"].extra["timing"] == "CUDA events"
    assert by["remodel.step"].ratio_to_floor is not None and env["device_copy_bandwidth_bytes_per_s"] > 0
    assert by["euler"].error == 0.0 and by["euler"].extra["timing"] == "CUDA events"
    assert abs(by["surface"].error) < 1e-12
    th = by["tb_th.local_thickness"]
    assert th.extra["timing"].startswith("CUDA events, device stages") and th.extra["sizing_s"] > 0
    assert th.error == 0.0
    assert reads == [], "a timed GPU case read a device value back inside the timed region"


# ---------------------------------------------------------------------------------------
# on a GPU
# ---------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_equals_numpy_bit_for_bit_over_three_years(small):
    """1095 simulated days on the device and in the NumPy twin give the same bits.

    200 days of fast remodeling lay down osteoid, then 895 quieter days let it decay: without
    the flush rule both twins now share, ~700 voxels held subnormal osteoid in IEEE float32 (the
    NumPy twin) on day 1000 and ~2000 on day 1095, where a flush-to-zero device (CuPy compiles
    with -ftz=true) differs. Fragment removal every 60 days, states compared every
    365 days and at the end.
    """
    import cupy

    slow = Rates(0.5, 0.3, 50.0, 1.0, 1.0)
    a, g = _twins(small, cupy, seed=11)
    dt = 5
    days = 0
    for k in range(219):
        rates = FAST if days < 200 else slow
        a.step(k, rates, dt)
        g.step(k, rates, dt)
        days += dt
        if days % 60 == 0:
            a.remove_fragments()
            g.remove_fragments()
        if days % 365 == 0 or k == 218:
            _assert_same_state(a, g, cupy, f" differs on day {days}")
    assert days >= 1000
    assert a.stats() == g.stats() and a.stats().bmus_trabecular > 100
