"""The discrete problem: which elements carry load, the grid hierarchy, the fixed degrees of freedom.

Load axis first
---------------
The caller's volume is transposed so that the load axis is array axis 0 (the solver
only ever compresses along axis 0); :mod:`voxelbone.mechanics.stiffness` transposes the
fields back.

Load-bearing elements
---------------------
One element per bone voxel. Elements are grouped into face-connected (6-connected)
components; only components that touch both the bottom (``k = 0``) and the top
(``k = nz-1``) element layer are kept (``"kinematic"``: components touching any of the
six faces, all of which are prescribed). Everything else — floating islands, pieces
attached to one face only, pieces hanging on an edge or a corner — carries no load in a
linear model, and, being unconstrained or attached through a hinge, would make the
stiffness matrix singular (ParOSol users remove them the same way before solving).

Boundary conditions (the face ``k = 0`` is the bottom, ``k = nz`` the top)
---------------------------------------------------------------------------
``"constrained"``: every node of a kept element on the bottom face is fixed in all three
directions; on the top face it is fixed laterally and displaced by ``ε·H`` along axis 0.

``"frictionless"``: only the axial component is prescribed on both faces (0 and ``ε·H``).
Rigid motion in the plane is removed, per kept component, by fixing both lateral
components at the component's first bottom node ``A`` (lexicographic order) and the
axis-1 component at the bottom node ``B`` farthest from ``A`` along axis 2 in the same row.
These constraints are satisfied by the homogeneous solution (lateral strain ``-ν ε``
about ``A``), so a solid block gives ``E_app = E`` exactly.

``"kinematic"``: kinematic uniform boundary conditions (KUBC; Pahr & Zysset 2008 Biomech
Model Mechanobiol 7:463): every node of a kept element on any of the six faces follows the
homogeneous strain ``ε`` along axis 0 and none laterally, ``u = (ε·k, 0, 0)`` at node
height ``k``. The faces stand for the bone around a cube cut out of a larger bone: a strut
cut by a lateral face is held where the bone it was cut from would hold it, instead of
hanging free. It is the stiffest of the usual conditions (a solid block gives the confined
modulus ``E(1-ν)/((1+ν)(1-2ν))``). The mechanostat can solve it
(``MechanostatParams.boundary``) but keeps ``"constrained"`` by default: kinematic faces
over-strain the struts next to them (docs/user-guide/mechanics.md).

Grid hierarchy (geometric multigrid, Flaig & Arbenz 2011)
---------------------------------------------------------
Level ``l+1`` has elements of twice the edge of level ``l``; the modulus of a coarse
element is the mean of its 8 children (empty children count as 0). The coarse moduli only
decide which coarse nodes are active (those of a cell holding any bone) and which are fixed
(the same rules on that level's elements); the coarse operators themselves are Galerkin
products built by the solver (:mod:`voxelbone.mechanics.solver`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["BOUNDARIES", "COARSE_DOFS", "Level", "active_nodes", "build_levels", "coarsen_moduli", "face_components",
           "fixed_dofs", "load_bearing", "pad_moduli"]

BOUNDARIES = ("constrained", "frictionless", "kinematic")
_FACE6 = ndimage.generate_binary_structure(3, 1)
#: Free degrees of freedom at or below which a grid is the coarsest (factorised directly).
COARSE_DOFS = 4000


@dataclass
class Level:
    """One grid of the hierarchy (host arrays).

    Attributes
    ----------
    shape : (nz, ny, nx)
        Elements per axis.
    scale : float
        Element edge in fine voxels (``2**level``).
    emod : float64 (nz+2, ny+2, nx+2)
        Element moduli (MPa), zero-padded by one element.
    nodes : int64 (M,)
        Flat indices of the active nodes (nodes of an element with ``E > 0``).
    free : uint8 (3·NN,)
        1 at the free degrees of freedom of active nodes, 0 elsewhere.
    fixed : bool (NN, 3)
        Prescribed degrees of freedom.
    """

    shape: tuple[int, int, int]
    scale: float
    emod: np.ndarray
    nodes: np.ndarray
    free: np.ndarray
    fixed: np.ndarray

    @property
    def node_shape(self) -> tuple[int, int, int]:
        nz, ny, nx = self.shape
        return nz + 1, ny + 1, nx + 1

    @property
    def n_nodes(self) -> int:
        a, b, c = self.node_shape
        return a * b * c


def face_components(bone: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels of the face-connected (6-connected) components of ``bone`` and their number."""
    labels, n = ndimage.label(bone, structure=_FACE6)
    return labels, int(n)


