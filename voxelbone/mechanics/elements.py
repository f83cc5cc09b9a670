"""The 8-node hexahedron of voxel micro-FE: its 24×24 stiffness matrix, integrated once.

Element
-------
A voxel is a cube of edge ``h`` with trilinear shape functions on its 8 corners. Local
corner ``b = 4·bz + 2·by + bx`` (``bz, by, bx ∈ {0, 1}``) sits at ``(bz, by, bx)·h``; the
displacement has three components in the array's axis order (axis 0, 1, 2). Corner ``b``
owns degrees of freedom ``3b, 3b+1, 3b+2``.

Stiffness
---------
.. math::

    K_e = \\int_{V_e} B^T D B \\, dV = E_e \\, h \\, \\hat K(\\nu),

with ``B`` the strain-displacement matrix (engineering shear strains), ``D`` the isotropic
elasticity matrix for Young's modulus 1 and Poisson's ratio ``ν``, integrated exactly by
2×2×2 Gauss-Legendre quadrature (the integrand is a polynomial of degree ≤ 2 in each
coordinate). ``K̂`` is the matrix of the unit cube with ``E = 1``; every element of a voxel
mesh uses it scaled by its modulus and edge, so it is computed once per ``ν``.

References
----------
Hughes, T. J. R. (2000). The Finite Element Method, ch. 3 (isoparametric elements).
van Rietbergen, B., Weinans, H., Huiskes, R., Odgaard, A. (1995). A new method to determine
trabecular bone elastic properties and loading using micromechanical finite-element models.
J. Biomech. 28, 69-81.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["POISSON_RATIO", "corner_offsets", "elasticity_matrix", "galerkin_blocks", "hex_stiffness",
           "hex_stiffness_blocks", "jacobi_bound", "octant_weights"]

#: Poisson's ratio of bone tissue in voxel µFE (model.md §6).
POISSON_RATIO = 0.3


def corner_offsets() -> np.ndarray:
    """``(8, 3)`` int array: offset (axis 0, 1, 2) of local corner ``b = 4·b0 + 2·b1 + b2``."""
    b = np.arange(8)
    return np.stack([(b >> 2) & 1, (b >> 1) & 1, b & 1], axis=1)


def elasticity_matrix(nu: float, e: float = 1.0) -> np.ndarray:
    """Isotropic 6×6 elasticity matrix (Voigt order 00, 11, 22, 12, 02, 01; engineering shear)."""
    if not -1.0 < nu < 0.5:
        raise ValueError(f"Poisson's ratio must lie in (-1, 0.5), got {nu}")
    lam = e * nu / ((1 + nu) * (1 - 2 * nu))
    mu = e / (2 * (1 + nu))
    d = np.zeros((6, 6))
    d[:3, :3] = lam
    d[np.arange(3), np.arange(3)] += 2 * mu
    d[np.arange(3, 6), np.arange(3, 6)] = mu
    return d


def _strain_displacement(xi: np.ndarray) -> np.ndarray:
    """6×24 matrix B at local point ``xi`` (unit cube, edge 1)."""
    corners = corner_offsets()
    grads = np.empty((8, 3))
    for b in range(8):
        for d in range(3):
            g = 1.0
            for k in range(3):
                f = xi[k] if corners[b, k] else 1.0 - xi[k]
                df = 1.0 if corners[b, k] else -1.0
                g *= df if k == d else f
            grads[b, d] = g
    bm = np.zeros((6, 24))
    for b in range(8):
        g0, g1, g2 = grads[b]
        c = 3 * b
        bm[0, c + 0] = g0
        bm[1, c + 1] = g1
        bm[2, c + 2] = g2
        bm[3, c + 1], bm[3, c + 2] = g2, g1  # γ12
        bm[4, c + 0], bm[4, c + 2] = g2, g0  # γ02
        bm[5, c + 0], bm[5, c + 1] = g1, g0  # γ01
    return bm


@functools.cache
def _hex_stiffness(nu: float) -> np.ndarray:
    d = elasticity_matrix(nu)
    g = 0.5 / np.sqrt(3.0)
    pts = (0.5 - g, 0.5 + g)
    k = np.zeros((24, 24))
    for a in pts:
        for b in pts:
            for c in pts:
                bm = _strain_displacement(np.array([a, b, c]))
                k += bm.T @ d @ bm * 0.125  # weights 1/2 per axis on [0, 1]
    k = 0.5 * (k + k.T)
    k.setflags(write=False)
    return k


def hex_stiffness(nu: float = POISSON_RATIO) -> np.ndarray:
    """Stiffness ``K̂`` (24×24, float64, read-only) of the unit cube for ``E = 1``.

    Multiply by ``E·h`` (modulus times edge) for an element of edge ``h``.
    """
    return _hex_stiffness(float(nu))


def hex_stiffness_blocks(nu: float = POISSON_RATIO) -> np.ndarray:
    """``K̂`` as ``(8, 8, 3, 3)`` blocks: ``[a, b]`` couples corner ``a`` with corner ``b`` (C-contiguous copy)."""
    k = hex_stiffness(nu)
    return np.ascontiguousarray(k.reshape(8, 3, 8, 3).transpose(0, 2, 1, 3))


def jacobi_bound(nu: float = POISSON_RATIO) -> float:
    """Upper bound of the spectrum of ``D⁻¹A`` for any voxel mesh (``D`` = diagonal of ``A``).

    ``xᵀAx = Σ_e E_e h xₑᵀK̂xₑ ≤ λ̂ Σ_e E_e h xₑᵀ diag(K̂) xₑ ≤ λ̂ xᵀDx`` with
    ``λ̂ = λ_max(diag(K̂)^{-1/2} K̂ diag(K̂)^{-1/2})``: one number for every mesh and level,
    which the Chebyshev smoother uses instead of a power iteration.
    """
    k = hex_stiffness(nu)
    s = 1.0 / np.sqrt(np.diag(k))
    return float(np.linalg.eigvalsh(k * s[:, None] * s[None, :]).max())


def octant_weights() -> np.ndarray:
    """``(8, 8, 8)`` trilinear weights ``W[o, p, a]``: coarse corner ``a`` at corner ``p`` of fine octant ``o``.

    A coarse cell of edge 2 holds 8 fine elements (octant ``o = 4·oz + 2·oy + ox``); the
    fine corner ``p`` of octant ``o`` sits at ``(o + p)/2`` in the cell's unit coordinates,
    where the hat function of coarse corner ``a`` is ``Π_d (a_d ? x_d : 1 - x_d)``.
    """
    c = corner_offsets()
    x = (c[:, None, :] + c[None, :, :]) / 2.0  # (o, p, axis)
    a = c[None, None, :, :]
    return np.prod(np.where(a == 1, x[:, :, None, :], 1.0 - x[:, :, None, :]), axis=-1)


@functools.cache
def _galerkin_blocks(nu: float) -> np.ndarray:
    w = octant_weights()
    k = hex_stiffness(nu).reshape(8, 3, 8, 3)
    g = np.einsum("opa,pcqd,oqb->oabcd", w, k, w)
    g = np.ascontiguousarray(g)
    g.setflags(write=False)
    return g


def galerkin_blocks(nu: float = POISSON_RATIO) -> np.ndarray:
    """``(8, 8, 8, 3, 3)``: ``Wₒᵀ K̂ Wₒ`` as blocks ``[o, a, b]``: the element of octant ``o`` seen from its coarse cell.

    The Galerkin operator ``PᵀAP`` of the first coarse level is the sum over fine elements
    of ``E_e h`` times these blocks (elements with a fixed degree of freedom excepted).
    """
    return _galerkin_blocks(float(nu))
