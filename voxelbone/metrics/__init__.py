"""Bone morphometry with the definitions of BoneJ, ITK BoneMorphometry and the micro-CT guidelines."""

from .anisotropy import Anisotropy, mean_intercept_length
from .connectivity import connectivity_density, euler_characteristic, inscribed_box
from .cortical import CorticalMetrics, cortical_metrics, segment_compartments
from .morphometry import (ASBMR, ArealBmdReference, Morphometry, bmd_proxy_mg_cm3, compartment_vbmd_mg_cm3, morphometry,
                          vbmd_mg_cm3)
from .surface import bone_surface_mm2, structure_model_index
from .thickness import ThicknessStats, local_thickness, thickness_stats

__all__ = [
    "ASBMR",
    "Anisotropy",
    "ArealBmdReference",
    "CorticalMetrics",
    "Morphometry",
    "ThicknessStats",
    "bmd_proxy_mg_cm3",
    "bone_surface_mm2",
    "compartment_vbmd_mg_cm3",
    "connectivity_density",
    "cortical_metrics",
    "euler_characteristic",
    "inscribed_box",
    "local_thickness",
    "mean_intercept_length",
    "morphometry",
    "segment_compartments",
    "structure_model_index",
    "thickness_stats",
    "vbmd_mg_cm3",
]
