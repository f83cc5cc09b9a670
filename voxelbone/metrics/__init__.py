"""Bone morphometry with the definitions of BoneJ, ITK BoneMorphometry and the micro-CT guidelines."""

from .thickness import local_thickness

__all__ = ["local_thickness"]
