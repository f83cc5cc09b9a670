"""The runs that the calibration and the emergent-behaviour tests share: one definition of each.

``site_run`` is cached per test process; pytest-xdist's ``--dist loadscope`` keeps a module on
one worker, so each module computes the runs it needs once.
"""

from __future__ import annotations

import functools
from pathlib import Path

from voxelbone.calibration import CALIBRATION_EDGE_MM, STUDY_SAMPLE_DAYS, _edge_voxels, bmd_change

ROOT = Path(__file__).resolve().parents[1]
#: The early-postmenopause scenario (estradiol falling over the transition).
EARLY_POSTMENOPAUSE = str(ROOT / "samples" / "early_postmenopause.toml")


@functools.lru_cache(maxsize=None)
def site_run(preset: str, site: str, seed: int, voxel_um: float, step_days: int = 10, years: float | None = None,
             every: int | None = STUDY_SAMPLE_DAYS):
    """A run on the site's phantom of the calibration cube; ``every``: its sample interval (default
    day 0 and the end only: each sample contours the compartments; None samples every 30 days, for a
    time course)."""
    return bmd_change(preset, site, seed=seed, size=_edge_voxels(CALIBRATION_EDGE_MM, voxel_um), voxel_size_um=voxel_um,
                      step_days=step_days, years=years, backend="numpy", measure_every_days=every)
