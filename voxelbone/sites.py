"""Anatomical sites: the human microarchitecture each phantom is built to match.

Targets are central values of human ex vivo micro-CT ranges (model.md §5):

* lumbar vertebra (older adult): BV/TV 0.08–0.15, Tb.Th 110–150 µm, Tb.Sp 700–1000 µm,
  Tb.N 1.0–1.3 /mm, Conn.D 2–6 /mm³, thin shell 200–400 µm
  (Hildebrand et al. 1999 JBMR 14:1167);
* femoral neck: BV/TV 0.15–0.25, Tb.Th 170–220 µm, Tb.Sp 550–800 µm, Tb.N 1.3–1.8 /mm,
  Conn.D 3–8 /mm³, thick cortex (~1 mm) with Ct.Po 3–8 % young and 10–30 % elderly and
  canals 20–100 µm (Burghardt et al. 2010 JBMR; Zebaze et al. 2010 Lancet; Cooper et al.;
  Bousson et al.).

A phantom is a section through the periphery of the bone (cortex along one face, trabecular
bone beyond), so that a field of view of a few millimetres holds both compartments in
proportions close to the real bone's.

Each site also carries the reference rates of its basic multicellular units
(:class:`SiteRates`), which the cell layer (:mod:`voxelbone.biology`) scales with the
hormone state: activation frequency (0.13 /yr iliac premenopausal, Recker et al. 2004;
vertebral cancellous bone turns over faster), erosion depth 47 µm and surface density,
and the share of trabecular and cortical mineral in the site's DXA region
(:class:`DxaWeights`), with which the compartments' relative changes add up to the
DXA-equivalent areal BMD change (``abmd_pct``, :mod:`voxelbone.metrics.morphometry`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import get_close_matches

__all__ = ["SITES", "DxaWeights", "SiteRates", "SiteSpec", "get_site"]


@dataclass(frozen=True)
class SiteRates:
    """Reference BMU rates of an anatomical site (premenopausal steady state)."""

    activation_trabecular_per_yr: float
    activation_cortical_per_yr: float
    erosion_depth_um: float = 47.0
    refill: float = 1.0
    bs_bv_per_mm: float = 17.0
    description: str = ""


@dataclass(frozen=True)
class DxaWeights:
    """Share of the site's DXA bone mineral content held by each compartment.

    A DXA scan projects the whole bone of its region: its relative change is the
    mineral-weighted mean of the compartments' relative changes,
    ``Σ_c w_c · (M_c(t)/M_c(0) − 1)``, whatever share of cortex a simulated sample holds.

    Attributes
    ----------
    trabecular, cortical : float
        Mineral shares (non-negative, summing to 1).
    region : str
        The DXA region the shares describe.
    sources : tuple of str
        Where the shares come from.
    """

    trabecular: float
    cortical: float
    region: str = ""
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if min(self.trabecular, self.cortical) < 0 or abs(self.trabecular + self.cortical - 1.0) > 1e-9:
            raise ValueError(f"DXA mineral shares must be non-negative and sum to 1, got trabecular {self.trabecular}, "
                             f"cortical {self.cortical}")


#: Lumbar spine, AP L1–L4: the posterior elements (cortical bone, mostly) hold 51.4 ± 4.2 % of
#: the BMC of an AP DXA scan (Lee et al. 2009, doi:10.1359/jbmr.090224: QCT and DXA of L3 in
#: 574 subjects aged 6–25 yr, the share stable after sexual maturity); the vertebral
#: body's cortical shell holds 21–39 % of the body's bone mass (Eswaran et al. 2006, 2007;
#: micro-CT of 13 vertebrae), ~30 % taken here. Trabecular share 0.486 × 0.70 = 0.34.
LUMBAR_SPINE_DXA = DxaWeights(
    trabecular=0.34, cortical=0.66, region="AP lumbar spine L1–L4",
    sources=("Lee DC et al. 2009 J Bone Miner Res 24:1398 (posterior elements 51.4 % of AP BMC)",
             "Eswaran SK et al. 2006 J Bone Miner Res 21:307; 2007 Comput Methods Appl Mech Eng 196:3025 "
             "(vertebral shell 21–39 % of the body's bone mass)"),
)

#: Femoral neck: QCT of 20 femoral necks in 2 mm slices (Invest Radiol 1997; PMID 9039579):
#: trabecular bone is 78 % of the bone mass at the head end, 21 % at the trochanter end and 33 %
#: at the smallest cross-section, which the DXA neck box is centred on.
FEMORAL_NECK_DXA = DxaWeights(
    trabecular=0.33, cortical=0.67, region="femoral neck box",
    sources=("Distribution of trabecular and cortical bone related to geometry: a QCT study of the femoral neck. "
             "Invest Radiol 1997 32:83 (PMID 9039579, doi:10.1097/00004424-199702000-00002): trabecular 33 % of the bone mass at the smallest neck "
             "cross-section",),
)


@dataclass(frozen=True)
class SiteSpec:
    """Targets and phantom parameters of an anatomical site.

    Attributes
    ----------
    name : str
        Site key (``lumbar_spine``, ``femoral_neck``).
    bv_tv, tb_th_um, tb_sp_um, ct_th_um, ct_po : float
        Target morphometry (local-thickness Tb.Th/Tb.Sp/Ct.Th, µm).
    default_voxel_size_um : float
        Default voxel edge, µm.
    default_size : int
        Default phantom edge length in voxels.
    description : str
        One line for listings.
    sources : tuple of str
        Where the targets come from.
    lattice : dict
        Generator parameters (µm, fractions) tuned so the phantom meets the targets.
    remodeling : SiteRates
        Reference BMU rates of the site (the cell layer scales them with the hormones).
    dxa : DxaWeights
        Trabecular and cortical shares of the mineral in the site's DXA region.
    """

    name: str
    bv_tv: float
    tb_th_um: float
    tb_sp_um: float
    ct_th_um: float
    ct_po: float
    default_voxel_size_um: float
    default_size: int
    description: str
    sources: tuple[str, ...]
    remodeling: SiteRates
    dxa: DxaWeights
    lattice: dict[str, float] = field(default_factory=dict)

    @property
    def field_of_view_mm(self) -> float:
        """Edge of the default phantom in mm."""
        return self.default_size * self.default_voxel_size_um / 1000.0


SITES: dict[str, SiteSpec] = {
    "lumbar_spine": SiteSpec(
        name="lumbar_spine",
        bv_tv=0.11,
        tb_th_um=130.0,
        tb_sp_um=850.0,
        ct_th_um=300.0,
        ct_po=0.05,
        default_voxel_size_um=30.0,
        # 4.80 mm: the representative volume of Tb.N and Conn.D (voxelbone.rve.RVE_EDGE_MM; abmd_pct,
        # BV/TV and Tb.Th are resolved from 3.84 mm); `make demo` at 160³ measured 2 min 16 s on 2 cores
        default_size=160,
        description="vertebral body: sparse rod-like trabeculae, thin cortical shell",
        sources=("Hildebrand T et al. 1999 J Bone Miner Res 14:1167",),
        remodeling=SiteRates(0.13 * 1.6, 0.08,  # fitted: lumbar turnover factor (1.45 -> 1.6, clinical table on abmd_pct)
                            description="vertebral cancellous bone turns over faster than iliac"),
        dxa=LUMBAR_SPINE_DXA,
        # Rod-like (SMI 2.2–2.4, Conn.D 3–4.5 /mm³): a dense rod lattice with every horizontal strut
        # present but thin (~75 µm against ~140 µm vertical rods; Mosekilde 1988 Bone 9:247: the
        # horizontal trabeculae of vertebrae are thinner and lost first), and plates, which bring
        # BV/TV to target, thick enough (~125 µm) that one cavity seldom perforates them: untreated
        # loss cuts struts faster than it perforates plates, so Conn.D falls (README, "Connectivity").
        lattice=dict(
            spacing_um=720.0, z_stretch=1.15, jitter=0.22, rod_radius_um=70.0, horizontal_radius_scale=0.53,
            drop_horizontal=0.0, plate_half_thickness_um=63.0, ct_th_scale=1.0,
            shell_margin=0.06, bone_radius_mm=17.0, canal_radius_um=(25.0, 45.0),
        ),
    ),
    "femoral_neck": SiteSpec(
        name="femoral_neck",
        bv_tv=0.20,
        tb_th_um=190.0,
        tb_sp_um=650.0,
        ct_th_um=800.0,
        ct_po=0.08,
        default_voxel_size_um=30.0,
        default_size=128,
        description="femoral neck: denser plate-like trabeculae, thick eccentric cortex with Haversian canals",
        sources=(
            "Burghardt AJ et al. 2010 J Bone Miner Res 25:983",
            "Zebaze RM et al. 2010 Lancet 375:1729",
            "Bousson V et al. 2001 J Bone Miner Res 16:1308",
        ),
        remodeling=SiteRates(0.13 * 1.0, 0.07, bs_bv_per_mm=12.0, description="lower trabecular turnover, cortex-dominated"),
        dxa=FEMORAL_NECK_DXA,
        lattice=dict(
            spacing_um=720.0, z_stretch=1.15, jitter=0.22, rod_radius_um=90.0, horizontal_radius_scale=0.85,
            drop_horizontal=0.25, plate_half_thickness_um=80.0, ct_th_scale=1.0,
            shell_margin=0.06, bone_radius_mm=15.0, canal_radius_um=(25.0, 50.0),
        ),
    ),
}


def get_site(name: str) -> SiteSpec:
    """The :class:`SiteSpec` called ``name``; unknown names list the known sites.

    Examples
    --------
    >>> neck = get_site("femoral_neck")
    >>> neck.bv_tv, neck.field_of_view_mm, neck.remodeling.activation_trabecular_per_yr
    (0.2, 3.84, 0.13)
    >>> get_site("femur")
    Traceback (most recent call last):
    ...
    ValueError: unknown site 'femur'; known sites: lumbar_spine, femoral_neck
    """
    try:
        return SITES[name]
    except KeyError:
        close = get_close_matches(str(name), SITES, n=2)
        hint = f" — did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"unknown site {name!r}{hint}; known sites: {', '.join(SITES)}") from None
