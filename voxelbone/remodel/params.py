"""Constants of the voxel layer: BMU timing, cavity geometry, mineralisation law.

Values (human, trabecular iliac unless noted):

* remodeling cycle ≈ 200 days: resorption 40 d, reversal 10 d, formation 150 d
  (Eriksen 1986 Endocr Rev 7:379; Müller 2005 Osteoporos Int 16:S25; Liu et al. 2008 Bone
  43:292);
* trabecular cavity: depth = erosion depth E.De from the cell layer (47–52 µm; HRT biopsy
  data), lateral semi-axis ≈ 120 µm (hemiosteons are shallow and wide: Parfitt 1994 J Cell
  Biochem 55:273);
* cortical tunnelling BMUs: osteon radius ≈ 100 µm (osteon diameter ~200 µm), half-length
  ≈ 500 µm per activation, Haversian canal radius ≈ 35 µm left open by a balanced BMU
  (Cooper et al. 2006; Bousson et al. 2001);
* mineralisation: primary to ≈ 65 % of the mature level within weeks, secondary over years
  (Ruffoni et al. 2007 Bone 40:1308; Boivin & Meunier 2002 Calcif Tissue Int 70:503).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MineralisationLaw", "RemodelParams"]


@dataclass(frozen=True)
class MineralisationLaw:
    """Mineral content of bone as it ages (degrees are fractions of ``TMD_MAX_MG_CM3``).

    New bone is laid down as osteoid (degree 0). Below ``primary_degree`` both the fast
    primary and the slow secondary process act; above it only the secondary one, which
    approaches ``mature_degree``:

    ``dm/dt = (m_p − m)/τ_p + (m_mature − m)/τ_s`` for ``m < m_p``, ``(m_mature − m)/τ_s`` above.

    Each regime is integrated exactly over a step (per voxel, with ``m`` the voxel's mineral
    content relative to its bone fraction), so the result does not depend on the step.
    """

    primary_degree: float = 0.60
    mature_degree: float = 0.92
    primary_days: float = 10.0
    secondary_days: float = 550.0

    def __post_init__(self) -> None:
        if not 0 < self.primary_degree < self.mature_degree <= 1:
            raise ValueError("mineralisation degrees must satisfy 0 < primary_degree < mature_degree ≤ 1")
        if self.primary_days <= 0 or self.secondary_days <= self.primary_days:
            raise ValueError("mineralisation time constants must satisfy 0 < primary_days < secondary_days")

    @property
    def _k(self) -> tuple[float, float]:
        return 1.0 / self.primary_days, 1.0 / self.secondary_days

    @property
    def primary_limit(self) -> float:
        """Fixed point of the first regime (slightly above ``primary_degree``)."""
        kp, ks = self._k
        return (kp * self.primary_degree + ks * self.mature_degree) / (kp + ks)

    def step_factors(self, dt_days: float) -> tuple[float, float, float]:
        """``(primary_limit, e1, e2)``: the first regime's fixed point and decay factors of both regimes."""
        kp, ks = self._k
        return self.primary_limit, math.exp(-(kp + ks) * dt_days), math.exp(-ks * dt_days)

    def degree_at_age(self, age_days: "np.typing.ArrayLike") -> "np.ndarray":
        """Degree of mineralisation of bone formed ``age_days`` ago (closed form of the law)."""
        import numpy as np  # noqa: PLC0415

        kp, ks = self._k
        a = np.asarray(age_days, dtype=float)
        lim = self.primary_limit
        t1 = -math.log(1.0 - self.primary_degree / lim) / (kp + ks)
        early = lim * (1.0 - np.exp(-(kp + ks) * a))
        late = self.mature_degree - (self.mature_degree - self.primary_degree) * np.exp(-ks * (a - t1))
        return np.where(a <= t1, early, late)


@dataclass(frozen=True)
class RemodelParams:
    """Parameters of the remodeling engine (µm and days).

    Parameters
    ----------
    resorption_days, reversal_days, formation_days : float
        Phases of a BMU's cycle at one site.
    lateral_radius_um : float
        Lateral semi-axis of a trabecular (hemi-osteonal) cavity; its depth is the cell
        layer's erosion depth.
    osteon_radius_um, osteon_half_length_um, canal_radius_um : float
        Cortical tunnelling BMU: cutting-cone radius, half-length per activation (along z,
        the bone's long axis), and the canal a balanced BMU leaves open.
    surface_voxels_per_area : float
        Surface voxels (bone voxels with a marrow face-neighbour) per voxel-face area of
        true surface (κ): 1 for a plane aligned with the grid, max(|nx|, |ny|, |nz|) for a
        plane of normal n, 0.83 on average over orientations (0.81–0.83 measured on
        voxelised spheres at 10–30 µm). Turns an activation frequency per surface area into
        a probability per surface voxel.
    perforated_refill : float
        Refill level of a cavity that perforated its trabecula (0: not repaired; van der
        Linden et al. 2001 J Bone Miner Res 16:688).
    mineralisation : MineralisationLaw
        Primary and secondary mineralisation of new bone.
    """

    resorption_days: float = 40.0
    reversal_days: float = 10.0
    formation_days: float = 150.0
    lateral_radius_um: float = 120.0
    osteon_radius_um: float = 100.0
    osteon_half_length_um: float = 500.0
    canal_radius_um: float = 35.0
    surface_voxels_per_area: float = 0.82
    perforated_refill: float = 0.0
    mineralisation: MineralisationLaw = MineralisationLaw()

    def __post_init__(self) -> None:
        for name in ("resorption_days", "formation_days", "lateral_radius_um", "osteon_radius_um",
                     "osteon_half_length_um", "canal_radius_um", "surface_voxels_per_area"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if self.reversal_days < 0:
            raise ValueError(f"reversal_days must be ≥ 0, got {self.reversal_days!r}")
        if self.canal_radius_um >= self.osteon_radius_um:
            raise ValueError("canal_radius_um must be smaller than osteon_radius_um")
        if not 0 <= self.perforated_refill <= 1:
            raise ValueError("perforated_refill must lie in [0, 1]")
        if self.cycle_days > 30000:
            raise ValueError("a remodeling cycle longer than 30000 days does not fit the BMU day counter")

    @property
    def cycle_days(self) -> float:
        """Length of a full BMU cycle (resorption + reversal + formation)."""
        return self.resorption_days + self.reversal_days + self.formation_days

    def check_step(self, dt_days: int) -> None:
        """Reject steps that are not whole positive days or longer than a remodeling phase."""
        if isinstance(dt_days, bool) or not isinstance(dt_days, (int,)) or dt_days < 1:
            raise ValueError(f"the time step must be a positive whole number of days, got {dt_days!r}")
        shortest = min(self.resorption_days, self.formation_days)
        if dt_days > shortest:
            raise ValueError(
                f"a {dt_days}-day step is longer than the shortest remodeling phase ({shortest:g} days); "
                "use a step of at most that many days"
            )
