"""Run the CUDA kernels of kernels/remodel.cu on CPU threads (grid host build), for tests.

The launches are those of voxelbone/remodel/gpu.py: the same kernels, argument lists,
launch configuration (for a device of ``SM_COUNT`` SMs) and index-width specialisation.
"""

from __future__ import annotations

import numpy as np

from voxelbone.kernels import host_grid_launch
from voxelbone.remodel.gpu import _CLAIM_THREADS, _THREADS, claim_blocks, step_blocks, step_defines
from voxelbone.remodel.state import CLAIM_NONE, RemodelState, StepScalars

#: Streaming multiprocessors of the device the launch configuration is computed for (H200).
SM_COUNT = 132


class HostRemodel:
    """The kernels of a step, executed as a grid by the host build.

    Parameters
    ----------
    shape : tuple of int
        Volume shape.
    capacity : int
        Seed-list capacity.
    order, order_seed, ftz, workers :
        Passed to :func:`voxelbone.kernels.host_grid_launch`.
    """

    def __init__(self, shape: tuple[int, int, int], capacity: int = 1 << 16, *, order: str = "forward",
                 order_seed: int = 0, ftz: bool = False, workers: int = 4, tsan: bool = False) -> None:
        self.shape = shape
        self.n = int(np.prod(shape))
        self.capacity = capacity
        self.seeds = np.zeros(capacity, dtype=np.int64)
        self.seed_count = np.zeros(1, dtype=np.uint32)
        self.claim = np.full(shape, CLAIM_NONE, dtype=np.uint64)
        self.blocks = step_blocks(self.n, SM_COUNT)
        self.launch = dict(order=order, order_seed=order_seed, ftz=ftz, workers=workers, tsan=tsan,
                           defines=step_defines(self.n, self.blocks))

    def _run(self, kernel: str, grid: int, block: int, args: tuple) -> None:
        host_grid_launch("remodel", kernel, grid, block, args, **self.launch)

    def step(self, st: RemodelState, seed: int, step: int, sc: StepScalars, act_mod: np.ndarray | None = None,
             refill_mod: np.ndarray | None = None) -> np.ndarray:
        """One step (``vb_activate``, ``vb_claim``, ``vb_update``, and ``vb_model`` when
        ``sc.model_frac > 0``); returns the seeds drawn.

        ``act_mod``/``refill_mod``: the mechanical modulation fields, ``None`` for a null pointer.
        """
        null = np.empty(0, dtype=np.float32)  # a zero-size array is passed as a null pointer
        nz, ny, nx = (np.int64(v) for v in self.shape)
        self.seed_count[0] = 0
        self._run("vb_activate", self.blocks, _THREADS,
                  (st.bone, st.region, st.bmu_day, nz, ny, nx, np.uint64(seed), np.uint64(step),
                   sc.p_hemi, sc.p_osteonal, self.seeds, self.seed_count, np.uint32(self.capacity),
                   null if act_mod is None else act_mod))
        seeds = self.seeds[: min(int(self.seed_count[0]), self.capacity)].copy()
        self._run("vb_claim", claim_blocks(self.capacity), _CLAIM_THREADS,
                  (st.bone, st.region, st.bmu_day, nz, ny, nx, sc.voxel_um, np.uint64(seed), np.uint64(step),
                   self.seeds, self.seed_count, np.uint32(self.capacity), sc.depth_um, sc.lateral_um,
                   sc.osteon_radius_um, sc.osteon_half_length_um, sc.canal_radius_um, sc.overfill_reach, self.claim,
                   st.counters))
        self._run("vb_update", self.blocks, _THREADS,
                  (st.bone, st.mineral, st.osteoid, st.bmu_day, st.bmu_k, st.bmu_u, st.bmu_flags, st.bmu_amount,
                   st.bmu_seed, self.claim, np.int64(self.n), np.int32(sc.dt), sc.t_resorb, sc.t_form_start, sc.t_form, sc.t_end,
                   sc.refill_trab, sc.refill_cort, sc.refill_perforated, sc.refill_trab_prev, sc.refill_cort_prev,
                   sc.m_mature, sc.e_primary, sc.e_secondary, sc.c_osteoid, null if refill_mod is None else refill_mod))
        if sc.model_frac > 0:  # modelling-based formation (gpu.GpuStep.model)
            self._run("vb_model", self.blocks, _THREADS,
                      (st.bone, st.osteoid, st.bone.copy(), st.region, st.bmu_day, nz, ny, nx, sc.model_frac))
        return seeds


