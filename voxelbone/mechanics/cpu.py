"""CPU kernels of the micro-FE solver (Numba, ``parallel=True``), race-free by gather form.

Every kernel visits a list of *active* nodes (nodes of at least one element with a
non-zero modulus) and writes only that node's own entries, so threads never write the
same memory and no colouring is needed:

* :func:`fe_apply` — ``y = m ⊙ (A x)``: each node gathers, from its ≤ 8 elements, the
  three rows of ``E_e·s·K̂`` that belong to it (``s`` the element edge in fine voxels);
* :func:`fe_diag` — the diagonal of ``A`` (Jacobi scaling of the smoother);
* :func:`fe_restrict` / :func:`fe_prolong_add` — full-weighting restriction and trilinear
  prolongation between a grid and the grid of twice the spacing (``R = Pᵀ``);
* :func:`fe_energy` — strain energy density ``½ E_e uₑᵀK̂uₑ`` per element;
* :func:`fe_galerkin_fine` / :func:`fe_galerkin_coarse` — the Galerkin operator ``PᵀAP`` of
  a coarse level as a 27-point node stencil of 3×3 blocks, from the fine elements or from
  the stencil level below; :func:`fe_stencil_apply` applies it.

Array layout (shared with ``kernels/fe_solver.cu``): a node grid of ``(NZ, NY, NX) =
(nz+1, ny+1, nx+1)`` nodes, vectors flat float64 of length ``3·NZ·NY·NX`` (node-major,
component in axis order), the element moduli zero-padded by one element on every side,
shape ``(nz+2, ny+2, nx+2)``, so node ``(k, j, i)`` finds its elements at padded indices
``(k+oz, j+oy, i+ox)``, ``o ∈ {0, 1}³``; masks uint8 per degree of freedom (1 = free).

Threads: Numba's OpenMP workers spin between the many short kernels of a multigrid cycle; on a
machine shared with other jobs ``OMP_WAIT_POLICY=PASSIVE`` or ``NUMBA_NUM_THREADS=1`` is
faster (benchmarks/RESULTS.md, micro-FE section).
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["fe_apply", "fe_diag", "fe_dot", "fe_energy", "fe_galerkin_coarse", "fe_galerkin_fine", "fe_prolong_add",
           "fe_restrict", "fe_stencil_apply"]

_opts = dict(parallel=True, cache=True, fastmath=False, nogil=True)


@nb.njit(inline="always")
def _node_row(x, emod, kb, n, NY, NX, diag_only):
    """``Σ_e E_e K̂[a(n,e), :] uₑ`` at node ``n`` (three components); with ``diag_only`` ``Σ_e E_e diag K̂[a,a]``.

    The one element loop of :func:`fe_apply` and :func:`fe_diag` (``vb_fe_node_row`` in
    ``kernels/fe_solver.cu``, the same order of arithmetic): node ``(k, j, i)`` finds its
    elements at padded ``(k+oz, j+oy, i+ox)`` and is their local corner ``a``.
    """
    sy = NX
    sz = NY * NX
    k = n // sz
    j = (n // sy) % NY
    i = n % NX
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    for oz in range(2):
        for oy in range(2):
            for ox in range(2):
                e = emod[k + oz, j + oy, i + ox]
                a = (1 - oz) * 4 + (1 - oy) * 2 + (1 - ox)
                if diag_only:
                    a0 += e * kb[a, a, 0, 0]
                    a1 += e * kb[a, a, 1, 1]
                    a2 += e * kb[a, a, 2, 2]
                    continue
                if e == 0.0:
                    continue
                base = n + (oz - 1) * sz + (oy - 1) * sy + (ox - 1)
                s0 = 0.0
                s1 = 0.0
                s2 = 0.0
                for b in range(8):
                    m = base + (b >> 2) * sz + ((b >> 1) & 1) * sy + (b & 1)
                    u0 = x[3 * m]
                    u1 = x[3 * m + 1]
                    u2 = x[3 * m + 2]
                    s0 += kb[a, b, 0, 0] * u0 + kb[a, b, 0, 1] * u1 + kb[a, b, 0, 2] * u2
                    s1 += kb[a, b, 1, 0] * u0 + kb[a, b, 1, 1] * u1 + kb[a, b, 1, 2] * u2
                    s2 += kb[a, b, 2, 0] * u0 + kb[a, b, 2, 1] * u1 + kb[a, b, 2, 2] * u2
                a0 += e * s0
                a1 += e * s1
                a2 += e * s2
    return a0, a1, a2


@nb.njit(**_opts)
def fe_apply(x, y, emod, nodes, mask, kb, scale, NZ, NY, NX):
    """``y[free dofs of active nodes] = (A x)``, ``0`` on their fixed dofs; other nodes untouched."""
    for t in nb.prange(nodes.shape[0]):
        n = nodes[t]
        a0, a1, a2 = _node_row(x, emod, kb, n, NY, NX, False)
        y[3 * n] = scale * a0 * mask[3 * n]
        y[3 * n + 1] = scale * a1 * mask[3 * n + 1]
        y[3 * n + 2] = scale * a2 * mask[3 * n + 2]


@nb.njit(**_opts)
def fe_diag(out, emod, nodes, kb, scale, NZ, NY, NX):
    """Diagonal of ``A`` at the active nodes."""
    for t in nb.prange(nodes.shape[0]):
        n = nodes[t]
        d0, d1, d2 = _node_row(out, emod, kb, n, NY, NX, True)
        out[3 * n] = scale * d0
        out[3 * n + 1] = scale * d1
        out[3 * n + 2] = scale * d2


@nb.njit(inline="always")
def _w(d):
    return 1.0 if d == 0 else 0.5


@nb.njit(inline="always")
def _child(dz, dy, dx, K, J, I, NZf, NYf, NXf):
    """Fine node ``(2K+dz, 2J+dy, 2I+dx)`` of the 3×3×3 around coarse node ``(K, J, I)``: ``(k, j, i, w)``.

    ``d ∈ {-1, 0, 1}³``; ``w`` the full-weighting weight (½ per axis off the coarse point);
    ``k = -1`` for a node outside the fine grid. The body of the one child loop of
    :func:`fe_restrict` and :func:`fe_galerkin_coarse` (``vb_fe_child`` in
    ``kernels/fe_solver.cu``).
    """
    k = 2 * K + dz
    j = 2 * J + dy
    i = 2 * I + dx
    if k < 0 or k >= NZf or j < 0 or j >= NYf or i < 0 or i >= NXf:
        return -1, -1, -1, 0.0
    return k, j, i, _w(dz) * _w(dy) * _w(dx)


@nb.njit(inline="always")
def _parent_axis(c, k, NC):
    """Coarse parent ``c`` (0 or 1) of fine node ``k`` along one axis: ``(index, weight)``, index −1 if none.

    Even ``k``: the coincident coarse node (weight 1) and no second; odd: the two
    neighbours (½ each), in increasing order; one at or past ``NC`` (the coarse node
    count) is none.
    """
    odd = k & 1
    m = (k >> 1) + c
    if c > odd or m >= NC:
        return -1, 0.0
    return m, 1.0 - 0.5 * odd


@nb.njit(inline="always")
def _parent(cz, cy, cx, k, j, i, NZc, NYc, NXc):
    """Coarse parent ``(cz, cy, cx)`` of fine node ``(k, j, i)``: ``(K, J, I, w)``.

    ``c ∈ {0, 1}³`` picks a parent per axis (:func:`_parent_axis`); ``w`` the trilinear
    weight; ``K = -1`` where there is no such parent. The body of the one parent loop of
    :func:`fe_prolong_add` and :func:`fe_galerkin_coarse` (``vb_fe_parent`` in
    ``kernels/fe_solver.cu``).
    """
    K, wz = _parent_axis(cz, k, NZc)
    J, wy = _parent_axis(cy, j, NYc)
    I, wx = _parent_axis(cx, i, NXc)
    if K < 0 or J < 0 or I < 0:
        return -1, -1, -1, 0.0
    return K, J, I, wz * wy * wx


@nb.njit(**_opts)
def fe_restrict(rf, rc, nodes_c, mask_c, NZf, NYf, NXf, NZc, NYc, NXc):
    """``rc = m_c ⊙ Pᵀ rf`` at the active coarse nodes (full weighting, weights ½ per axis off the coarse point)."""
    for t in nb.prange(nodes_c.shape[0]):
        n = nodes_c[t]
        K = n // (NYc * NXc)
        J = (n // NXc) % NYc
        I = n % NXc
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        for dz in range(-1, 2):
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    k, j, i, w = _child(dz, dy, dx, K, J, I, NZf, NYf, NXf)
                    if k < 0:
                        continue
                    m = (k * NYf + j) * NXf + i
                    s0 += w * rf[3 * m]
                    s1 += w * rf[3 * m + 1]
                    s2 += w * rf[3 * m + 2]
        rc[3 * n] = s0 * mask_c[3 * n]
        rc[3 * n + 1] = s1 * mask_c[3 * n + 1]
        rc[3 * n + 2] = s2 * mask_c[3 * n + 2]


@nb.njit(**_opts)
def fe_prolong_add(ec, xf, nodes_f, mask_f, NZf, NYf, NXf, NZc, NYc, NXc):
    """``xf += m_f ⊙ P ec`` at the active fine nodes (trilinear interpolation)."""
    for t in nb.prange(nodes_f.shape[0]):
        n = nodes_f[t]
        k = n // (NYf * NXf)
        j = (n // NXf) % NYf
        i = n % NXf
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        for cz in range(2):
            for cy in range(2):
                for cx in range(2):
                    K, J, I, w = _parent(cz, cy, cx, k, j, i, NZc, NYc, NXc)
                    if K < 0:
                        continue
                    m = (K * NYc + J) * NXc + I
                    s0 += w * ec[3 * m]
                    s1 += w * ec[3 * m + 1]
                    s2 += w * ec[3 * m + 2]
        xf[3 * n] += s0 * mask_f[3 * n]
        xf[3 * n + 1] += s1 * mask_f[3 * n + 1]
        xf[3 * n + 2] += s2 * mask_f[3 * n + 2]


@nb.njit(**_opts)
def fe_energy(x, emod, kb, out, nz, ny, nx):
    """``out[e] = ½ E_e uₑᵀK̂uₑ`` (strain energy density, element edge 1) for every element; 0 where ``E_e = 0``."""
    NY = ny + 1
    NX = nx + 1
    for t in nb.prange(nz * ny * nx):
        k = t // (ny * nx)
        j = (t // nx) % ny
        i = t % nx
        e = emod[k + 1, j + 1, i + 1]
        if e == 0.0:
            out[t] = 0.0
            continue
        ue = np.empty(24)
        for b in range(8):
            m = ((k + (b >> 2)) * NY + j + ((b >> 1) & 1)) * NX + i + (b & 1)
            ue[3 * b] = x[3 * m]
            ue[3 * b + 1] = x[3 * m + 1]
            ue[3 * b + 2] = x[3 * m + 2]
        s = 0.0
        for a in range(8):
            for c in range(3):
                r = 0.0
                for b in range(8):
                    for d in range(3):
                        r += kb[a, b, c, d] * ue[3 * b + d]
                s += ue[3 * a + c] * r
        out[t] = 0.5 * e * s


@nb.njit(**_opts)
def fe_dot(a, b):
    """``aᵀb`` as a parallel reduction (no BLAS thread pool, which spins on a shared machine)."""
    s = 0.0
    for t in nb.prange(a.shape[0]):
        s += a[t] * b[t]
    return s


# ------------------------------------------------------------------ Galerkin coarse levels
# A coarse level's operator is a 27-point node stencil of 3×3 blocks, ``st[t, o, c, d]``
# for the t-th active node, neighbour offset ``o = 9 (dz+1) + 3 (dy+1) + (dx+1)``.


@nb.njit(**_opts)
def fe_stencil_apply(x, y, st, nodes, mask, NZ, NY, NX):
    """``y = m ⊙ (S x)`` at the active nodes of a stencil level (other nodes untouched)."""
    sz = NY * NX
    for t in nb.prange(nodes.shape[0]):
        n = nodes[t]
        k = n // sz
        j = (n // NX) % NY
        i = n % NX
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        for dz in range(-1, 2):
            if k + dz < 0 or k + dz >= NZ:
                continue
            for dy in range(-1, 2):
                if j + dy < 0 or j + dy >= NY:
                    continue
                for dx in range(-1, 2):
                    if i + dx < 0 or i + dx >= NX:
                        continue
                    o = (dz + 1) * 9 + (dy + 1) * 3 + (dx + 1)
                    m = n + dz * sz + dy * NX + dx
                    u0 = x[3 * m]
                    u1 = x[3 * m + 1]
                    u2 = x[3 * m + 2]
                    a0 += st[t, o, 0, 0] * u0 + st[t, o, 0, 1] * u1 + st[t, o, 0, 2] * u2
                    a1 += st[t, o, 1, 0] * u0 + st[t, o, 1, 1] * u1 + st[t, o, 1, 2] * u2
                    a2 += st[t, o, 2, 0] * u0 + st[t, o, 2, 1] * u1 + st[t, o, 2, 2] * u2
        y[3 * n] = a0 * mask[3 * n]
        y[3 * n + 1] = a1 * mask[3 * n + 1]
        y[3 * n + 2] = a2 * mask[3 * n + 2]


@nb.njit(**_opts)
def fe_galerkin_fine(st, emod, nodes_c, free_f, kb, gk, wt, scale, NZf, NYf, NXf, NZc, NYc, NXc):
    """``st = Pᵀ (M A M) P`` at the active nodes of the first coarse level, from the fine elements.

    ``M`` masks the fine fixed dofs, ``P`` is the trilinear prolongation. Coarse node ``N``
    is corner ``a`` of its ≤ 8 coarse cells; each cell holds ≤ 8 fine elements (octant
    ``o``), whose contribution to the block ``(a, b)`` is ``E·scale·gk[o, a, b]``
    (``gk[o] = W_oᵀ K̂ W_o``, ``W_o[p, a] = wt[o, p, a]`` the weight of coarse corner ``a``
    at the element's corner ``p``), or, for an element with a fixed dof,
    ``E·scale·Σ_pq W_o[p,a] W_o[q,b] M_p K̂[p,q] M_q``. ``st`` must be zero on entry.
    """
    szf = NYf * NXf
    for t in nb.prange(nodes_c.shape[0]):
        n = nodes_c[t]
        K = n // (NYc * NXc)
        J = (n // NXc) % NYc
        I = n % NXc
        for cz in range(2):
            Kc = K - 1 + cz
            if Kc < 0 or Kc >= NZc - 1:
                continue
            for cy in range(2):
                Jc = J - 1 + cy
                if Jc < 0 or Jc >= NYc - 1:
                    continue
                for cx in range(2):
                    Ic = I - 1 + cx
                    if Ic < 0 or Ic >= NXc - 1:
                        continue
                    a = (1 - cz) * 4 + (1 - cy) * 2 + (1 - cx)
                    for o in range(8):
                        kz = 2 * Kc + (o >> 2)
                        jy = 2 * Jc + ((o >> 1) & 1)
                        ix = 2 * Ic + (o & 1)
                        e = emod[kz + 1, jy + 1, ix + 1]
                        if e == 0.0:
                            continue
                        es = e * scale
                        base = kz * szf + jy * NXf + ix
                        whole = True
                        for p in range(8):
                            mp = base + (p >> 2) * szf + ((p >> 1) & 1) * NXf + (p & 1)
                            if free_f[3 * mp] == 0 or free_f[3 * mp + 1] == 0 or free_f[3 * mp + 2] == 0:
                                whole = False
                        for b in range(8):
                            # neighbour offset of corner b of this cell from node N (13 = N itself)
                            ob = (b >> 2) * 9 + ((b >> 1) & 1) * 3 + (b & 1) + (cz - 1) * 9 + (cy - 1) * 3 + cx + 12
                            for c in range(3):
                                for d in range(3):
                                    if whole:
                                        v = gk[o, a, b, c, d]
                                    else:
                                        v = 0.0
                                        for p in range(8):
                                            mp = base + (p >> 2) * szf + ((p >> 1) & 1) * NXf + (p & 1)
                                            wp = wt[o, p, a] * free_f[3 * mp + c]
                                            if wp == 0.0:
                                                continue
                                            r = 0.0
                                            for q in range(8):
                                                mq = base + (q >> 2) * szf + ((q >> 1) & 1) * NXf + (q & 1)
                                                r += kb[p, q, c, d] * (wt[o, q, b] * free_f[3 * mq + d])
                                            v += wp * r
                                    st[t, ob, c, d] += es * v


@nb.njit(**_opts)
def fe_galerkin_coarse(st_c, st_f, index_f, nodes_c, free_f, NZf, NYf, NXf, NZc, NYc, NXc):
    """``st_c = Pᵀ (M S_f M) P`` at the active nodes of a coarse level, from the stencil level below.

    ``index_f`` maps a fine node to its row of ``st_f`` (−1: inactive). ``st_c`` must be
    zero on entry.
    """
    for t in nb.prange(nodes_c.shape[0]):
        n = nodes_c[t]
        K = n // (NYc * NXc)
        J = (n // NXc) % NYc
        I = n % NXc
        for dz in range(-1, 2):
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    k, j, i, wi = _child(dz, dy, dx, K, J, I, NZf, NYf, NXf)
                    if k < 0:
                        continue
                    fi = (k * NYf + j) * NXf + i
                    tf = index_f[fi]
                    if tf < 0:
                        continue
                    for q in range(27):
                        kq = k + q // 9 - 1
                        jq = j + (q // 3) % 3 - 1
                        iq = i + q % 3 - 1
                        if kq < 0 or kq >= NZf or jq < 0 or jq >= NYf or iq < 0 or iq >= NXf:
                            continue
                        fj = (kq * NYf + jq) * NXf + iq
                        # the coarse nodes that interpolate to fine node fj, and their weights
                        for mz in range(2):
                            for my in range(2):
                                for mx in range(2):
                                    Mz, My, Mx, wm = _parent(mz, my, mx, kq, jq, iq, NZc, NYc, NXc)
                                    if Mz < 0:
                                        continue
                                    w = wi * wm
                                    oc = (Mz - K + 1) * 9 + (My - J + 1) * 3 + (Mx - I + 1)
                                    for c in range(3):
                                        if free_f[3 * fi + c] == 0:
                                            continue
                                        for d in range(3):
                                            if free_f[3 * fj + d] == 0:
                                                continue
                                            st_c[t, oc, c, d] += w * st_f[tf, q, c, d]
