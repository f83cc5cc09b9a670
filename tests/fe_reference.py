"""An independent micro-FE reference for the tests: scikit-fem assembly and a sparse direct solve.

Nothing here is shared with voxelbone.mechanics: the mesh, the element (scikit-fem's
trilinear hexahedron with its own quadrature), the boundary conditions (found from node
coordinates) and the solve (SuperLU via scipy.sparse.linalg.spsolve) are built anew.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla
from scipy import ndimage


def load_bearing_reference(mask: np.ndarray, boundary: str = "constrained") -> np.ndarray:
    """Face-connected components of ``mask`` touching the first and the last layer of axis 0
    (``"kinematic"``: touching any face of the box)."""
    lab, _ = ndimage.label(mask)
    ids = set(np.unique(lab[0])) & set(np.unique(lab[-1]))
    if boundary == "kinematic":
        shell = np.ones(mask.shape, bool)
        shell[1:-1, 1:-1, 1:-1] = False
        ids = set(np.unique(lab[shell]))
    ids.discard(0)
    return np.isin(lab, sorted(ids))


def reference_e_app(mask: np.ndarray, e_mpa: float, boundary: str, strain: float = -0.01, nu: float = 0.3) -> float:
    """Apparent modulus along axis 0 of a voxel mask (unit voxels), by scikit-fem + spsolve."""
    from skfem import Basis, BilinearForm, ElementHex1, ElementVector, MeshHex, asm, condense
    from skfem.models.elasticity import lame_parameters, linear_elasticity

    keep = load_bearing_reference(mask, boundary)
    nz, ny, nx = keep.shape
    mesh = MeshHex.init_tensor(np.arange(nz + 1.0), np.arange(ny + 1.0), np.arange(nx + 1.0))
    c = np.floor(mesh.p[:, mesh.t].mean(axis=1)).astype(int)  # element centroid -> voxel (axis 0, 1, 2)
    mesh = mesh.restrict(np.flatnonzero(keep[c[0], c[1], c[2]]))
    basis = Basis(mesh, ElementVector(ElementHex1()), intorder=2)  # 2×2×2 Gauss: exact for the trilinear element
    lam, mu = lame_parameters(e_mpa, nu)
    k = asm(linear_elasticity(lam, mu), basis)
    p = mesh.p
    ndof = k.shape[0]
    # nodal dofs: component d of node n is dof basis.nodal_dofs[d, n]
    nd = basis.nodal_dofs
    bottom = np.flatnonzero(np.isclose(p[0], 0.0))
    top = np.flatnonzero(np.isclose(p[0], nz))
    u = np.zeros(ndof)
    u[nd[0, top]] = strain * nz
    if boundary == "kinematic":  # every node on the box's surface: u = (ε·z, 0, 0)
        on_box = np.flatnonzero(np.isclose(p[0], 0) | np.isclose(p[0], nz) | np.isclose(p[1], 0)
                                | np.isclose(p[1], ny) | np.isclose(p[2], 0) | np.isclose(p[2], nx))
        u[nd[0, on_box]] = strain * p[0, on_box]
        fixed = nd[:, on_box].ravel()
    elif boundary == "constrained":
        fixed = np.concatenate([nd[:, bottom].ravel(), nd[:, top].ravel()])
    else:
        fixed = [nd[0, bottom], nd[0, top]]
        lab, n = ndimage.label(keep)
        for comp in range(1, n + 1):
            el = lab[0] == comp
            if not el.any():
                continue
            nodes = {(j + a, i + b) for j, i in zip(*np.nonzero(el)) for a in (0, 1) for b in (0, 1)}
            ja, ia = min(nodes)
            ib = max(i for j, i in nodes if j == ja)
            at = lambda j, i: np.flatnonzero(np.isclose(p[0], 0) & np.isclose(p[1], j) & np.isclose(p[2], i))[0]  # noqa: E731
            a, b = at(ja, ia), at(ja, ib)
            fixed += [nd[1:, a], nd[1:2, b]]
        fixed = np.concatenate([np.ravel(f) for f in fixed])
    fixed = np.unique(fixed)
    kk, rhs, _, interior = condense(k, np.zeros(ndof), x=u, D=fixed)
    u[interior] = spla.spsolve(kk, rhs)
    reaction = (k @ u)[nd[0, top]].sum()
    return float(reaction / (ny * nx * strain))


def random_structure(shape: tuple[int, int, int], seed: int, porosity: float = 0.55) -> np.ndarray:
    """A smoothed random field thresholded to a porous mask, with a few floating islands."""
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    mask = f > np.quantile(f, porosity)
    assert load_bearing_reference(mask).any(), "structure must connect the loaded faces"
    return mask