# ---------------------------------------------------------------------------------------
# metric kernels, launched as voxelbone/metrics/gpu.py launches them
# ---------------------------------------------------------------------------------------
def host_euler8(mask: np.ndarray, **launch) -> int:
    """χ·8 of a boolean volume from ``vb_euler8`` (the metrics/gpu.py launch)."""
    from voxelbone.metrics.connectivity import euler_lut
    from voxelbone.metrics.gpu import euler_launch

    m = np.ascontiguousarray(mask, dtype=np.uint8)
    nz, ny, nx = m.shape
    lut = np.ascontiguousarray(euler_lut().astype(np.int32))
    total = np.zeros(1, dtype=np.uint64)
    cfg = euler_launch(m.shape)
    host_grid_launch("metrics_euler", "vb_euler8", cfg.blocks, launch.pop("threads", cfg.threads),
                     (m, np.int64(nz), np.int64(ny), np.int64(nx), lut, total), defines=cfg.defines, **launch)
    value = int(total[0])
    return value - (1 << 64) if value >= 1 << 63 else value


def host_ridge_flags(k2: np.ndarray, table: np.ndarray, **launch) -> np.ndarray:
    """``vb_ridge_flags`` of a squared distance map (uint8 keep flags)."""
    from voxelbone.metrics.gpu import ridge_launch

    nz, ny, nx = k2.shape
    keep = np.zeros(k2.shape, np.uint8)
    cfg = ridge_launch(k2.shape)
    host_grid_launch("metrics_thickness", "vb_ridge_flags", cfg.blocks, cfg.threads,
                     (np.ascontiguousarray(k2), np.ascontiguousarray(table), np.int64(table.shape[-1] - 1),
                      np.int64(nz), np.int64(ny), np.int64(nx), keep), defines=cfg.defines, **launch)
    return keep


def host_insert_balls(keep: np.ndarray, k2: np.ndarray, mask: np.ndarray, **launch) -> np.ndarray:
    """``vb_insert_balls``: the thickness map's bits (int32 view of float32 diameters, voxels)."""
    from voxelbone.metrics.gpu import balls_launch

    nz, ny, nx = mask.shape
    flat = np.flatnonzero(keep)
    cz, rest = np.divmod(flat, ny * nx)
    cy, cx = np.divmod(rest, nx)
    cz, cy, cx = (np.ascontiguousarray(a, dtype=np.int64) for a in (cz, cy, cx))
    ck = np.ascontiguousarray(k2.ravel()[flat], dtype=np.int32)
    out = np.zeros(mask.shape, np.int32)
    cfg = balls_launch(flat.size, mask.shape)
    host_grid_launch("metrics_thickness", "vb_insert_balls", cfg.blocks, cfg.threads,
                     (cz, cy, cx, ck, np.int64(flat.size), np.ascontiguousarray(mask, dtype=np.uint8),
                      np.int64(nz), np.int64(ny), np.int64(nx), out), defines=cfg.defines, **launch)
    return out


def host_surface_area(f: np.ndarray, level: float = 0.5, within: np.ndarray | None = None, **launch) -> float:
    """``vb_surface_area``: iso-surface area in voxel units², partials summed as on the device."""
    from voxelbone.metrics.gpu import surface_launch
    from voxelbone.metrics.marching_cubes import kernel_tables

    f = np.ascontiguousarray(f, dtype=np.float32)
    nz, ny, nx = f.shape
    use = within is not None
    w = np.ascontiguousarray(within, dtype=np.uint8) if use else np.zeros(1, np.uint8)
    table, edges, faces = kernel_tables(np)
    cfg = surface_launch(f.shape)
    partial = np.zeros(cfg.blocks * cfg.threads, np.float64)
    host_grid_launch("metrics_surface", "vb_surface_area", cfg.blocks, cfg.threads,
                     (f, np.int64(nz), np.int64(ny), np.int64(nx), np.float64(level), table, w, np.int32(use),
                      edges, faces, partial), defines=cfg.defines, **launch)
    return float(partial.sum())


def host_uniform(seed: int, step: int, stream: int, first: int, n: int, **launch) -> np.ndarray:
    """``vb_uniform_fill``: n draws of (seed, step, stream) from item ``first``."""
    from voxelbone.kernels import index_defines

    out = np.empty(n, dtype=np.float32)
    blocks = max(1, min(-(-n // 256), 64))
    host_grid_launch("random", "vb_uniform_fill", blocks, 256,
                     (np.uint64(seed), np.uint64(step), np.uint64(stream), np.uint64(first), np.int64(n), out),
                     defines=index_defines(n + blocks * 256), **launch)
    return out
