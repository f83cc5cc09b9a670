"""voxelbone — voxel simulation of bone microarchitecture under hormone-driven remodeling.

A trabecular lattice and cortical shell on a 3-D voxel grid, resorbed and rebuilt by
basic multicellular units whose rates follow a hormone state, with the standard
micro-CT morphometry computed as the simulation runs. CUDA kernels (through CuPy) on
NVIDIA GPUs; the same algorithms in NumPy everywhere else.
"""

__version__ = "0.2.0"

from .backend import Backend, BackendError, get_backend  # noqa: E402
from .volume import BoneVolume, Region  # noqa: E402

__all__ = ["Backend", "BackendError", "BoneVolume", "Region", "__version__", "get_backend"]
