"""CuPy launches of ``kernels/remodel.cu`` (the step stays on the device: no host sync)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import get_function, index_defines
from .state import CLAIM_NONE, RemodelState, StepScalars

__all__ = ["GpuStep", "claim_blocks", "step_blocks", "step_defines"]

_THREADS = 256
_CLAIM_THREADS = 128
_CLAIM_BLOCKS = 2048


def step_blocks(n_voxels: int, sm_count: int) -> int:
    """Blocks of the per-voxel launches (``vb_activate``, ``vb_update``; ``_THREADS`` each).

    Enough to cover the grid once, at most 32 per SM (grid-stride loops do the rest).
    """
    return int(min(max(1, -(-n_voxels // _THREADS)), sm_count * 32))


def claim_blocks(capacity: int) -> int:
    """Blocks of ``vb_claim`` (one seed per block at a time, ``_CLAIM_THREADS`` threads)."""
    return int(max(1, min(_CLAIM_BLOCKS, capacity)))


def step_defines(n_voxels: int, blocks: int) -> tuple[tuple[str, int], ...]:
    """Index width of the step's kernels: 32-bit while voxels plus one grid stride fit."""
    return index_defines(n_voxels + blocks * _THREADS)


class GpuStep:
    """Device buffers (seed list, claim scratch) and the three kernel launches of a step."""

    def __init__(self, state: RemodelState) -> None:
        import cupy  # noqa: PLC0415 - cupy: optional GPU dependency, loaded only for a device run

        self.cp = cupy
        self.shape = state.bone.shape
        self.n = int(np.prod(self.shape))
        dev = cupy.cuda.Device()
        sms = dev.attributes["MultiProcessorCount"]
        self.blocks = step_blocks(self.n, sms)
        defines = step_defines(self.n, self.blocks)
        self.claim = cupy.full(self.shape, CLAIM_NONE, dtype=cupy.uint64)
        self.seed_count = cupy.zeros(1, dtype=cupy.uint32)
        self.capacity = 0
        self.seeds = None
        self._activate = get_function("remodel", "vb_activate", defines)
        self._claim = get_function("remodel", "vb_claim", defines)
        self._update = get_function("remodel", "vb_update", defines)
        self._model = get_function("remodel", "vb_model", defines)
        self.bone_old = None  # copy of the bone read by vb_model (allocated on its first launch)

    def _ensure_capacity(self, sc: StepScalars) -> None:
        # Expected seeds ≤ p · (surface voxels) ≤ p · n; ten times that (plus a floor) is
        # never reached in practice, and an overflow is counted and reported by stats().
        need = int(10.0 * float(max(sc.p_hemi, sc.p_osteonal)) * self.n * 0.3) + 4096
        if need > self.capacity:
            self.capacity = min(max(need, 2 * self.capacity), self.n)
            self.seeds = self.cp.empty(self.capacity, dtype=self.cp.int64)

    def activate(self, st: RemodelState, seed: int, step: int, sc: StepScalars, act_mod: Any = None) -> None:
        """``vb_activate``: surface voxels that start a BMU go to the seed list.

        ``act_mod``: per-voxel float32 factor on the activation probability, or ``None``
        (a null pointer: no mechanical modulation).
        """
        self._ensure_capacity(sc)
        nz, ny, nx = (np.int64(v) for v in self.shape)
        self.seed_count.fill(0)
        self._activate(
            (self.blocks,), (_THREADS,),
            (st.bone, st.region, st.bmu_day, nz, ny, nx, np.uint64(seed), np.uint64(step),
             sc.p_hemi, sc.p_osteonal, self.seeds, self.seed_count, np.uint32(self.capacity), act_mod),
        )

    def claim_cavities(self, st: RemodelState, seed: int, step: int, sc: StepScalars) -> None:
        """``vb_claim``: each seed's cavity claims its voxels (lowest seed index wins), the
        marrow above its opening up to the overfill's reach included.

        Seeds beyond capacity (counted by ``vb_activate``, not stored) are added to the
        ``seed_overflow`` counter by the kernel itself: no extra launches.
        """
        nz, ny, nx = (np.int64(v) for v in self.shape)
        self._claim(
            (claim_blocks(self.capacity),), (_CLAIM_THREADS,),
            (st.bone, st.region, st.bmu_day, nz, ny, nx, sc.voxel_um, np.uint64(seed), np.uint64(step),
             self.seeds, self.seed_count, np.uint32(self.capacity), sc.depth_um, sc.lateral_um,
             sc.osteon_radius_um, sc.osteon_half_length_um, sc.canal_radius_um, sc.overfill_reach,
             self.claim, st.counters),
        )

    def update(self, st: RemodelState, sc: StepScalars, refill_mod: Any = None) -> None:
        """``vb_update``: take claims, excavate, refill, release, mineralise.

        ``refill_mod``: per-voxel float32 factor on the refill level, read at each BMU's seed
        (``bmu_seed``), or ``None`` (null).
        """
        self._update(
            (self.blocks,), (_THREADS,),
            (st.bone, st.mineral, st.osteoid, st.bmu_day, st.bmu_k, st.bmu_u, st.bmu_flags, st.bmu_amount, st.bmu_seed, self.claim,
             np.int64(self.n), np.int32(sc.dt), sc.t_resorb, sc.t_form_start, sc.t_form, sc.t_end,
             sc.refill_trab, sc.refill_cort, sc.refill_perforated, sc.refill_trab_prev, sc.refill_cort_prev,
             sc.m_mature, sc.e_primary, sc.e_secondary, sc.c_osteoid, refill_mod),
        )

    def model(self, st: RemodelState, sc: StepScalars) -> None:
        """``vb_model``: modelling-based formation on quiescent surfaces (reads a copy of the bone)."""
        if self.bone_old is None:
            self.bone_old = self.cp.empty_like(st.bone)
        self.cp.copyto(self.bone_old, st.bone)
        nz, ny, nx = (np.int64(v) for v in self.shape)
        self._model(
            (self.blocks,), (_THREADS,),
            (st.bone, st.osteoid, self.bone_old, st.region, st.bmu_day, nz, ny, nx, sc.model_frac),
        )

    def step(self, st: RemodelState, seed: int, step: int, sc: StepScalars, act_mod: Any = None,
             refill_mod: Any = None) -> None:
        """The launches of one step (a memset and three kernels, and ``vb_model`` when modelling-based
        formation is on), in order, with no host synchronisation."""
        self.activate(st, seed, step, sc, act_mod)
        self.claim_cavities(st, seed, step, sc)
        self.update(st, sc, refill_mod)
        if sc.model_frac > 0:
            self.model(st, sc)

    def scratch_bytes(self) -> int:
        """Device bytes held besides the state."""
        return int(self.claim.nbytes) + 8 * self.capacity + (0 if self.bone_old is None else int(self.bone_old.nbytes))

    def __getstate__(self) -> Any:  # pragma: no cover - never pickled
        raise TypeError("GpuStep holds device buffers and cannot be pickled")
