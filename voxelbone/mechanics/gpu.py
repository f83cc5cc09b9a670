"""GPU grid operators of the micro-FE solver: CuPy launches of ``kernels/fe_solver.cu``.

Same contract as :class:`voxelbone.mechanics.solver.CpuOps` (the kernels mirror
:mod:`voxelbone.mechanics.cpu` line by line); the conjugate-gradient and multigrid vector
operations run as CuPy array expressions. Every launch uses the index-width
specialisation of the finest grid (:func:`fe_defines`: 32-bit index arithmetic below 2³¹
degrees of freedom), like the other device code. The coarsest grid is solved on the host
(a few thousand unknowns: one small transfer each way per coarsest solve).

Device memory per voxel of the fine grid (node grid ≈ voxel grid), float64 vectors of
3 components: the solver holds 9 vectors for the solve (conjugate gradients, prescribed and
total displacement, forces) and 5 per multigrid level (x, r, d, t, b; 7 on the coarse
levels, with c, e of the W-cycle) plus the inverse diagonal, the padded fine moduli (8 B), the dof masks and the
Galerkin stencils of the coarse levels (243 float64 per active coarse node);
``MechanicsResult.state_bytes`` counts what is actually allocated (the same arrays as the
CPU solver's, :func:`voxelbone.mechanics.solver.state_bytes`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import get_function, index_defines
from .elements import galerkin_blocks, hex_stiffness_blocks, octant_weights
from .problem import Level

__all__ = ["FE_KERNELS", "GpuOps", "fe_defines"]

#: The kernels of ``kernels/fe_solver.cu``.
FE_KERNELS = ("vb_fe_apply", "vb_fe_diag", "vb_fe_restrict", "vb_fe_prolong_add", "vb_fe_energy", "vb_fe_stencil_apply",
              "vb_fe_galerkin_fine", "vb_fe_galerkin_coarse")

_BLOCK = 256
_MAX_BLOCKS = 65535 * 8


def _grid(n: int) -> tuple[int]:
    return (max(1, min((n + _BLOCK - 1) // _BLOCK, _MAX_BLOCKS)),)


def fe_defines(shape: tuple[int, int, int]) -> tuple[tuple[str, int], ...]:
    """Index-width specialisation of the FE kernels for a fine grid of ``shape`` elements.

    The largest index any FE kernel forms is a degree of freedom of the fine node grid
    (``3 (nz+1)(ny+1)(nx+1)``) or a padded element (``(nz+2)(ny+2)(nx+2)``); coarser levels
    are smaller. One grid stride of the largest launch is added
    (:func:`voxelbone.kernels.index_defines`).

    Parameters
    ----------
    shape : tuple of int
        Elements ``(nz, ny, nx)`` of the finest level.

    Returns
    -------
    tuple
        ``(("VB_INDEX32", 1),)`` or ``(("VB_INDEX32", 0),)``, for
        :func:`voxelbone.kernels.get_function`.
    """
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive element counts (nz, ny, nx), got {shape}")
    nz, ny, nx = (int(v) for v in shape)
    dofs = 3 * (nz + 1) * (ny + 1) * (nx + 1)
    padded = (nz + 2) * (ny + 2) * (nx + 2)
    stride = _grid(max(dofs, nz * ny * nx))[0] * _BLOCK
    return index_defines(max(dofs, padded) + stride)


class GpuOps:
    """Grid operators on a CUDA device (Galerkin stencils of the coarse levels built on construction)."""

    def __init__(self, levels: list[Level], nu: float) -> None:
        import cupy  # noqa: PLC0415

        from .solver import build_galerkin  # noqa: PLC0415

        self.xp = cupy
        self.levels = levels
        self.kb = cupy.asarray(hex_stiffness_blocks(nu).reshape(-1))
        self.emod = cupy.asarray(levels[0].emod)
        self.nodes = [cupy.asarray(lv.nodes) for lv in levels]
        self.free = [cupy.asarray(lv.free) for lv in levels]
        self.ones = [cupy.ones_like(f) for f in self.free]
        self.stencils: list[Any] = [None] * len(levels)
        self.defines = fe_defines(levels[0].shape)
        self._k = {name: get_function("fe_solver", name, self.defines) for name in FE_KERNELS}
        gk, wt = cupy.asarray(galerkin_blocks(nu).reshape(-1)), cupy.asarray(octant_weights().reshape(-1))
        self._galerkin_tables = (gk, wt)
        build_galerkin(self)

    def _galerkin(self, level: int) -> None:
        f, c = self.levels[level - 1], self.levels[level]
        n = c.nodes.shape[0]
        st = self.xp.zeros((n, 27, 3, 3))
        dims = tuple(np.int64(v) for v in f.node_shape + c.node_shape)
        if level == 1:
            gk, wt = self._galerkin_tables
            self._k["vb_fe_galerkin_fine"](_grid(n), (_BLOCK,), (st, self.emod, self.nodes[level], np.int64(n),
                                                                  self.free[0], self.kb, gk, wt, np.float64(f.scale))
                                           + dims)
        else:
            index = self.xp.full(f.n_nodes, -1, dtype=self.xp.int64)
            index[self.nodes[level - 1]] = self.xp.arange(f.nodes.shape[0], dtype=self.xp.int64)
            self._k["vb_fe_galerkin_coarse"](_grid(n), (_BLOCK,), (st, self.stencils[level - 1], index,
                                                                    self.nodes[level], np.int64(n),
                                                                    self.free[level - 1]) + dims)
        self.stencils[level] = st

    def zeros(self, level: int) -> Any:
        return self.xp.zeros(3 * self.levels[level].n_nodes)

    def dot(self, a: Any, b: Any) -> float:
        return float(self.xp.dot(a, b))

    def apply(self, level: int, x: Any, y: Any, masked: bool = True) -> None:
        lv = self.levels[level]
        n = lv.nodes.shape[0]
        NZ, NY, NX = (np.int64(v) for v in lv.node_shape)
        mask = self.free[level] if masked else self.ones[level]
        if level == 0:
            self._k["vb_fe_apply"](_grid(n), (_BLOCK,), (x, y, self.emod, self.nodes[0], np.int64(n), mask, self.kb,
                                                          np.float64(lv.scale), NZ, NY, NX))
        else:
            self._k["vb_fe_stencil_apply"](_grid(n), (_BLOCK,), (x, y, self.stencils[level], self.nodes[level],
                                                                  np.int64(n), mask, NZ, NY, NX))

    def diag(self, level: int) -> Any:
        lv = self.levels[level]
        n = lv.nodes.shape[0]
        out = self.zeros(level)
        if level == 0:
            NZ, NY, NX = lv.node_shape
            self._k["vb_fe_diag"](_grid(n), (_BLOCK,), (out, self.emod, self.nodes[0], np.int64(n), self.kb,
                                                         np.float64(lv.scale), np.int64(NZ), np.int64(NY),
                                                         np.int64(NX)))
        else:
            c = self.xp.arange(3)
            out.reshape(-1, 3)[self.nodes[level]] = self.stencils[level][:, 13, c, c]
        return out

    def restrict(self, level: int, rf: Any, rc: Any) -> None:
        c = self.levels[level + 1]
        n = c.nodes.shape[0]
        dims = tuple(np.int64(v) for v in self.levels[level].node_shape + c.node_shape)
        self._k["vb_fe_restrict"](_grid(n), (_BLOCK,), (rf, rc, self.nodes[level + 1], np.int64(n),
                                                         self.free[level + 1]) + dims)

    def prolong_add(self, level: int, ec: Any, xf: Any) -> None:
        f = self.levels[level]
        n = f.nodes.shape[0]
        dims = tuple(np.int64(v) for v in f.node_shape + self.levels[level + 1].node_shape)
        self._k["vb_fe_prolong_add"](_grid(n), (_BLOCK,), (ec, xf, self.nodes[level], np.int64(n),
                                                            self.free[level]) + dims)

    def energy(self, x: Any) -> Any:
        lv = self.levels[0]
        n = int(np.prod(lv.shape))
        out = self.xp.empty(n)
        nz, ny, nx = lv.shape
        self._k["vb_fe_energy"](_grid(n), (_BLOCK,), (x, self.emod, self.kb, out, np.int64(nz), np.int64(ny),
                                                       np.int64(nx)))
        return out.reshape(lv.shape)

    def arrays(self) -> list[Any]:
        """The device arrays these operators hold (for the memory count)."""
        return ([self.emod] + self.nodes + self.free + self.ones + [self.kb, *self._galerkin_tables]
                + [s for s in self.stencils if s is not None])

    def to_host(self, a: Any) -> np.ndarray:
        return self.xp.asnumpy(a)

    def from_host(self, a: np.ndarray) -> Any:
        return self.xp.asarray(a)
