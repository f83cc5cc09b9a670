"""voxelbone — voxel simulation of bone microarchitecture under hormone-driven remodeling.

A trabecular lattice and cortical shell on a 3-D voxel grid, resorbed and rebuilt by
basic multicellular units whose rates follow a hormone state, with the standard
micro-CT morphometry computed as the simulation runs. CUDA kernels (through CuPy) on
NVIDIA GPUs; the same algorithms in NumPy everywhere else.

The names a script needs are importable from the package itself; each is loaded from its
submodule the first time it is used, so ``import voxelbone`` stays light:

>>> import voxelbone
>>> scenario = voxelbone.Scenario(periods=(voxelbone.Period("postmenopausal_untreated", 1.0),))
>>> scenario.days
365
>>> voxelbone.make_phantom is voxelbone.phantom.make_phantom
True
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# ``simulate`` is also the name of its submodule: importing that submodule (as the command
# line does) would rebind the package attribute to the module, so the function is bound
# here, eagerly. Every other name is loaded on first use (module ``__getattr__``, PEP 562).
from .simulate import Result, simulate

#: Public name → the submodule that defines it.
_LAZY: dict[str, str] = {
    "Backend": "backend",
    "BackendError": "backend",
    "get_backend": "backend",
    "BoneVolume": "volume",
    "Region": "volume",
    "Scenario": "scenario",
    "Period": "scenario",
    "load_scenario": "scenario",
    "scenario_to_toml": "scenario",
    "make_phantom": "phantom",
    "SITES": "sites",
    "load_volume": "io",
    "save_volume": "io",
    "Morphometry": "metrics",
    "morphometry": "metrics",
    "Remodeler": "remodel",
    "RemodelParams": "remodel",
    "Preset": "presets",
    "load_preset": "presets",
    "list_presets": "presets",
    "HormoneState": "hormones",
    "HormoneCourse": "hormones",
    "REFERENCE_STATE": "hormones",
    "cell_activity": "biology",
    "ActivityCourse": "biology",
    "DAYS_PER_YEAR": "units",
    "simulate_replicates": "replicates",
    "RunFolder": "runfolder",
    "RunState": "runfolder",
}

__all__ = [
    "ActivityCourse",
    "Backend",
    "BackendError",
    "BoneVolume",
    "DAYS_PER_YEAR",
    "HormoneCourse",
    "HormoneState",
    "Morphometry",
    "Period",
    "Preset",
    "REFERENCE_STATE",
    "Region",
    "RemodelParams",
    "Remodeler",
    "Result",
    "RunFolder",
    "RunState",
    "SITES",
    "Scenario",
    "cell_activity",
    "get_backend",
    "list_presets",
    "load_preset",
    "load_scenario",
    "load_volume",
    "make_phantom",
    "morphometry",
    "save_volume",
    "scenario_to_toml",
    "simulate",
    "simulate_replicates",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'voxelbone' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
