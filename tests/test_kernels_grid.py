"""Every kernel run as a grid on CPU threads (grid host build): block orders, ThreadSanitizer,
the launcher's argument checks, and defects planted in the kernels to see each check fail.

Each case launches a kernel as voxelbone's GPU code launches it (tests/hostkernels.py uses
the launch configuration functions of remodel/gpu.py and metrics/gpu.py) and compares the
result with the NumPy/Numba twin.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy import ndimage as ndi

import voxelbone.kernels as K
from hostkernels import (
    HostRemodel,
    host_euler8,
    host_insert_balls,
    host_ridge_flags,
    host_surface_area,
    host_uniform,
)
from voxelbone.kernels import HostRaceError, host_grid_launch, host_kernel_params, kernel_entry_points, kernel_names


def _random_mask(seed: int, n: int, sigma: float = 1.4, fraction: float = 0.35) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.standard_normal((n, n, n)), sigma, mode="wrap")
    return f > np.quantile(f, 1 - fraction)


# ---------------------------------------------------------------------------------------
# one case per kernel: run it as the device code does, compare with the twin
# ---------------------------------------------------------------------------------------
def _case_uniform(n: int = 3000, **launch) -> None:
    from voxelbone.rng import uniform

    got = host_uniform(77, 5, 2, 10, n, **launch)
    np.testing.assert_array_equal(got, uniform(77, 5, 2, np.arange(10, 10 + n, dtype=np.uint64)))


def _case_euler(n: int = 20, **launch) -> None:
    from voxelbone.metrics import euler_characteristic

    m = _random_mask(4, n)
    value = host_euler8(m, **launch)
    assert value % 8 == 0 and value // 8 == euler_characteristic(m)


def _thickness_inputs(n: int):
    from voxelbone.metrics.thickness import _squared_distance, ball_containment_table

    m = _random_mask(12, n, sigma=1.6)
    z, y, x = np.ogrid[:n, :n, :n]
    m |= (z - n / 2) ** 2 + (y - n / 2) ** 2 + (x - n / 3) ** 2 <= (0.42 * n) ** 2  # a ball wider than 15 voxels
    k2 = np.ascontiguousarray(_squared_distance(m))
    return m, k2, np.ascontiguousarray(ball_containment_table(int(k2.max())))


def _case_ridge(n: int = 20, **launch) -> None:
    from voxelbone.metrics.thickness import _ridge_flags

    _, k2, table = _thickness_inputs(n)
    np.testing.assert_array_equal(host_ridge_flags(k2, table, **launch).astype(bool), _ridge_flags(k2, table))


def _case_balls(n: int = 20, **launch) -> None:
    from voxelbone.metrics import local_thickness
    from voxelbone.metrics.thickness import _ridge_flags

    m, k2, table = _thickness_inputs(n)
    keep = _ridge_flags(k2, table)
    assert 2 * int(np.sqrt(k2[keep].max())) + 1 > 15 and k2[keep].min() <= 2  # both insertion paths run
    out = host_insert_balls(keep, k2, m, **launch)
    np.testing.assert_array_equal(out.view(np.float32), local_thickness(m, 1.0))


def _case_surface(n: int = 16, **launch) -> None:
    from voxelbone.metrics.marching_cubes import surface_area_voxels

    f = ndi.gaussian_filter(np.random.default_rng(5).random((n, n, n)), 1.5).astype(np.float32)
    f = (f - f.min()) / (f.max() - f.min())
    assert host_surface_area(f, 0.5, **launch) == pytest.approx(surface_area_voxels(f, 0.5), rel=1e-12)


def _case_remodel(n: int = 32, steps: int = 4, capacity: int = 1 << 12, defines=None, modulated: bool = False,
                  dt: int = 3, rates=None, params=None, **launch):
    from test_remodel import FAST
    from voxelbone.phantom import make_phantom
    from voxelbone.remodel import Remodeler, step_scalars
    from voxelbone.remodel.state import refill_levels
    from voxelbone.remodel.mechanostat import Modulation

    vol = make_phantom("femoral_neck", n, 40.0, seed=3, ct_th_um=300, tb_sp_um=400, bv_tv=0.25, tb_th_um=100,
                       structure="lattice")  # a small grid for the kernels; the network needs a larger cube
    a, b = Remodeler(vol.copy(), params, seed=9), Remodeler(vol.copy(), params, seed=9)
    mod = None
    if modulated:  # the mechanostat's per-voxel factors on activation and refill
        rng = np.random.default_rng(4)
        mod = Modulation(rng.uniform(0.3, 3.0, vol.shape).astype(np.float32),
                         rng.uniform(0.6, 1.6, vol.shape).astype(np.float32))
        a.modulation = mod
    host = HostRemodel(vol.shape, capacity=capacity, **launch)
    if defines is not None:
        host.launch["defines"] = defines
    drawn = 0
    course = list(rates) if isinstance(rates, (list, tuple)) else [rates or FAST]  # rates of step k: course[k % len]
    previous = None
    for k in range(steps):
        rates_k = course[k % len(course)]
        sc = step_scalars(rates_k, a.params, a.voxel_size_um, dt, previous_refill=previous)
        previous = refill_levels(rates_k)
        a.step(k, rates_k, dt)
        drawn += host.step(b.state, 9, k, sc, *((mod.activation, mod.refill) if mod else ())).size
        for name, arr in a.state.arrays().items():
            np.testing.assert_array_equal(arr, b.state.arrays()[name], err_msg=f"{name} differs at step {k}")
    assert drawn > 0, "the case should start BMUs (vb_claim needs seeds)"
    return b


def _case_model(**launch) -> None:
    """Modelling-based formation on (``vb_model``, after the step's three kernels) into formation."""
    from voxelbone.remodel.state import RemodelingRates

    rates = RemodelingRates(3.0, 3.0, 60.0, 1.3, 0.9, modelling_um_per_day=0.8)
    _case_remodel(**{"n": 24, "steps": 4, "dt": 15, "rates": rates, **launch})


# ---- micro-FE operators (kernels/fe_solver.cu) against the Numba twin (voxelbone/mechanics/cpu.py),
# launched as mechanics/gpu.py launches them: 256 threads, _grid(items) blocks, fe_defines(shape)
def _fe_levels(n: int):
    from fe_reference import random_structure
    from voxelbone.mechanics import problem

    mask = random_structure((n, n - 2, n - 4), 7)
    rng = np.random.default_rng(0)
    e = np.where(problem.load_bearing(mask), 10_000.0, 0.0) * rng.uniform(0.5, 1.5, mask.shape)
    fine = problem._level(e, 1.0, "frictionless")
    coarse = problem._level(problem.coarsen_moduli(e), 2.0, "frictionless")
    assert fine.nodes.size > 256 and coarse.nodes.size > 0  # several blocks on the fine grid
    return fine, coarse


def _fe_launch(kernel: str, shape, n_items: int, args, defines=None, threads=None, **launch) -> None:
    from voxelbone.mechanics import gpu as feg

    block = threads or feg._BLOCK
    # threads given: a quarter of the blocks the items need, so every thread runs several
    # rounds of the grid-stride loop (mechanics/gpu.py's launch reaches that past 2^27 items)
    grid = feg._grid(n_items)[0] if threads is None else max(1, n_items // (4 * block))
    host_grid_launch("fe_solver", kernel, grid, block, args,
                     defines=feg.fe_defines(shape) if defines is None else defines, **launch)


def _case_fe_apply(n: int = 14, **launch) -> None:
    from voxelbone.mechanics import cpu
    from voxelbone.mechanics.elements import hex_stiffness_blocks

    fine, _ = _fe_levels(n)
    kb = hex_stiffness_blocks(0.3)
    x = np.random.default_rng(1).standard_normal(3 * fine.n_nodes)
    for masked in (fine.free, np.ones_like(fine.free)):
        want = np.full_like(x, 7.0)
        cpu.fe_apply(x, want, fine.emod, fine.nodes, masked, kb, 2.0, *fine.node_shape)
        got = np.full_like(x, 7.0)  # untouched outside the active nodes, as in the twin
        _fe_launch("vb_fe_apply", fine.shape, fine.nodes.size,
                   [x, got, fine.emod, fine.nodes, np.int64(fine.nodes.size), masked, kb.reshape(-1), np.float64(2.0)]
                   + [np.int64(v) for v in fine.node_shape], **launch)
        assert np.abs(want).max() > 1 and (want == 7.0).any()
        np.testing.assert_array_equal(got, want)  # no contraction on either side: the same bits


def _case_fe_diag(n: int = 14, **launch) -> None:
    from voxelbone.mechanics import cpu
    from voxelbone.mechanics.elements import hex_stiffness_blocks

    fine, _ = _fe_levels(n)
    kb = hex_stiffness_blocks(0.3)
    want = np.zeros(3 * fine.n_nodes)
    cpu.fe_diag(want, fine.emod, fine.nodes, kb, 2.0, *fine.node_shape)
    got = np.zeros_like(want)
    _fe_launch("vb_fe_diag", fine.shape, fine.nodes.size,
               [got, fine.emod, fine.nodes, np.int64(fine.nodes.size), kb.reshape(-1), np.float64(2.0)]
               + [np.int64(v) for v in fine.node_shape], **launch)
    assert (want > 0).sum() == 3 * fine.nodes.size
    np.testing.assert_array_equal(got, want)


def _case_fe_restrict(n: int = 14, **launch) -> np.ndarray:
    from voxelbone.mechanics import cpu

    fine, coarse = _fe_levels(n)
    rf = np.random.default_rng(2).standard_normal(3 * fine.n_nodes)
    dims = fine.node_shape + coarse.node_shape
    want = np.zeros(3 * coarse.n_nodes)
    cpu.fe_restrict(rf, want, coarse.nodes, coarse.free, *dims)
    got = np.zeros_like(want)
    _fe_launch("vb_fe_restrict", fine.shape, coarse.nodes.size,
               [rf, got, coarse.nodes, np.int64(coarse.nodes.size), coarse.free] + [np.int64(v) for v in dims],
               **launch)
    assert np.count_nonzero(want) > 0
    np.testing.assert_array_equal(got, want)
    return got


def _case_fe_prolong(n: int = 14, **launch) -> None:
    from voxelbone.mechanics import cpu

    fine, coarse = _fe_levels(n)
    rng = np.random.default_rng(3)
    ec = rng.standard_normal(3 * coarse.n_nodes) * coarse.free  # on the masked coarse space
    dims = fine.node_shape + coarse.node_shape
    start = rng.standard_normal(3 * fine.n_nodes)  # prolong *adds*
    want = start.copy()
    cpu.fe_prolong_add(ec, want, fine.nodes, fine.free, *dims)
    got = start.copy()
    _fe_launch("vb_fe_prolong_add", fine.shape, fine.nodes.size,
               [ec, got, fine.nodes, np.int64(fine.nodes.size), fine.free] + [np.int64(v) for v in dims], **launch)
    assert not np.array_equal(want, start)
    np.testing.assert_array_equal(got, want)
    # the grid kernels are adjoint on the masked spaces (R = Pᵀ): <R rf, ec> = <rf, P ec>
    rf = rng.standard_normal(3 * fine.n_nodes) * fine.free
    rc = np.zeros(3 * coarse.n_nodes)
    _fe_launch("vb_fe_restrict", fine.shape, coarse.nodes.size,
               [rf, rc, coarse.nodes, np.int64(coarse.nodes.size), coarse.free] + [np.int64(v) for v in dims],
               **launch)
    assert rc @ ec == pytest.approx(rf @ (got - start), rel=1e-12) and abs(rc @ ec) > 1e-3


def _case_fe_energy(n: int = 14, **launch) -> None:
    from voxelbone.mechanics import cpu
    from voxelbone.mechanics.elements import hex_stiffness_blocks

    fine, _ = _fe_levels(n)
    kb = hex_stiffness_blocks(0.3)
    x = np.random.default_rng(4).standard_normal(3 * fine.n_nodes)
    nz, ny, nx = fine.shape
    want = np.empty(nz * ny * nx)
    cpu.fe_energy(x, fine.emod, kb, want, nz, ny, nx)
    got = np.full_like(want, np.nan)
    _fe_launch("vb_fe_energy", fine.shape, want.size,
               [x, fine.emod, kb.reshape(-1), got, np.int64(nz), np.int64(ny), np.int64(nx)], **launch)
    assert (want > 0).sum() == (fine.emod > 0).sum() > 0
    np.testing.assert_array_equal(got, want)


def _fe_stencil_levels(n: int):
    """Fine level, first coarse level and its Galerkin stencil (the Numba twin's), second coarse level."""
    from fe_reference import random_structure
    from voxelbone.mechanics import problem
    from voxelbone.mechanics.solver import CpuOps

    mask = random_structure((n, n - 2, n - 4), 7)
    e = np.where(problem.load_bearing(mask), 10_000.0, 0.0) * np.random.default_rng(0).uniform(0.5, 1.5, mask.shape)
    levels = problem.build_levels(e, "frictionless", coarse_dofs=20)
    assert len(levels) >= 3
    return levels, CpuOps(levels, 0.3)


def _case_fe_stencil_apply(n: int = 14, **launch) -> None:
    from voxelbone.mechanics import cpu

    levels, ops = _fe_stencil_levels(n)
    lv = levels[1]
    x = np.random.default_rng(6).standard_normal(3 * lv.n_nodes)
    want = np.full_like(x, 7.0)
    cpu.fe_stencil_apply(x, want, ops.stencils[1], lv.nodes, ops.free[1], *lv.node_shape)
    got = np.full_like(x, 7.0)
    _fe_launch("vb_fe_stencil_apply", levels[0].shape, lv.nodes.size,
               [x, got, ops.stencils[1], lv.nodes, np.int64(lv.nodes.size), ops.free[1]]
               + [np.int64(v) for v in lv.node_shape], **launch)
    assert np.abs(want).max() > 1
    np.testing.assert_array_equal(got, want)


def _case_fe_galerkin_fine(n: int = 14, **launch) -> None:
    from voxelbone.mechanics.elements import galerkin_blocks, hex_stiffness_blocks, octant_weights

    levels, ops = _fe_stencil_levels(n)
    f, c = levels[0], levels[1]
    got = np.zeros((c.nodes.size, 27, 3, 3))
    _fe_launch("vb_fe_galerkin_fine", f.shape, c.nodes.size,
               [got, f.emod, c.nodes, np.int64(c.nodes.size), ops.free[0], hex_stiffness_blocks(0.3).reshape(-1),
                galerkin_blocks(0.3).reshape(-1), octant_weights().reshape(-1), np.float64(f.scale)]
               + [np.int64(v) for v in f.node_shape + c.node_shape], **launch)
    assert np.abs(ops.stencils[1]).max() > 1
    np.testing.assert_array_equal(got, ops.stencils[1])


def _case_fe_galerkin_coarse(n: int = 14, **launch) -> None:
    levels, ops = _fe_stencil_levels(n)
    f, c = levels[1], levels[2]
    index = np.full(f.n_nodes, -1, dtype=np.int64)
    index[f.nodes] = np.arange(f.nodes.size)
    got = np.zeros((c.nodes.size, 27, 3, 3))
    _fe_launch("vb_fe_galerkin_coarse", levels[0].shape, c.nodes.size,
               [got, ops.stencils[1], index, c.nodes, np.int64(c.nodes.size), ops.free[1]]
               + [np.int64(v) for v in f.node_shape + c.node_shape], **launch)
    assert np.abs(ops.stencils[2]).max() > 1
    np.testing.assert_array_equal(got, ops.stencils[2])


CASES = {
    ("random", "vb_uniform_fill"): _case_uniform,
    ("metrics_euler", "vb_euler8"): _case_euler,
    ("metrics_thickness", "vb_ridge_flags"): _case_ridge,
    ("metrics_thickness", "vb_insert_balls"): _case_balls,
    ("metrics_surface", "vb_surface_area"): _case_surface,
    # one step runs all three; listed per kernel so the coverage check sees each
    ("remodel", "vb_activate"): _case_remodel,
    ("remodel", "vb_claim"): _case_remodel,
    ("remodel", "vb_update"): _case_remodel,
    ("remodel", "vb_model"): _case_model,
    ("fe_solver", "vb_fe_apply"): _case_fe_apply,
    ("fe_solver", "vb_fe_diag"): _case_fe_diag,
    ("fe_solver", "vb_fe_restrict"): _case_fe_restrict,
    ("fe_solver", "vb_fe_prolong_add"): _case_fe_prolong,
    ("fe_solver", "vb_fe_energy"): _case_fe_energy,
    ("fe_solver", "vb_fe_stencil_apply"): _case_fe_stencil_apply,
    ("fe_solver", "vb_fe_galerkin_fine"): _case_fe_galerkin_fine,
    ("fe_solver", "vb_fe_galerkin_coarse"): _case_fe_galerkin_coarse,
}
_DISTINCT = {k: v for k, v in CASES.items() if k[1] not in ("vb_claim", "vb_update")}


def test_every_kernel_has_a_grid_case():
    kernels = {(f, k) for f in kernel_names() for k in kernel_entry_points(f)}
    assert kernels == set(CASES), "add a case for each new kernel (and its twin comparison) to CASES"


@pytest.mark.parametrize("order,seed", [("forward", 0), ("reverse", 0), ("shuffled", 1), ("shuffled", 2)])
@pytest.mark.parametrize("case", list(_DISTINCT), ids=lambda c: c[1])
def test_kernel_grid_equals_twin_in_every_block_order(case, order, seed):
    _DISTINCT[case](order=order, order_seed=seed)


def test_euler_block_reduction_for_every_block_size():
    """The warp/block reduction holds for one warp, partial block counts and 1024 threads."""
    for threads in (32, 96, 1024):
        _case_euler(n=14, threads=threads, order="shuffled", order_seed=threads)


def test_remodel_with_mechanical_modulation_equals_twin():
    """Per-voxel activation and refill factors (the mechanostat's) give the same step in both twins."""
    _case_remodel(n=24, steps=6, dt=15, modulated=True, order="shuffled", order_seed=2)  # into formation


@pytest.mark.parametrize("modulated", [False, True], ids=["refill 2.6", "refill 2.6 x 0.6-1.6"])
def test_remodel_with_an_overfill_beyond_one_cavity_depth_equals_twin(modulated):
    """A reach of two cavity depths: heights u above 2 (9 bits of the claim code) in both twins."""
    from voxelbone.remodel import RemodelParams
    from voxelbone.remodel.state import RemodelingRates

    rates = RemodelingRates(3.0, 3.0, 60.0, 2.6, 2.6)
    b = _case_remodel(n=24, steps=6, dt=15, rates=rates, params=RemodelParams(overfill_reach_depths=2.0),
                      modulated=modulated, order="shuffled", order_seed=3)
    assert int(b.state.bmu_u.max()) > 255, "the case should store heights above u = 2"


@pytest.mark.parametrize("modulated", [False, True], ids=["plain", "modulated"])
def test_remodel_with_a_balance_that_changes_between_steps_equals_twin(modulated):
    """The refill rising and falling from step to step (the level read on the previous step's balance)."""
    from voxelbone.remodel.state import RemodelingRates

    course = [RemodelingRates(3.0, 3.0, 60.0, r_t, r_c) for r_t, r_c in ((1.0, 1.0), (1.5, 1.2), (0.7, 0.9), (1.3, 1.6))]
    _case_remodel(n=24, steps=8, dt=15, rates=course, modulated=modulated, order="shuffled", order_seed=5)


def test_remodel_64bit_index_path_equals_twin():
    """The 64-bit index specialisation (volumes past 2^31 voxels) computes the same step."""
    _case_remodel(n=24, steps=3, defines=(("VB_INDEX32", 0),), order="reverse")


@pytest.mark.parametrize("case", [c for c in CASES if c[0] == "fe_solver"], ids=lambda c: c[1])
def test_fe_64bit_index_path_equals_twin(case):
    """The FE kernels' 64-bit index specialisation (grids past 2^31 dofs) computes the same bits."""
    CASES[case](defines=(("VB_INDEX32", 0),), order="shuffled", order_seed=5)


def test_fe_kernels_with_small_blocks():
    """Blocks of one warp, each thread running several rounds of the grid-stride loop: the same bits."""
    for case in (_case_fe_apply, _case_fe_prolong, _case_fe_energy):
        case(n=10, threads=32, order="shuffled", order_seed=6)


@pytest.mark.parametrize("case", list(_DISTINCT), ids=lambda c: c[1])
def test_kernel_under_thread_sanitizer(case):
    """A small grid of every kernel under ThreadSanitizer: no data race is reported."""
    kwargs = dict(tsan=True, order="shuffled", order_seed=3, workers=4)
    size = {"remodel": dict(n=20, steps=3, capacity=48), "random": dict(n=2000),
            "metrics_thickness": dict(n=20),
            "fe_solver": dict(n=28, threads=8),  # hundreds of short blocks: every worker takes some
            }.get(case[0], dict(n=12))
    _DISTINCT[case](**size, **kwargs)


# ---------------------------------------------------------------------------------------
# planted defects: each check must fail on its defect
# ---------------------------------------------------------------------------------------
@pytest.fixture
def plant(monkeypatch, tmp_path):
    """Replace text in a copy of kernels/ and make voxelbone.kernels use the copy."""
    src = K.kernel_dir()
    dst = tmp_path / "kernels"
    shutil.copytree(src, dst)

    def _plant(filename: str, old: str, new: str) -> None:
        path = dst / filename
        text = path.read_text()
        assert old in text, f"{old!r} not in {filename}: update the planted defect"
        path.write_text(text.replace(old, new))

    monkeypatch.setattr(K, "kernel_dir", lambda: dst)
    return _plant


def test_tsan_reports_a_non_atomic_update(plant):
    plant("metrics_euler.cu", "atomicAdd(total, (unsigned long long)acc)", "(*total += (unsigned long long)acc)")
    with pytest.raises(HostRaceError, match="data race"):  # 62 blocks: a cross-worker race (9 missed it once)
        _case_euler(n=24, tsan=True, order="forward")


def test_tsan_reports_a_missing_syncthreads(plant):
    plant("metrics_euler.cu", "    __syncthreads();\n", "\n")
    with pytest.raises(HostRaceError, match="data race"):
        _case_euler(n=12, tsan=True, order="forward")


def test_tsan_reports_a_plain_read_racing_with_atomic_max(plant):
    plant("metrics_thickness.cu", "vb_load_relaxed(&out_bits[j])", "out_bits[j]")
    with pytest.raises(HostRaceError, match="data race"):
        _case_balls(n=20, tsan=True, order="shuffled", order_seed=1)


def test_barrier_not_reached_by_every_thread_is_an_error(plant):
    plant("metrics_euler.cu", "    __syncthreads();\n", "    if (threadIdx.x != 5u) __syncthreads();\n")
    with pytest.raises(RuntimeError, match="deadlock"):
        _case_euler(n=12)


# ---------------------------------------------------------------------------------------
# the launcher itself
# ---------------------------------------------------------------------------------------
def test_params_come_from_the_compiler():
    params = host_kernel_params("random", "vb_uniform_fill")
    assert [p.c_type() for p in params] == ["unsigned long long"] * 4 + ["long long", "float*"]
    bone = host_kernel_params("remodel", "vb_activate")[0]
    assert bone.pointer and bone.const and (bone.kind, bone.size) == ("f", 4)


def test_launch_arguments_are_checked():
    out = np.zeros(64, np.float32)
    good = [np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(0), np.int64(64), out]

    def launch(args):
        host_grid_launch("random", "vb_uniform_fill", 1, 64, args)

    launch(good)
    with pytest.raises(TypeError, match="argument 4 is long long, got a int32 scalar"):
        launch(good[:4] + [np.int32(64), out])
    with pytest.raises(TypeError, match="argument 5 is float\\*, got an array of float64"):
        launch(good[:5] + [np.zeros(64)])
    with pytest.raises(TypeError, match="pass a NumPy scalar"):
        launch([1] + good[1:])
    with pytest.raises(TypeError, match="takes 6 arguments, got 5"):
        launch(good[:5])
    with pytest.raises(TypeError, match="C-contiguous"):
        launch(good[:5] + [np.zeros(128, np.float32)[::2]])
    with pytest.raises(ValueError, match="no kernel 'vb_nothing'"):
        host_grid_launch("random", "vb_nothing", 1, 1, [])
    with pytest.raises(ValueError, match="at most 1024"):
        host_grid_launch("random", "vb_uniform_fill", 1, (64, 32), good)
    with pytest.raises(ValueError, match="order must be one of"):
        host_grid_launch("random", "vb_uniform_fill", 1, 64, good, order="random")


def test_ftz_flushes_float32_subnormals_in_the_workers(plant):
    """ftz=True: results and inputs below FLT_MIN are 0 in every worker (FTZ and DAZ), as on the device."""
    plant("random.cu", "// out[i] = uniform", """extern "C" __global__ void vb_probe(const float* a, float* out) {
    const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    out[2 * i] = a[0] * a[0];      // 1e-20 * 1e-20: a subnormal result
    out[2 * i + 1] = a[1] * 2.0f;  // a subnormal input
}
// out[i] = uniform""")
    a = np.array([1e-20, 1e-40], np.float32)
    assert a[1] != 0
    for ftz in (False, True):
        out = np.full(2 * 8 * 4, np.nan, np.float32)
        host_grid_launch("random", "vb_probe", 8, 4, [a, out], ftz=ftz, workers=3)
        if ftz:
            assert (out == 0).all()
        else:
            assert (out[0::2] == np.float32(1e-20) * np.float32(1e-20)).all() and (out[0::2] > 0).all()
            assert (out[1::2] == a[1] * np.float32(2)).all() and (out[1::2] > 0).all()


# ---------------------------------------------------------------------------------------
# flush-to-zero: NumPy twin vs the device's arithmetic over a long horizon
# ---------------------------------------------------------------------------------------
_LONG_DT = 40  # the longest step the engine allows (the resorption phase)
_LONG_STEPS = 28  # 1120 simulated days


def _long_horizon(n: int = 32) -> int | None:
    """Run NumPy twin and FTZ grid build side by side; the first day they differ (None: never)."""
    from test_remodel import FAST
    from voxelbone.phantom import make_phantom
    from voxelbone.remodel import Remodeler, step_scalars

    vol = make_phantom("femoral_neck", n, 40.0, seed=3, ct_th_um=300, tb_sp_um=400, bv_tv=0.25, tb_th_um=100,
                       structure="lattice")  # a small grid for the kernels; the network needs a larger cube
    a, b = Remodeler(vol.copy(), seed=11), Remodeler(vol.copy(), seed=11)
    host = HostRemodel(vol.shape, ftz=True, order="shuffled", order_seed=7)
    for k in range(_LONG_STEPS):
        sc = step_scalars(FAST, a.params, a.voxel_size_um, _LONG_DT)
        a.step(k, FAST, _LONG_DT)
        host.step(b.state, 11, k, sc)
        for name, arr in a.state.arrays().items():
            if not np.array_equal(arr, b.state.arrays()[name]):
                return (k + 1) * _LONG_DT
    assert (a.state.osteoid > 0).any(), "formation should leave osteoid to decay"
    return None


def test_long_horizon_numpy_twin_equals_ftz_device_arithmetic():
    """≥ 1000 days: the NumPy twin and the kernels under flush-to-zero stay bit-identical."""
    assert _LONG_DT * _LONG_STEPS >= 1000
    assert _long_horizon() is None


def test_long_horizon_parts_without_the_flush_rule(plant, monkeypatch):
    """Without vb_flush (``cpu.TINY`` 0 in the twin), decaying osteoid goes subnormal on the CPU only (~850 days)."""
    from voxelbone.remodel import cpu

    plant("vb_common.cuh", "return (x < VB_TINY && x > -VB_TINY) ? 0.0f : x;", "return x;")
    monkeypatch.setattr(cpu, "TINY", np.float32(0.0))
    day = _long_horizon()
    assert day is not None and 800 <= day <= _LONG_DT * _LONG_STEPS


def test_launch_from_the_source_string_cupy_is_given():
    """A CuPy stand-in holds only (code, options, kernel name): that is enough to launch."""
    from voxelbone.kernels import NVRTC_OPTIONS, _define_options, defines_from_options, specialised_source
    from voxelbone.rng import uniform

    defines = (("VB_INDEX32", 1),)
    code, options = specialised_source("random", defines), NVRTC_OPTIONS + _define_options(defines)
    out = np.zeros(500, np.float32)
    host_grid_launch("random", "vb_uniform_fill_i32", 2, 128,
                     [np.uint64(3), np.uint64(1), np.uint64(2), np.uint64(0), np.int64(500), out],
                     source=code, defines=defines_from_options(options), order="reverse")
    np.testing.assert_array_equal(out, uniform(3, 1, 2, np.arange(500, dtype=np.uint64)))
    with pytest.raises(ValueError, match="no kernel 'vb_uniform_fill'.*vb_uniform_fill_i32"):
        host_grid_launch("random", "vb_uniform_fill", 1, 1, [], source=code)


def test_warp_intrinsics_and_shared_memory_behave_as_on_a_device(plant):
    """Shuffles, ballot and a block-wide exchange through shared memory, 2 blocks of 2 warps."""
    plant("random.cu", "// out[i] = uniform", """extern "C" __global__ void vb_probe(int* out) {
    __shared__ int tile[64];
    const int t = (int)threadIdx.x, lane = t & 31;
    const int g = (int)(blockIdx.x * blockDim.x) + t;
    out[5 * g] = __shfl_down_sync(0xffffffffu, 100 * t, 3);
    out[5 * g + 1] = __shfl_xor_sync(0xffffffffu, 100 * t, 5);
    out[5 * g + 2] = __shfl_sync(0xffffffffu, 100 * t, 7);
    out[5 * g + 3] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
    tile[t] = 1000 * (int)blockIdx.x + t;
    __syncthreads();
    out[5 * g + 4] = tile[63 - t];
}
// out[i] = uniform""")
    out = np.zeros(5 * 128, np.int32)
    host_grid_launch("random", "vb_probe", 2, 64, [out], order="shuffled", order_seed=4, workers=2)
    got = out.reshape(2, 64, 5)
    t = np.arange(64)
    lane, warp = t % 32, t // 32
    down = np.where(lane + 3 < 32, t + 3, t) * 100
    xor = (warp * 32 + (lane ^ 5)) * 100
    src7 = (warp * 32 + 7) * 100
    ballot = sum(1 << k for k in range(0, 32, 3))
    for b in range(2):
        np.testing.assert_array_equal(got[b, :, 0], down)
        np.testing.assert_array_equal(got[b, :, 1], xor)
        np.testing.assert_array_equal(got[b, :, 2], src7)
        np.testing.assert_array_equal(got[b, :, 3].astype(np.uint32), np.full(64, ballot, np.uint32))
        np.testing.assert_array_equal(got[b, :, 4], 1000 * b + 63 - t)