def load_bearing(bone: np.ndarray, boundary: str = "constrained",
                 components: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """Mask of the bone voxels in face-connected components touching both the first and last layer of axis 0.

    With ``boundary="kinematic"``: touching any of the six faces (all of them are prescribed).
    ``components``: :func:`face_components` of ``bone``, when the caller has them already.
    """
    labels, n = face_components(bone) if components is None else components
    if n == 0:
        return np.zeros(bone.shape, dtype=bool)
    if boundary == "kinematic":
        faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
        keep = np.unique(np.concatenate([f.ravel() for f in faces]))
    else:
        keep = np.intersect1d(np.unique(labels[0]), np.unique(labels[-1]))
    keep = keep[keep > 0]
    return np.isin(labels, keep)


def pad_moduli(emod: np.ndarray) -> np.ndarray:
    """Element moduli padded with one empty element on every side (float64, C order)."""
    return np.ascontiguousarray(np.pad(emod.astype(np.float64, copy=False), 1))


def coarsen_moduli(emod: np.ndarray) -> np.ndarray:
    """Moduli of the grid of twice the edge: mean of the 8 children (missing children are empty)."""
    nz, ny, nx = emod.shape
    p = np.pad(emod, ((0, nz % 2), (0, ny % 2), (0, nx % 2)))
    a, b, c = p.shape
    return p.reshape(a // 2, 2, b // 2, 2, c // 2, 2).mean(axis=(1, 3, 5))


def active_nodes(emod_padded: np.ndarray) -> np.ndarray:
    """Bool ``(nz+1, ny+1, nx+1)``: nodes of at least one element with a non-zero modulus."""
    e = emod_padded != 0
    out = e[:-1, :-1, :-1].copy()
    for oz in range(2):
        for oy in range(2):
            for ox in range(2):
                out |= e[oz:oz + e.shape[0] - 1, oy:oy + e.shape[1] - 1, ox:ox + e.shape[2] - 1]
    return out


def fixed_dofs(emod: np.ndarray, active: np.ndarray, boundary: str) -> np.ndarray:
    """Bool ``(NZ, NY, NX, 3)``: the prescribed degrees of freedom (see the module docstring)."""
    fixed = np.zeros(active.shape + (3,), dtype=bool)
    if boundary == "kinematic":
        for face in (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1], np.s_[:, :, 0], np.s_[:, :, -1]):
            fixed[face] = active[face][..., None]
        return fixed
    if boundary == "constrained":
        fixed[0] = active[0][..., None]
        fixed[-1] = active[-1][..., None]
        return fixed
    fixed[0, ..., 0] = active[0]
    fixed[-1, ..., 0] = active[-1]
    labels, n = ndimage.label(emod > 0, structure=_FACE6)
    bottom = labels[0]
    for lab in range(1, n + 1):
        el = bottom == lab
        if not el.any():
            continue
        nodes = np.zeros(active.shape[1:], dtype=bool)
        nodes[:-1, :-1] |= el
        nodes[1:, :-1] |= el
        nodes[:-1, 1:] |= el
        nodes[1:, 1:] |= el
        js, is_ = np.nonzero(nodes)  # lexicographic (row-major) order
        ja, ia = js[0], is_[0]
        ib = is_[js == ja].max()
        fixed[0, ja, ia, 1:] = True
        fixed[0, ja, ib, 1] = True
    return fixed


def _level(emod: np.ndarray, scale: float, boundary: str) -> Level:
    padded = pad_moduli(emod)
    act = active_nodes(padded)
    fixed = fixed_dofs(emod, act, boundary)
    free = (act[..., None] & ~fixed).astype(np.uint8).reshape(-1)
    nodes = np.flatnonzero(act).astype(np.int64)
    return Level(tuple(int(s) for s in emod.shape), float(scale), padded, nodes, free, fixed)


def build_levels(emod: np.ndarray, boundary: str, *, coarse_dofs: int | None = None, max_levels: int = 12) -> list[Level]:
    """The grid hierarchy, finest first.

    Coarsening stops when the next grid would have fewer than 2 elements along an axis or
    the current grid has at most ``coarse_dofs`` free degrees of freedom (solved directly).
    """
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    coarse_dofs = COARSE_DOFS if coarse_dofs is None else coarse_dofs
    levels = [_level(emod, 1.0, boundary)]
    e = emod
    while len(levels) < max_levels:
        last = levels[-1]
        if int(last.free.sum()) <= coarse_dofs or min(last.shape) < 4:
            break
        e = coarsen_moduli(e)
        levels.append(_level(e, last.scale * 2.0, boundary))
    return levels
