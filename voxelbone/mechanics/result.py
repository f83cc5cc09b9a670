"""The result of a micro-FE load case."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MechanicsResult"]


@dataclass
class MechanicsResult:
    """Apparent stiffness and local fields of one uniaxial compression.

    Attributes
    ----------
    e_app_mpa : float
        Apparent modulus: axial reaction on the top face / full cross-section of the
        volume / ``|ε|`` (MPa). 0 when no bone connects the two loaded faces.
    reaction_force_n : float or None
        Axial reaction on the top face (N, signed along the load axis: negative in
        compression); ``None`` when the voxel size is unknown.
    sed_mpa : array, float32, shape of the volume
        Strain energy density per voxel, ``½ uₑᵀKₑuₑ / V`` (MPa = mJ/mm³); 0 off the
        load-bearing bone.
    effective_strain : array, float32, shape of the volume
        ``sqrt(2·SED / E_tissue)`` per bone voxel (dimensionless; Pistoia et al. 2002);
        0 elsewhere.
    displacement_voxels : array, float64, shape (nz+1, ny+1, nx+1, 3)
        Nodal displacement in voxel edges, components in array-axis order; pass it as
        ``initial_displacement`` to warm-start the next solve.
    iterations : int
        Conjugate-gradient iterations.
    relative_residual : float
        ``‖b - A u‖ / ‖b‖`` reached.
    axis, boundary : str
        Load axis (``"z"``, ``"y"``, ``"x"``) and boundary condition.
    strain : float
        Applied axial strain ε.
    bone_elements : int
        Elements in the system (load-bearing bone voxels).
    removed_elements : int
        Bone voxels left out (not connected face to face between the loaded faces).
    levels : int
        Grids in the multigrid hierarchy.
    solve_s : float
        Wall time of setup and solve (s).
    backend : str
        ``"numpy"`` (Numba kernels) or ``"cupy"``.
    state_bytes : int
        Memory of the solver's arrays on the device that solved (grids, multigrid
        buffers, solve vectors); 0 when nothing was solved.
    """

    e_app_mpa: float
    reaction_force_n: float | None
    sed_mpa: Any
    effective_strain: Any
    displacement_voxels: Any
    iterations: int
    relative_residual: float
    axis: str
    boundary: str
    strain: float
    bone_elements: int
    removed_elements: int
    levels: int
    solve_s: float
    backend: str
    state_bytes: int = 0

    def summary(self) -> dict[str, Any]:
        """The scalar fields, for JSON."""
        return {k: getattr(self, k) for k in (
            "e_app_mpa", "reaction_force_n", "iterations", "relative_residual", "axis", "boundary", "strain",
            "bone_elements", "removed_elements", "levels", "solve_s", "backend", "state_bytes")}
