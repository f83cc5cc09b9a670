"""The package version (one definition; read by the build backend and by ``voxelbone.__version__``)."""

__version__ = "0.2.0"
