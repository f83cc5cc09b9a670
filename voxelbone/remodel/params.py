"""Constants of the voxel layer: BMU timing, cavity geometry, mineralisation law.

Values (human, trabecular iliac unless noted):

* remodeling cycle ≈ 200 days: resorption 40 d, reversal 10 d, formation 150 d
  (Eriksen 1986 Endocr Rev 7:379; Müller 2005 Osteoporos Int 16:S25; Liu et al. 2008 Bone
  43:292);
* trabecular cavity: depth = erosion depth E.De from the cell layer (47–52 µm; HRT biopsy
  data), lateral semi-axis ≈ 120 µm (hemiosteons are shallow and wide: Parfitt 1994 J Cell
  Biochem 55:273);
* cortical (intracortical) BMUs re-excavate the walls of the canals: the wall is eroded to
  the cell layer's erosion depth E.De and refilled to the cortical balance, so a canal
  widens by the deficit at each cycle (Parfitt 1994; Bjørnerem 2016 Curr Osteoporos Rep
  14:28); the cavity reaches ``lateral_radius_um`` around the canal and
  ``osteon_half_length_um`` ≈ 250 µm along it per activation (an osteon of ~2.5 mm is cut
  by several activations over its life). ``osteon_radius_um`` ≈ 100 µm and
  ``canal_radius_um`` ≈ 35 µm (Cooper et al. 2006; Bousson et al. 2001) describe human
  osteons; the pore-wall rule does not use them (the canals are those of the volume);
* the metrics contour the compartments from the bone at every evaluation; with
  ``contour_compartments`` the engine's own labels follow too (every few weeks), so the
  walls of pores opened into the marrow become endocortical surfaces; periosteal
  apposition is not simulated (0 µm/yr; it slows after menopause, Szulc et al. 2006
  J Bone Miner Res 21:1856);
* mineralisation: primary to ≈ 65 % of the mature level within weeks, secondary over years
  (Ruffoni et al. 2007 Bone 40:1308; Boivin & Meunier 2002 Calcif Tissue Int 70:503).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np
import numpy.typing as npt

__all__ = ["MAX_OVERFILL_REACH_DEPTHS", "MECHANOSTAT_REVISION", "MODEL_REVISION", "MineralisationLaw", "RemodelParams",
           "model_revision"]

#: Name of the voxel layer's rules as they stand: changed with every change of the model
#: that moves a run's numbers. Study records keep it with each cell
#: (:func:`voxelbone.calibration.run_study`), and a cell of another revision is not reused:
#: it is shown "not run here" and run again.
MODEL_REVISION = "2026-12-03b a voxel whose fill ramp is flat is not claimed: no BMU digs what it cannot refill"

#: Name of the load's coupling to the BMUs as it stands (:mod:`voxelbone.remodel.mechanostat`
#: and the refill factor of ``vb_update``): changed with every change of it that moves a
#: mechanics-on run's numbers. A run with mechanics off passes no field and does not depend on it.
MECHANOSTAT_REVISION = "2026-12-02 every voxel of a BMU refills at the mechanical factor of its seed"


def model_revision(mechanics: bool) -> str:
    """The revision a study cell is run on: :data:`MODEL_REVISION`, and with load-driven
    remodelling on (``mechanics``) :data:`MECHANOSTAT_REVISION` too."""
    return f"{MODEL_REVISION}; mechanostat {MECHANOSTAT_REVISION}" if mechanics else MODEL_REVISION

#: The farthest ``RemodelParams.overfill_reach_depths`` may be set: a voxel's height above
#: its cavity floor, u ≤ 1 + reach, is stored in 9 bits at steps of 1/127.5 (u ≤ 4; the
#: claim code's layout, ``state.CLAIM_U_MASK``).
MAX_OVERFILL_REACH_DEPTHS = 3.0


@dataclass(frozen=True)
class MineralisationLaw:
    """Mineral content of bone as it ages (degrees are fractions of ``TMD_MAX_MG_CM3``).

    New bone is laid down as osteoid ``o`` (unmineralised). Osteoid mineralises (primary
    mineralisation) with time constant ``primary_days``, at once to ``primary_degree``;
    the mineral ``m`` of a voxel then approaches the mature degree of its mineralised bone
    (secondary mineralisation) with time constant ``secondary_days``:

    ``do/dt = −o/τ_p``,  ``dm/dt = m_p·o/τ_p + (m_mature·(b − o) − m)/τ_s``.

    Both are linear and integrated exactly over a step, per voxel; keeping the osteoid pool
    apart means new bone mineralises quickly even in a voxel that also holds old bone.
    A packet of bone formed ``a`` days ago has the degree :meth:`degree_at_age`.
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

    def step_factors(self, dt_days: float) -> tuple[float, float, float]:
        """``(e_primary, e_secondary, c_osteoid)`` of the exact step update

        ``m ← m·e_s + m_mature·b·(1 − e_s) + c_o·o``,  ``o ← o·e_p``.
        """
        kp, ks = 1.0 / self.primary_days, 1.0 / self.secondary_days
        ep, es = math.exp(-kp * dt_days), math.exp(-ks * dt_days)
        co = (self.primary_degree * kp - ks * self.mature_degree) * (ep - es) / (ks - kp)
        return ep, es, co

    def degree_at_age(self, age_days: npt.ArrayLike) -> np.ndarray:
        """Degree of mineralisation of bone formed ``age_days`` ago (closed form of the law).

        Examples
        --------
        New bone starts unmineralised, reaches the primary level within weeks and the mature
        level over years:

        >>> law = MineralisationLaw()
        >>> [round(float(d), 2) for d in law.degree_at_age([0.0, 30.0, 3650.0])], law.mature_degree
        ([0.0, 0.58, 0.92], 0.92)
        """
        kp, ks = 1.0 / self.primary_days, 1.0 / self.secondary_days
        a = np.asarray(age_days, dtype=float)
        mm, mp = self.mature_degree, self.primary_degree
        return mm * (1.0 - np.exp(-ks * a)) + (mp * kp - ks * mm) * (np.exp(-kp * a) - np.exp(-ks * a)) / (ks - kp)

    def osteoid_at_age(self, age_days: npt.ArrayLike) -> np.ndarray:
        """Fraction of a packet still unmineralised ``age_days`` after it was formed."""
        return np.exp(-np.asarray(age_days, dtype=float) / self.primary_days)


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
        Osteon and Haversian canal radii of human cortex (not used by the pore-wall rule),
        and the reach of an intracortical BMU along its canal per activation (along z, the
        bone's long axis).
    surface_voxels_per_area : float
        Surface voxels (bone voxels with a marrow face-neighbour) per voxel-face area of
        true surface (κ): 1 for a plane aligned with the grid, max(|nx|, |ny|, |nz|) for a
        plane of normal n, 0.83 on average over orientations (0.81–0.83 measured on
        voxelised spheres at 10–30 µm). Turns an activation frequency per surface area into
        a probability per surface voxel.
    wall_surface_voxels_per_area : float or None
        κ_wall: the same for the intracortical pore walls (the candidates of pore-wall BMUs
        per voxel-face area of the wall); turns the cortical activation frequency into a
        probability per wall voxel. ``None``: use ``surface_voxels_per_area``. Canals curve
        more than trabeculae (κ_wall 0.9–1.15 against κ 0.69–0.80 on the lumbar phantoms).
    surface_scale_um : float or None
        ``None`` (the model): κ is measured once, on the starting volume at the grid's own
        voxel size, and the pore walls use it. A number selects a candidate rule, measured
        and not adopted (invariance page, "Activation at one scale"): κ and κ_wall are
        candidates on the grid per voxel-face area of the surface a grid of this voxel size
        holds (:func:`voxelbone.remodel.engine.measure_surface_density`), measured again
        every ``surface_every_days``, so BMUs start per µm² of the same surface at 20 and at
        40 µm.
    surface_every_days : int
        With ``surface_scale_um`` set, how often, in simulated days, κ and κ_wall are
        measured again on the bone as it stands (0: only on the starting volume).
    modelling_surface_voxels_per_area : float or None
        κ of the surface that modelling-based formation works on (the quiescent surface
        voxels of :func:`voxelbone.remodel.cpu.model_surface`, the endocortical surface
        included) per voxel-face area of that true surface, without the cut planes; turns
        the apposition per µm² into a volume per surface voxel. ``None``: use
        ``surface_voxels_per_area``. Measured on the starting volume with
        ``measure_surface_density``
        (:func:`voxelbone.remodel.engine.measure_modelling_surface_density`).
    contour_compartments : bool
        Contour the engine's compartment labels from the bone at the start and at every
        fragment removal (:mod:`voxelbone.compartments`), so opened pores work as
        endocortical surfaces (trabecular activation, hemi-osteonal cavities). Off by
        default: the labels (and so the trabecular VOI of the metrics) stay those of the
        starting volume, while the cortical metrics contour the cortex at every evaluation.
        On, opened pores remodel as endocortical surface (at the trabecular Ac.f), so the
        cortex trabecularises faster and bone loss rises (lumbar, 96³ at 40 µm, one year,
        seeds 1 and 2, ``abmd_pct``: premenopausal −0.41, −0.24 → −0.47, −0.26 %/yr,
        untreated −1.90, −1.84 → −2.17, −2.16 %/yr; lumbar 64³ at 30 µm, two untreated
        years, six seeds: the shell's Ct.Th falls by 8.1 instead of 4.8 µm, late mean), and
        trabecularised cortex enters the trabecular VOI. Kept off until the clinical table
        is fitted again with it on.
    measure_surface_density : bool
        Replace ``surface_voxels_per_area`` by the value measured on the starting volume
        (:func:`voxelbone.remodel.engine.measure_surface_density`), so activation per µm²
        does not depend on how finely the grid resolves the trabeculae, and set
        ``modelling_surface_voxels_per_area`` the same way (with ``surface_scale_um``: also
        ``wall_surface_voxels_per_area``, and again every ``surface_every_days``).
    perforated_refill : float
        Refill level of a cavity that perforated its trabecula (0: not repaired; van der
        Linden et al. 2001 J Bone Miner Res 16:688).
    overfill_reach_depths : float
        How far above the old surface, in depths of its own cavity, a BMU of positive
        balance may build: a refill r builds up to min(r − 1, this) cavity depths above it,
        inside the cavity mirrored outwards and stretched to that height. 2 (refills up to
        3, the bound rates are checked against): the build grows with r up to 3 about as
        steeply as below 2 (``benchmarks/overfill_build_study.py``). Until 2026-12 it was 1,
        fixed: above r = 2 the build grew a third as steeply, so the cell layer's refill cap
        ``max_refill`` (2.6 then) was reached in the cell layer but not in the bone, and a
        spread of refills around 2.6 (the mechanostat's) lost bone. Up to 3 (r = 4; the claim
        code stores u ≤ 4). Every cavity claims the marrow up to this reach when it starts,
        whatever the balance then; the balance at formation decides how much of it fills
        (since model revision 2026-12-02: before, a cavity claimed only as far as the refill
        at its start reached, so one started before the balance rose built above the old
        surface only inside its own partial voxels, more of it on coarser voxels).
    """

    resorption_days: float = 40.0
    reversal_days: float = 10.0
    formation_days: float = 150.0
    lateral_radius_um: float = 120.0
    osteon_radius_um: float = 100.0
    osteon_half_length_um: float = 250.0
    canal_radius_um: float = 35.0
    surface_voxels_per_area: float = 0.82
    perforated_refill: float = 0.0
    mineralisation: MineralisationLaw = MineralisationLaw()
    measure_surface_density: bool = True
    contour_compartments: bool = False
    modelling_surface_voxels_per_area: float | None = None
    overfill_reach_depths: float = 2.0
    wall_surface_voxels_per_area: float | None = None
    surface_scale_um: float | None = None
    surface_every_days: int = 0

    def __post_init__(self) -> None:
        for name in ("resorption_days", "formation_days", "lateral_radius_um", "osteon_radius_um",
                     "osteon_half_length_um", "canal_radius_um", "surface_voxels_per_area"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        for name in ("modelling_surface_voxels_per_area", "wall_surface_voxels_per_area"):
            k = getattr(self, name)
            if k is not None and not (isinstance(k, (int, float)) and math.isfinite(k) and k > 0):
                raise ValueError(f"{name} must be a positive number or None, got {k!r}")
        s = self.surface_scale_um
        if s is not None and not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0):
            raise ValueError(f"surface_scale_um must be None or a positive number of µm, got {s!r}")
        e = self.surface_every_days
        if isinstance(e, bool) or not isinstance(e, int) or e < 0:
            raise ValueError(f"surface_every_days must be a non-negative whole number of days, got {e!r}")
        if self.reversal_days < 0:
            raise ValueError(f"reversal_days must be ≥ 0, got {self.reversal_days!r}")
        if self.canal_radius_um >= self.osteon_radius_um:
            raise ValueError("canal_radius_um must be smaller than osteon_radius_um")
        r = self.overfill_reach_depths
        top = MAX_OVERFILL_REACH_DEPTHS
        if isinstance(r, bool) or not (isinstance(r, (int, float)) and math.isfinite(r) and 0 < r <= top):
            raise ValueError(f"overfill_reach_depths must lie in (0, {top:g}] cavity depths, got {r!r}")
        if not 0 <= self.perforated_refill <= 1:
            raise ValueError("perforated_refill must lie in [0, 1]")
        if self.cycle_days > 30000:
            raise ValueError("a remodeling cycle longer than 30000 days does not fit the BMU day counter")

    @property
    def cycle_days(self) -> float:
        """Length of a full BMU cycle (resorption + reversal + formation)."""
        return self.resorption_days + self.reversal_days + self.formation_days

    @property
    def wall_kappa(self) -> float:
        """κ of the pore walls: ``wall_surface_voxels_per_area``, else ``surface_voxels_per_area``."""
        return self.wall_surface_voxels_per_area or self.surface_voxels_per_area

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
