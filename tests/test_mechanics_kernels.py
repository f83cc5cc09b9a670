"""The CUDA kernels of kernels/fe_solver.cu against the Numba twin (host build), and the GPU solver."""

from __future__ import annotations

import ctypes as C

import numpy as np
import pytest

from fe_reference import random_structure
from voxelbone.mechanics import apparent_modulus, cpu, problem
from voxelbone.mechanics.elements import hex_stiffness_blocks

try:  # the multi-threaded launcher of the real grid, where this tree has it
    from voxelbone.kernels import host_grid_launch
except ImportError:  # pragma: no cover - depends on the tree
    host_grid_launch = None


def _launch(lib, name: str, n_items: int, args: list) -> None:
    """Run kernel ``name`` of fe_solver.cu on the host: the real grid on worker threads, or the one-thread build."""
    if host_grid_launch is not None:
        host_grid_launch("fe_solver", name, (n_items + 63) // 64, 64, args, order="shuffled", workers=4)
        return
    conv = []
    for a in args:
        if isinstance(a, np.ndarray):
            assert a.flags.c_contiguous
            conv.append(C.c_void_p(a.ctypes.data))
        elif isinstance(a, np.float64):
            conv.append(C.c_double(float(a)))
        else:
            conv.append(C.c_longlong(int(a)))
    fn = getattr(lib, name)
    fn.restype = None
    fn(*conv)


@pytest.fixture(scope="module")
def grids():
    mask = random_structure((14, 12, 10), 7)
    e = np.where(problem.load_bearing(mask), 10_000.0, 0.0) * np.random.default_rng(0).uniform(0.5, 1.5, mask.shape)
    fine = problem._level(e, 1.0, "frictionless")
    coarse = problem._level(problem.coarsen_moduli(e), 2.0, "frictionless")
    return fine, coarse


def test_apply_and_diag_kernels_match_the_numba_twin(hostlib, grids):
    fine, _ = grids
    kb = hex_stiffness_blocks(0.3)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(3 * fine.n_nodes)
    y_ref = np.zeros_like(x)
    cpu.fe_apply(x, y_ref, fine.emod, fine.nodes, fine.free, kb, 1.0, *fine.node_shape)
    y = np.zeros_like(x)
    dims = [np.int64(v) for v in fine.node_shape]
    _launch(hostlib, "vb_fe_apply", fine.nodes.size,
            [x, y, fine.emod, fine.nodes, np.int64(fine.nodes.size), fine.free, kb, np.float64(1.0)] + dims)
    assert np.abs(y_ref).max() > 0
    np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=1e-9)
    d_ref = np.zeros_like(x)
    cpu.fe_diag(d_ref, fine.emod, fine.nodes, kb, 2.0, *fine.node_shape)
    d = np.zeros_like(x)
    _launch(hostlib, "vb_fe_diag", fine.nodes.size, [d, fine.emod, fine.nodes, np.int64(fine.nodes.size), kb,
                                                     np.float64(2.0)] + dims)
    np.testing.assert_allclose(d, d_ref, rtol=1e-14)


def test_transfer_kernels_match_the_numba_twin_and_are_adjoint(hostlib, grids):
    fine, coarse = grids
    rng = np.random.default_rng(2)
    rf = rng.standard_normal(3 * fine.n_nodes)
    ec = rng.standard_normal(3 * coarse.n_nodes)
    dims = fine.node_shape + coarse.node_shape
    rc_ref = np.zeros(3 * coarse.n_nodes)
    cpu.fe_restrict(rf, rc_ref, coarse.nodes, coarse.free, *dims)
    rc = np.zeros_like(rc_ref)
    _launch(hostlib, "vb_fe_restrict", coarse.nodes.size, [rf, rc, coarse.nodes, np.int64(coarse.nodes.size),
                                                           coarse.free] + [np.int64(v) for v in dims])
    np.testing.assert_allclose(rc, rc_ref, rtol=1e-14, atol=1e-14)
    xf_ref = np.zeros(3 * fine.n_nodes)
    cpu.fe_prolong_add(ec, xf_ref, fine.nodes, fine.free, *dims)
    xf = np.zeros_like(xf_ref)
    _launch(hostlib, "vb_fe_prolong_add", fine.nodes.size, [ec, xf, fine.nodes, np.int64(fine.nodes.size),
                                                            fine.free] + [np.int64(v) for v in dims])
    np.testing.assert_allclose(xf, xf_ref, rtol=1e-14, atol=1e-14)
    # R = Pᵀ on the masked spaces: <R rf, ec> = <rf, P ec>
    ecm = ec * coarse.free
    rfm = rf * fine.free
    rc2 = np.zeros_like(rc)
    cpu.fe_restrict(rfm, rc2, coarse.nodes, coarse.free, *dims)
    xf2 = np.zeros_like(xf)
    cpu.fe_prolong_add(ecm, xf2, fine.nodes, fine.free, *dims)
    assert rc2 @ ecm == pytest.approx(rfm @ xf2, rel=1e-12)


def test_energy_kernel_matches_the_numba_twin(hostlib, grids):
    fine, _ = grids
    kb = hex_stiffness_blocks(0.3)
    x = np.random.default_rng(3).standard_normal(3 * fine.n_nodes)
    nz, ny, nx = fine.shape
    ref = np.empty(nz * ny * nx)
    cpu.fe_energy(x, fine.emod, kb, ref, nz, ny, nx)
    out = np.full_like(ref, np.nan)
    _launch(hostlib, "vb_fe_energy", ref.size, [x, fine.emod, kb, out, np.int64(nz), np.int64(ny), np.int64(nx)])
    assert (ref > 0).sum() == (fine.emod > 0).sum()
    np.testing.assert_allclose(out, ref, rtol=1e-13)


@pytest.mark.gpu
def test_gpu_solver_matches_the_cpu_solver():
    import cupy

    mask = random_structure((20, 18, 16), 1)
    for boundary in ("constrained", "frictionless"):
        c = apparent_modulus(mask, boundary=boundary, rtol=1e-9)
        g = apparent_modulus(cupy.asarray(mask), boundary=boundary, rtol=1e-9)
        assert g.backend == "cupy" and isinstance(g.sed_mpa, cupy.ndarray)
        assert g.e_app_mpa == pytest.approx(c.e_app_mpa, rel=1e-7)
        np.testing.assert_allclose(cupy.asnumpy(g.sed_mpa), c.sed_mpa, rtol=1e-4, atol=1e-6)
