"""Linear-elastic voxel micro-finite elements: apparent stiffness and local strain energy.

One 8-node hexahedron per bone voxel (:mod:`.elements`), tissue modulus from mineral
(:mod:`.stiffness`), uniaxial compression with constrained or frictionless faces
(:mod:`.problem`), solved matrix-free by conjugate gradients preconditioned with a
geometric multigrid W-cycle over Galerkin coarse levels (:mod:`.solver`), after ParOSol (Flaig & Arbenz 2011):
Numba kernels on the CPU (:mod:`.cpu`), CUDA kernels from ``kernels/fe_solver.cu`` on a
GPU (:mod:`.gpu`), one contract.

Equilibrium ``K u = f`` with ``K = Σ_e E_e h K̂`` (``K̂`` the unit-cube element, ν = 0.3),
the prescribed axial displacement ``ε·H`` on the top face, and

    E_app = F_top / (A · ε),    SED_e = ½ uₑᵀ Kₑ uₑ / h³,    ε_eff = sqrt(2 SED / E_e).
"""

from .result import MechanicsResult
from .solver import ConvergenceError
from .stiffness import (
    DEFAULT_TISSUE_MODULUS_MPA,
    FULLY_MINERALISED_MODULUS_MPA,
    MINERAL_EXPONENT,
    MechanicsWarning,
    apparent_modulus,
    tissue_moduli,
)

__all__ = [
    "ConvergenceError",
    "DEFAULT_TISSUE_MODULUS_MPA",
    "FULLY_MINERALISED_MODULUS_MPA",
    "MINERAL_EXPONENT",
    "MechanicsResult",
    "MechanicsWarning",
    "apparent_modulus",
    "tissue_moduli",
]
