"""The voxel sizes the model accepts and those it is calibrated for: one definition of each.

Scans and phantoms of 5–100 µm voxels run; the metrics and the BMU scale are calibrated at
10–40 µm (micro-CT of human trabecular bone). Outside that range :func:`voxel_size_caveat`
says what is less accurate, and every place that accepts a voxel size warns with it.
"""

from __future__ import annotations

__all__ = ["ACCURATE_VOXEL_UM", "MAX_VOXEL_UM", "MIN_VOXEL_UM", "VoxelSizeWarning", "voxel_size_caveat"]

#: Voxel sizes (µm) a scan or phantom may have.
MIN_VOXEL_UM = 5.0
MAX_VOXEL_UM = 100.0
#: Voxel sizes (µm) at which the model's metrics and BMU scale are calibrated.
ACCURATE_VOXEL_UM = (10.0, 40.0)


class VoxelSizeWarning(UserWarning):
    """A voxel size outside :data:`ACCURATE_VOXEL_UM`: the run goes on, less accurate (the message says how)."""


def voxel_size_caveat(voxel_size_um: float) -> str | None:
    """What is less accurate at this voxel size (``None`` within :data:`ACCURATE_VOXEL_UM`).

    Parameters
    ----------
    voxel_size_um
        Voxel edge in µm.

    Examples
    --------
    >>> voxel_size_caveat(30.0) is None
    True
    >>> voxel_size_caveat(61.0).startswith("voxel size 61 µm is coarser than the 10-40 µm")
    True
    """
    v = float(voxel_size_um)
    lo, hi = ACCURATE_VOXEL_UM
    if v > hi:
        return (f"voxel size {v:g} µm is coarser than the {lo:g}-{hi:g} µm the model is calibrated for: trabeculae "
                f"(~100-200 µm) are only {100 / v:.1f}-{200 / v:.1f} voxels across, so Tb.Th, Tb.Sp and Conn.D carry "
                f"a large voxelisation bias, and a BMU cavity (~40-60 µm deep) is {40 / v:.2f}-{60 / v:.2f} of a voxel, "
                "seen only as partial-volume bone fractions; trust BV/TV and BMD trends more than thickness metrics")
    if v < lo:
        return (f"voxel size {v:g} µm is finer than the {lo:g}-{hi:g} µm the model is calibrated for: the run costs "
                "about 8x more per halving of the voxel size and a cube of the default edge covers little bone "
                f"(a 256-voxel edge is {256 * v / 1000:.2f} mm, a few trabecular spacings); crop less or coarsen "
                "(voxelbone.volume.coarsen) for a representative volume")
    return None
