"""Matrix-free preconditioned conjugate gradients with a geometric multigrid V-cycle.

The system
----------
With ``u = u_D + w`` (``u_D`` the prescribed displacements, ``w`` zero on the fixed
degrees of freedom) the free degrees of freedom solve ``A_ff w = b = -(A u_D)_f``. ``A`` is
never assembled on the fine grids: ``A x`` is computed element by element (gather form,
see :mod:`voxelbone.mechanics.cpu`).

Preconditioner: one W-cycle over Galerkin coarse levels
--------------------------------------------------------
Level ``l+1`` has nodes at twice the spacing of level ``l``; ``P`` is trilinear
interpolation restricted to the free degrees of freedom (``P = M_l P̂ M_{l+1}``) and
``R = Pᵀ`` (full weighting). The fine operator is applied element by element. Every
coarse operator is the Galerkin product ``A_{l+1} = Pᵀ A_l P``, stored as a 27-point node
stencil of 3×3 blocks per active coarse node (:func:`voxelbone.mechanics.cpu.fe_galerkin_fine`
from the fine elements, :func:`~voxelbone.mechanics.cpu.fe_galerkin_coarse` from the
stencil level below). Rediscretising the coarse grids from averaged moduli (ParOSol's
choice, Flaig & Arbenz 2011) makes thin trabeculae soft or stiff at random on the coarse
grids; the Galerkin operator is exactly the fine energy of the interpolated field, so the
coarse correction is the best one ``P`` allows. A coarse degree of freedom whose column of
``P`` meets no free fine one has a zero diagonal and is dropped.

On level ``l`` with right-hand side ``b``:

1. pre-smooth from ``x = 0`` with a Chebyshev polynomial of degree ``k_l`` in ``D⁻¹A``
   (``D`` the diagonal), which damps the spectrum on ``[λ/α, λ]`` (Adams, Brezina, Hu &
   Tuminaro 2003); ``λ`` is 1.1 × a power-iteration estimate of ``λ_max(D⁻¹A)`` on that
   level (on the fine level at most the bound that holds for every voxel mesh,
   :func:`voxelbone.mechanics.elements.jacobi_bound`); ``k_l = k·2^l`` (capped): coarse
   sweeps are cheap;
2. restrict the residual, solve the coarse problem by ``cycles`` iterations of the next
   level's cycle (2: a W-cycle, as ParOSol), add ``P x_c``;
3. post-smooth with the same polynomial from the corrected ``x``.

Pre- and post-smoothers are the same symmetric operator, ``R = Pᵀ`` and the coarse
iterations are a symmetric operator, so the cycle is a symmetric positive definite
preconditioner and conjugate gradients apply. The coarsest grid (a few thousand unknowns)
is assembled from its stencil and factorised once (SuperLU, on the host).

Convergence: ``‖b - A_ff w‖₂ ≤ rtol · ‖b‖₂``; a warm start only changes the initial
``w``, not the meaning of ``rtol``.

The solver is written once for any array module (NumPy or CuPy): the backend object
supplies the grid operators (:class:`CpuOps` here, :class:`voxelbone.mechanics.gpu.GpuOps`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from . import cpu
from .elements import corner_offsets, galerkin_blocks, hex_stiffness, hex_stiffness_blocks, jacobi_bound, octant_weights
from .problem import Level

__all__ = ["ConvergenceError", "CpuOps", "Multigrid", "SOLVE_VECTORS", "assemble", "assemble_stencil", "build_galerkin",
           "pcg", "state_bytes"]

#: Stencil entries per active coarse node: 27 neighbours × 3×3 blocks.
STENCIL_ENTRIES = 27 * 9


class ConvergenceError(RuntimeError):
    """The solver did not reach the requested tolerance within its iteration cap."""

    def __init__(self, message: str, iterations: int, relative_residual: float) -> None:
        super().__init__(message)
        self.iterations = iterations
        self.relative_residual = relative_residual


def assemble(level: Level, nu: float, free_only: bool = True) -> tuple[sp.csr_matrix, np.ndarray]:
    """Sparse stiffness of one level (host), restricted to its free dofs; returns (matrix, dof indices)."""
    nz, ny, nx = level.shape
    NZ, NY, NX = level.node_shape
    emod = level.emod[1:-1, 1:-1, 1:-1]
    ks, js, is_ = np.nonzero(emod)
    corners = corner_offsets()
    node = ((ks[:, None] + corners[None, :, 0]) * NY + js[:, None] + corners[None, :, 1]) * NX \
        + is_[:, None] + corners[None, :, 2]
    dofs = (3 * node[:, :, None] + np.arange(3)[None, None, :]).reshape(-1, 24)
    vals = (emod[ks, js, is_] * level.scale)[:, None, None] * hex_stiffness(nu)[None]
    rows = np.broadcast_to(dofs[:, :, None], vals.shape).ravel()
    cols = np.broadcast_to(dofs[:, None, :], vals.shape).ravel()
    n = 3 * NZ * NY * NX
    a = sp.coo_matrix((vals.ravel(), (rows, cols)), shape=(n, n)).tocsr()
    keep = np.flatnonzero(level.free) if free_only else np.arange(n)
    return a[keep][:, keep].tocsc(), keep


def assemble_stencil(st: np.ndarray, nodes: np.ndarray, free: np.ndarray,
                     node_shape: tuple[int, int, int]) -> tuple[sp.csc_matrix, np.ndarray]:
    """Sparse matrix of a stencil level (host), restricted to its free dofs; returns (matrix, dof indices)."""
    NZ, NY, NX = node_shape
    k, j, i = np.unravel_index(nodes, node_shape)
    off = np.stack(np.meshgrid(*(np.arange(-1, 2),) * 3, indexing="ij"), axis=-1).reshape(27, 3)
    nk, nj, ni = k[:, None] + off[:, 0], j[:, None] + off[:, 1], i[:, None] + off[:, 2]
    inside = (nk >= 0) & (nk < NZ) & (nj >= 0) & (nj < NY) & (ni >= 0) & (ni < NX)
    nb_ = np.where(inside, (nk * NY + nj) * NX + ni, 0)
    rows = np.broadcast_to((3 * nodes[:, None, None, None] + np.arange(3)[:, None]), st.shape)
    cols = np.broadcast_to(3 * nb_[:, :, None, None] + np.arange(3)[None, :], st.shape)
    vals = np.where(inside[:, :, None, None], st, 0.0)
    n = 3 * NZ * NY * NX
    a = sp.coo_matrix((vals.ravel(), (rows.ravel(), cols.ravel())), shape=(n, n)).tocsr()
    keep = np.flatnonzero(free)
    return a[keep][:, keep].tocsc(), keep


def build_galerkin(ops: Any) -> None:
    """Build the Galerkin stencils of every coarse level of ``ops`` (finest first) and drop dead coarse dofs.

    ``ops`` supplies ``_galerkin(level)`` (the stencil of ``level`` from ``level - 1``) and
    ``free`` (per-level dof masks, updated here where the Galerkin diagonal is zero).
    """
    xp = ops.xp
    for lv in range(1, len(ops.levels)):
        ops._galerkin(lv)
        d = ops.diag(lv)
        free = ops.free[lv]
        ops.free[lv] = xp.where((free != 0) & (d > 0), free, 0).astype(free.dtype)


class CpuOps:
    """Grid operators on the host (Numba kernels of :mod:`voxelbone.mechanics.cpu`).

    Level 0 is applied element by element; every coarser level is a Galerkin stencil
    (``self.stencils[level]``, shape ``(active nodes, 27, 3, 3)``), built on construction.
    """

    xp = np

    def __init__(self, levels: list[Level], nu: float) -> None:
        self.levels = levels
        self.kb = hex_stiffness_blocks(nu)
        self.gk = galerkin_blocks(nu)
        self.wt = octant_weights()
        self.free = [lv.free.copy() for lv in levels]
        self.ones = [np.ones_like(lv.free) for lv in levels]
        self.stencils: list[Any] = [None] * len(levels)
        build_galerkin(self)

    def _galerkin(self, level: int) -> None:
        f, c = self.levels[level - 1], self.levels[level]
        st = np.zeros((c.nodes.size, 27, 3, 3))
        if level == 1:
            cpu.fe_galerkin_fine(st, f.emod, c.nodes, self.free[0], self.kb, self.gk, self.wt, f.scale,
                                 *f.node_shape, *c.node_shape)
        else:
            index = np.full(f.n_nodes, -1, dtype=np.int64)
            index[f.nodes] = np.arange(f.nodes.size)
            cpu.fe_galerkin_coarse(st, self.stencils[level - 1], index, c.nodes, self.free[level - 1],
                                   *f.node_shape, *c.node_shape)
        self.stencils[level] = st

    def zeros(self, level: int) -> np.ndarray:
        return np.zeros(3 * self.levels[level].n_nodes)

    def dot(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(cpu.fe_dot(a, b))

    def apply(self, level: int, x: np.ndarray, y: np.ndarray, masked: bool = True) -> None:
        lv = self.levels[level]
        mask = self.free[level] if masked else self.ones[level]
        if level == 0:
            cpu.fe_apply(x, y, lv.emod, lv.nodes, mask, self.kb, lv.scale, *lv.node_shape)
        else:
            cpu.fe_stencil_apply(x, y, self.stencils[level], lv.nodes, mask, *lv.node_shape)

    def diag(self, level: int) -> np.ndarray:
        lv = self.levels[level]
        out = self.zeros(level)
        if level == 0:
            cpu.fe_diag(out, lv.emod, lv.nodes, self.kb, lv.scale, *lv.node_shape)
        else:
            c = np.arange(3)
            out.reshape(-1, 3)[lv.nodes] = self.stencils[level][:, 13, c, c]
        return out

    def restrict(self, level: int, rf: np.ndarray, rc: np.ndarray) -> None:
        c = self.levels[level + 1]
        cpu.fe_restrict(rf, rc, c.nodes, self.free[level + 1], *self.levels[level].node_shape, *c.node_shape)

    def prolong_add(self, level: int, ec: np.ndarray, xf: np.ndarray) -> None:
        f = self.levels[level]
        cpu.fe_prolong_add(ec, xf, f.nodes, self.free[level], *f.node_shape, *self.levels[level + 1].node_shape)

    def energy(self, x: np.ndarray) -> np.ndarray:
        lv = self.levels[0]
        out = np.empty(int(np.prod(lv.shape)))
        cpu.fe_energy(x, lv.emod, self.kb, out, *lv.shape)
        return out.reshape(lv.shape)

    def arrays(self) -> list[Any]:
        """The arrays the solve holds (for the memory count): fine moduli, node lists, masks, stencils."""
        lv0 = self.levels[0]
        return ([lv0.emod] + [lv.nodes for lv in self.levels] + self.free + self.ones
                + [s for s in self.stencils if s is not None])

    def to_host(self, a: Any) -> np.ndarray:
        return a

    def from_host(self, a: np.ndarray) -> Any:
        return a


class Multigrid:
    """The W-cycle (or V-cycle) preconditioner over a level hierarchy (finest first).

    Parameters
    ----------
    ops
        Grid operators (:class:`CpuOps` or ``GpuOps``), Galerkin coarse levels built.
    nu
        Poisson's ratio (for the fine level's spectral bound).
    degree
        Degree of the Chebyshev smoother on the fine level, pre and post (default 3);
        level ``l`` uses ``degree·2^l``, at most ``max_degree``.
    lower_ratio
        The smoother damps ``[λ/lower_ratio, λ]`` (default 10).
    cycles
        Coarse iterations per level: 1 is a V-cycle, 2 a W-cycle (default). Measured on
        crops of the 128³ lumbar phantom (rtol 1e-6): the V-cycle needs about twice the
        iterations of the W-cycle, whose coarse sweeps cost little (benchmarks/RESULTS.md).
    max_degree
        Cap of the coarse levels' smoother degree (default 16).
    power_iterations
        Steps of the power iteration that estimates ``λ_max(D⁻¹A)`` per level (default 12).
    """

    def __init__(self, ops: Any, nu: float, degree: int = 3, lower_ratio: float = 10.0, cycles: int = 2,
                 max_degree: int = 16, power_iterations: int = 12) -> None:
        if degree < 1:
            raise ValueError(f"Chebyshev degree must be ≥ 1, got {degree}")
        if cycles < 1:
            raise ValueError(f"cycles must be ≥ 1, got {cycles}")
        self.cycles = cycles
        self.ops = ops
        self.xp = self.ops.xp
        n = len(ops.levels)
        self.degree = [min(degree * 2**lv, max(degree, max_degree)) for lv in range(n)]
        self.inv_diag = []
        for lv in range(n):
            d = ops.diag(lv)
            free = ops.free[lv]
            self.inv_diag.append(self.xp.where(free != 0, 1.0 / self.xp.where(d > 0, d, 1.0), 0.0))
        # c, e: the repeated coarse iterations of a W-cycle, on the coarse levels only
        names = [("x", "r", "d", "t", "b") + (("c", "e") if cycles > 1 and lv > 0 else ()) for lv in range(n)]
        self.buf = [{k: ops.zeros(lv) for k in names[lv]} for lv in range(n)]
        self.theta, self.delta, self.lam = [], [], []
        for lv in range(n - 1):
            lam = 1.1 * self._power(lv, power_iterations)
            if lv == 0:
                lam = min(lam, jacobi_bound(nu))
            self.lam.append(lam)
            self.theta.append(0.5 * (lam + lam / lower_ratio))
            self.delta.append(0.5 * (lam - lam / lower_ratio))
        last = ops.levels[-1]
        if n == 1:
            coarse, self.coarse_dofs = assemble(last, nu)
        else:
            coarse, self.coarse_dofs = assemble_stencil(ops.to_host(ops.stencils[-1]), last.nodes,
                                                        ops.to_host(ops.free[-1]), last.node_shape)
        self.coarse_lu = spla.splu(coarse) if coarse.shape[0] else None

    def _power(self, level: int, steps: int) -> float:
        """Power-iteration estimate of ``λ_max(D⁻¹A)`` on ``level`` (a fixed start vector: deterministic)."""
        ops, dinv = self.ops, self.inv_diag[level]
        x, y = self.buf[level]["x"], self.buf[level]["t"]
        start = np.random.default_rng(0).uniform(0.5, 1.5, x.shape[0])
        x[...] = ops.from_host(start)
        x *= ops.free[level]
        lam = 0.0
        for _ in range(steps):
            nx = math.sqrt(ops.dot(x, x))
            if nx == 0.0:
                return 1.0
            ops.apply(level, x, y)
            y *= dinv
            ny = math.sqrt(ops.dot(y, y))
            lam = ny / nx
            self.xp.multiply(y, 1.0 / ny if ny > 0 else 0.0, out=x)
        x[...] = 0.0
        y[...] = 0.0
        return lam if lam > 0 else 1.0

    # -- smoother --------------------------------------------------------------------
    def _chebyshev(self, level: int, x: Any, r: Any, final_residual: bool) -> None:
        """``degree`` Chebyshev steps on ``A x = b`` given ``r = b - A x``; updates ``x`` (and ``r``)."""
        ops, buf, dinv = self.ops, self.buf[level], self.inv_diag[level]
        d, t = buf["d"], buf["t"]
        theta, delta, degree = self.theta[level], self.delta[level], self.degree[level]
        sigma = theta / delta
        rho = 1.0 / sigma
        self.xp.multiply(dinv, r, out=d)
        d *= 1.0 / theta
        x += d
        for k in range(1, degree + 1):
            if k == degree and not final_residual:
                break
            ops.apply(level, d, t)
            r -= t
            if k == degree:
                break
            rho_new = 1.0 / (2.0 * sigma - rho)
            d *= rho_new * rho
            d += (2.0 * rho_new / delta) * (dinv * r)
            x += d
            rho = rho_new

    def _coarse_solve(self, b: Any, x: Any) -> None:
        x[...] = 0.0
        if self.coarse_lu is None:
            return
        bh = self.ops.to_host(b)[self.coarse_dofs]
        xh = np.zeros(x.shape[0])
        xh[self.coarse_dofs] = self.coarse_lu.solve(bh)
        x[...] = self.ops.from_host(xh)

    def vcycle(self, level: int, b: Any, x: Any) -> None:
        """``x = B_level b`` (``x`` is overwritten)."""
        if level == len(self.ops.levels) - 1:
            self._coarse_solve(b, x)
            return
        ops, buf = self.ops, self.buf[level]
        r, t = buf["r"], buf["t"]
        x[...] = 0.0
        r[...] = b
        self._chebyshev(level, x, r, final_residual=True)
        nb, nx = self.buf[level + 1]["b"], self.buf[level + 1]["x"]
        ops.restrict(level, r, nb)
        self.vcycle(level + 1, nb, nx)
        if level + 1 < len(ops.levels) - 1:  # W-cycle: repeat the coarse correction (not on the exact coarsest)
            cb = self.buf[level + 1]
            for _ in range(self.cycles - 1):
                ops.apply(level + 1, nx, cb["c"])
                self.xp.subtract(nb, cb["c"], out=cb["c"])
                self.vcycle(level + 1, cb["c"], cb["e"])
                nx += cb["e"]
        ops.prolong_add(level, nx, x)
        ops.apply(level, x, t)
        self.xp.subtract(b, t, out=r)
        self._chebyshev(level, x, r, final_residual=False)

    def __call__(self, r: Any, z: Any) -> None:
        self.vcycle(0, r, z)


#: Fine-grid vectors of a solve outside the preconditioner: b, w, u_D, u, f and CG's r, q, z, p.
SOLVE_VECTORS = 9


def state_bytes(ops: Any, mg: Multigrid) -> int:
    """Bytes of the solver's arrays on its device: grids, preconditioner buffers and the solve's vectors."""
    arrays = ops.arrays() + mg.inv_diag + [a for b in mg.buf for a in b.values()]
    return int(sum(a.nbytes for a in arrays) + SOLVE_VECTORS * 8 * 3 * ops.levels[0].n_nodes)


def pcg(ops: Any, precond: Any, b: Any, x: Any, rtol: float, max_iterations: int) -> tuple[int, float]:
    """Preconditioned CG on ``A_ff x = b`` from the given ``x`` (updated in place).

    Returns
    -------
    (iterations, relative residual ‖b - A x‖/‖b‖)

    Raises
    ------
    ConvergenceError
        When ``rtol`` is not reached within ``max_iterations`` or the iteration breaks down.
    """
    xp = ops.xp
    bnorm = math.sqrt(ops.dot(b, b))
    if bnorm == 0.0:
        x[...] = 0.0
        return 0, 0.0
    r = ops.zeros(0)
    q = ops.zeros(0)
    ops.apply(0, x, q)
    xp.subtract(b, q, out=r)
    res = math.sqrt(ops.dot(r, r)) / bnorm
    if res <= rtol:
        return 0, res
    z = ops.zeros(0)
    precond(r, z)
    p = z.copy()
    rz = ops.dot(r, z)
    for it in range(1, max_iterations + 1):
        ops.apply(0, p, q)
        pq = ops.dot(p, q)
        if not (pq > 0.0 and math.isfinite(pq)):
            raise ConvergenceError(f"conjugate gradients broke down at iteration {it} (pᵀAp = {pq:g}); "
                                   "the stiffness matrix is not positive definite", it, res)
        alpha = rz / pq
        x += alpha * p
        r -= alpha * q
        res = math.sqrt(ops.dot(r, r)) / bnorm
        if res <= rtol:
            return it, res
        precond(r, z)
        rz_new = ops.dot(r, z)
        p *= rz_new / rz
        p += z
        rz = rz_new
    raise ConvergenceError(
        f"the solver did not converge: relative residual {res:.3g} after {max_iterations} iterations "
        f"(asked for {rtol:g}); raise max_iterations or loosen rtol", max_iterations, res)
