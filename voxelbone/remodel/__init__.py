"""The remodeling engine (voxel layer): BMUs in CUDA kernels, with a NumPy twin."""

from .engine import DeviceMemoryError, Remodeler
from .params import MineralisationLaw, RemodelParams
from .state import RemodelState, RemodelStats, StepScalars, step_scalars

__all__ = [
    "DeviceMemoryError",
    "MineralisationLaw",
    "RemodelParams",
    "RemodelState",
    "RemodelStats",
    "Remodeler",
    "StepScalars",
    "step_scalars",
]
