"""Run the CUDA kernels of kernels/remodel.cu on the CPU (host build + ctypes), for tests."""

from __future__ import annotations

import ctypes as C

import numpy as np

from voxelbone.remodel.state import CLAIM_NONE, RemodelState, StepScalars


def _p(a: np.ndarray) -> C.c_void_p:
    assert a.flags.c_contiguous
    return C.c_void_p(a.ctypes.data)


class HostRemodel:
    """The three kernels of a step, executed sequentially by the host build."""

    def __init__(self, lib: C.CDLL, shape: tuple[int, int, int], capacity: int = 1 << 16) -> None:
        self.lib = lib
        self.shape = shape
        self.n = int(np.prod(shape))
        self.capacity = capacity
        self.seeds = np.zeros(capacity, dtype=np.int64)
        self.seed_count = np.zeros(1, dtype=np.uint32)
        self.claim = np.full(shape, CLAIM_NONE, dtype=np.uint64)
        for name in ("vb_activate", "vb_claim", "vb_update"):
            getattr(lib, name).restype = None

    def step(self, st: RemodelState, seed: int, step: int, sc: StepScalars) -> np.ndarray:
        nz, ny, nx = (C.c_longlong(v) for v in self.shape)
        f = lambda v: C.c_float(float(v))  # noqa: E731
        self.seed_count[0] = 0
        self.lib.vb_activate(_p(st.bone), _p(st.region), _p(st.bmu_day), nz, ny, nx, C.c_ulonglong(seed),
                             C.c_ulonglong(step), f(sc.p_hemi), f(sc.p_osteonal), _p(self.seeds),
                             _p(self.seed_count), C.c_uint(self.capacity))
        seeds = self.seeds[: int(self.seed_count[0])].copy()
        self.lib.vb_claim(_p(st.bone), _p(st.region), _p(st.bmu_day), nz, ny, nx, f(sc.voxel_um),
                          C.c_ulonglong(seed), C.c_ulonglong(step), _p(self.seeds), _p(self.seed_count),
                          C.c_uint(self.capacity), f(sc.depth_um), f(sc.lateral_um), f(sc.osteon_radius_um),
                          f(sc.osteon_half_length_um), f(sc.canal_radius_um), f(sc.overfill), _p(self.claim), _p(st.counters))
        self.lib.vb_update(_p(st.bone), _p(st.mineral), _p(st.osteoid), _p(st.bmu_day), _p(st.bmu_k), _p(st.bmu_u),
                           _p(st.bmu_flags), _p(st.bmu_amount), _p(self.claim), C.c_longlong(self.n),
                           C.c_int(sc.dt), f(sc.t_resorb), f(sc.t_form_start), f(sc.t_form), f(sc.t_end),
                           f(sc.refill_trab), f(sc.refill_cort), f(sc.refill_perforated),
                           f(sc.m_mature), f(sc.e_primary), f(sc.e_secondary), f(sc.c_osteoid))
        return seeds
