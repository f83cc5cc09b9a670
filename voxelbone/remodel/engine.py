"""Remodeler: basic multicellular units resorbing and refilling a voxel volume.

Each step of ``dt`` days (Parfitt's BMU cycle; Eriksen 1986; Müller 2005; van der Linden
et al. 2001; Liu et al. 2008):

1. **activation** — every bone voxel on a marrow-facing surface starts a BMU with a
   probability set by the activation frequency Ac.f (fraction of surface per year, from
   the cell layer), keyed by (seed, step, voxel) so any thread order gives the same draws;
   trabecular and endocortical surfaces start hemi-osteonal cavities, intracortical canal
   walls start tunnelling (osteonal) BMUs along the long axis (z);
2. **claim** — each new BMU claims the voxels of its cavity: an oblate half-spheroid of
   depth E.De (µm, independent of the voxel size) under the surface, or a cylinder-like
   tunnel around the canal; a cavity deeper than its trabecula is thick perforates it;
3. **update** — each owned voxel is excavated when the resorption front reaches it
   (sub-voxel: the cavity's partial volume), then refilled from the cavity floor up to the
   level ``refill × depth`` during formation (so per-BMU deficits of a few µm accumulate as
   fractional bone), and released at the end of the cycle; perforated cavities are not
   refilled; new bone enters as osteoid and mineralises (primary within weeks, secondary
   over years; Ruffoni et al. 2007);
4. every few weeks, **fragments** — bone no longer connected to the main structure — are
   removed and counted apart from resorption; with ``params.contour_compartments`` the
   **compartments** are also contoured again from the bone (:mod:`voxelbone.compartments`):
   pores that have opened into the marrow join it, so their walls become endocortical
   surfaces (hemi-osteonal BMUs at the trabecular activation frequency) as the cortex
   trabecularises from the endosteum (Zebaze et al. 2010 Lancet 375:1729). The metrics
   contour the cortex at every evaluation either way. The periosteal envelope does not
   move: periosteal surfaces start no BMU and periosteal apposition is not simulated
   (0 µm/yr; it slows after menopause, Szulc et al. 2006 J Bone Miner Res 21:1856).

The arrays stay on the module of the volume given (NumPy: :mod:`.cpu`; CuPy: :mod:`.gpu`,
kernels in ``kernels/remodel.cu``); both implementations give identical volumes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from ..backend import array_module, asnumpy, is_device_array, ndimage_module
from ..volume import BoneVolume, Region
from . import cpu
from .params import RemodelParams
from .state import COUNTERS, Rates, RemodelState, RemodelStats, refill_levels, step_scalars

__all__ = ["DeviceMemoryError", "Remodeler"]


class DeviceMemoryError(MemoryError):
    """The volume would not fit in the device's free memory."""


class Remodeler:
    """Steps a bone volume through hormone-driven remodeling.

    Parameters
    ----------
    volume : BoneVolume
        Starting volume; its arrays are used in place (pass a copy to keep the original).
        NumPy arrays run the NumPy implementation, CuPy arrays the CUDA kernels.
    params : RemodelParams
        Engine constants.
    seed : int
        Seed of every random draw (activation, cavity sizes).
    """

    def __init__(self, volume: BoneVolume, params: RemodelParams | None = None, seed: int = 0,
                 _state: RemodelState | None = None) -> None:
        if not isinstance(volume, BoneVolume):
            raise TypeError(f"volume must be a BoneVolume, got {type(volume).__name__}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.params = params or RemodelParams()
        self.seed = int(seed)
        self.voxel_size_um = float(volume.voxel_size_um)
        self.site = volume.site
        self.meta = dict(volume.meta)
        self.xp = array_module(volume.bone)
        self.state = _state or RemodelState.new(volume.bone, volume.mineral, volume.region)
        #: Days since the activation's surface densities were last measured (``params.surface_every_days``).
        self._density_days = 0
        if _state is None and self.params.measure_surface_density:
            self._measure_activation_density(volume)
            kappa_m = measure_modelling_surface_density(volume)
            if kappa_m is not None:
                self.params = dataclasses.replace(self.params, modelling_surface_voxels_per_area=kappa_m)
        #: Mechanical modulation of activation and refill (:mod:`.mechanostat`); ``None``: off.
        self.modulation: Any = None
        if _state is None and self.params.contour_compartments:
            self.update_compartments()
        #: The last step's (trabecular, cortical) refill levels: they carry the forming BMUs' levels into the next.
        self._previous_refill: tuple[float, float] | None = None
        self._gpu = None
        if is_device_array(volume.bone):
            from .gpu import GpuStep  # noqa: PLC0415

            self._gpu = GpuStep(self.state)

    # -- construction helpers ----------------------------------------------------------
    @staticmethod
    def memory_bytes(shape: tuple[int, int, int]) -> int:
        """Device bytes the engine needs for a volume of ``shape`` (state + claim scratch + labels, and the
        bone copy ``vb_model`` reads while modelling-based formation is on)."""
        n = int(np.prod(shape))
        return n * (RemodelState.bytes_per_voxel() + 8 + 4 + 4)

    @staticmethod
    def check_fits(shape: tuple[int, int, int], xp: Any) -> None:
        """Raise :class:`DeviceMemoryError` before allocating if ``shape`` cannot fit on the device."""
        if xp is np:
            return
        need = Remodeler.memory_bytes(shape)
        free, total = xp.cuda.runtime.memGetInfo()
        if need > free:
            raise DeviceMemoryError(
                f"a {'×'.join(map(str, shape))} volume needs about {need / 1e9:.1f} GB of device memory for "
                f"the remodeling state; {free / 1e9:.1f} GB of {total / 1e9:.1f} GB are free. "
                "Use a smaller --size or the numpy backend."
            )

    @classmethod
    def from_state(cls, arrays: dict[str, Any], params: RemodelParams | None, seed: int, *, xp: Any = np,
                   meta: dict[str, Any] | None = None) -> "Remodeler":
        """Rebuild an engine from :meth:`state_arrays` (e.g. a checkpoint) on ``xp``."""
        meta = dict(meta or {})
        names = [f.name for f in dataclasses.fields(RemodelState)]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ValueError(f"engine state lacks {', '.join(missing)}")
        conv = (lambda a: np.array(a)) if xp is np else xp.asarray
        state = RemodelState(**{n: conv(arrays[n]) for n in names})
        # states written before bmu_u widened to 16 bits (same scale, 1/127.5) hold it as uint8
        state.bmu_u = state.bmu_u.astype(xp.uint16, copy=False)
        vol = BoneVolume(state.bone, state.mineral, state.region, meta.get("voxel_size_um", 1.0),
                         site=meta.get("site"), meta=meta.get("volume_meta", {}))
        state.bone, state.mineral, state.region = vol.bone, vol.mineral, vol.region
        params = params or RemodelParams()
        if meta.get("surface_voxels_per_area") is not None:  # as measured on the starting volume
            params = dataclasses.replace(params, surface_voxels_per_area=float(meta["surface_voxels_per_area"]))
        if meta.get("modelling_surface_voxels_per_area") is not None:
            params = dataclasses.replace(params, modelling_surface_voxels_per_area=float(
                meta["modelling_surface_voxels_per_area"]))
        if meta.get("wall_surface_voxels_per_area") is not None:  # as last measured
            params = dataclasses.replace(params, wall_surface_voxels_per_area=float(meta["wall_surface_voxels_per_area"]))
        rem = cls(vol, params, seed, _state=state)
        rem._density_days = int(meta.get("surface_density_days", 0))
        previous = meta.get("previous_refill")
        if previous is not None:
            trab, cort = (float(x) for x in previous)
            rem._previous_refill = (trab, cort)
        return rem

    def state_arrays(self) -> dict[str, Any]:
        """The engine's complete state as named arrays (a checkpoint)."""
        return self.state.arrays()

    def state_meta(self) -> dict[str, Any]:
        """Scalars needed with :meth:`state_arrays` to rebuild the engine."""
        return {"voxel_size_um": self.voxel_size_um, "site": self.site,
                "surface_voxels_per_area": self.params.surface_voxels_per_area,
                "modelling_surface_voxels_per_area": self.params.modelling_surface_voxels_per_area,
                "wall_surface_voxels_per_area": self.params.wall_surface_voxels_per_area,
                "surface_density_days": self._density_days,
                "previous_refill": None if self._previous_refill is None else list(self._previous_refill),
                "volume_meta": {k: v for k, v in self.meta.items() if isinstance(v, (str, int, float, bool))}}

    # -- the step ------------------------------------------------------------------------
    @property
    def volume(self) -> BoneVolume:
        """Live view of the current volume (no copy)."""
        v = object.__new__(BoneVolume)
        v.bone, v.mineral, v.region = self.state.bone, self.state.mineral, self.state.region
        v.voxel_size_um, v.site, v.meta = self.voxel_size_um, self.site, self.meta
        return v

    def step(self, step_index: int, rates: Rates, dt_days: int = 1) -> None:
        """Advance by ``dt_days`` at the given rates; ``step_index`` keys the random draws.

        With ``params.surface_scale_um`` set, every ``params.surface_every_days`` the
        activation's surface densities are measured again on the bone as it stands
        (:func:`measure_surface_density`; on the GPU a few scalars come back for it);
        otherwise nothing is copied to the host and nothing waits for the device. When
        :attr:`modulation` is set (a :class:`~voxelbone.remodel.mechanostat.Modulation`),
        its fields scale the activation probability and the refill level voxel by voxel.
        """
        if isinstance(step_index, bool) or not isinstance(step_index, (int, np.integer)) or step_index < 0:
            raise ValueError(f"step_index must be a non-negative integer, got {step_index!r}")
        every = self.params.surface_every_days
        if self.params.measure_surface_density and self.params.surface_scale_um is not None and every > 0:
            if self._density_days >= every:
                self._measure_activation_density(self.volume)
                self._density_days = 0
            self._density_days += int(dt_days)
        sc = step_scalars(rates, self.params, self.voxel_size_um, dt_days, previous_refill=self._previous_refill)
        self._previous_refill = refill_levels(rates)
        mod = self.modulation
        act_mod, refill_mod = (None, None) if mod is None else (mod.activation, mod.refill)
        if self._gpu is not None:
            self._gpu.step(self.state, self.seed, int(step_index), sc, act_mod, refill_mod)
            return
        seeds = cpu.activate(self.state, self.seed, int(step_index), sc, act_mod)
        idx, codes = cpu.claim(self.state, seeds, self.seed, int(step_index), sc)
        cpu.update(self.state, idx, codes, sc, refill_mod)
        if sc.model_frac > 0:
            cpu.model(self.state, sc)

    def _measure_activation_density(self, volume: BoneVolume) -> None:
        """Set κ to that of ``volume`` (unmeasurable: kept); with ``params.surface_scale_um``, κ and κ_wall
        at that scale."""
        scale = self.params.surface_scale_um
        kappa, wall = measure_surface_density(volume, scale, walls=scale is not None)  # the model: κ only
        if kappa is not None:
            self.params = dataclasses.replace(self.params, surface_voxels_per_area=kappa)
        if wall is not None:
            self.params = dataclasses.replace(self.params, wall_surface_voxels_per_area=wall)

    def update_compartments(self) -> None:
        """Contour the cortical and trabecular compartments again from the bone (in place).

        The periosteal envelope (``region != OUTSIDE``) is kept; inside it the endosteal
        envelope follows the bone (:func:`voxelbone.compartments.segment_compartments`).
        A volume without a periosteal shell keeps its labels. On the device it stays there
        (a few scalars come back).
        """
        from ..compartments import segment_compartments  # noqa: PLC0415

        st = self.state
        c = segment_compartments(st.bone, self.voxel_size_um, envelope=st.region != Region.OUTSIDE)
        if c.has_periosteal_shell:
            st.region[...] = c.region_labels()

    def remove_fragments(self) -> None:
        """Remove bone not connected to the main structure (counted separately).

        With ``params.contour_compartments`` the compartments are contoured again first
        (:meth:`update_compartments`), so this runs every few simulated weeks.

        Components of ``bone ≥ 0.5`` (26-connectivity) are kept if they hold cortical bone,
        reach a face of the grid where it cuts the trabecular compartment (the bone continues
        beyond the sample there), or are the largest; other components, and partial-volume voxels with no kept bone
        voxel among their 26 neighbours, lose their bone and any BMU state.
        """
        if self.params.contour_compartments:
            self.update_compartments()
        xp, st = self.xp, self.state
        ndi = ndimage_module(xp)
        structure = xp.ones((3, 3, 3), dtype=bool)
        solid = st.bone >= np.float32(0.5)
        labels, count = ndi.label(solid, structure=structure)
        if int(count) <= 1:
            return
        sizes = xp.bincount(labels.ravel(), minlength=int(count) + 1)
        sizes[0] = 0
        keep_ids = xp.zeros(int(count) + 1, dtype=bool)
        keep_ids[xp.argmax(sizes)] = True
        cortical = labels[(st.region == Region.CORTICAL) & solid]
        keep_ids[cortical] = True
        # bone on a face where the grid cuts the trabecular compartment continues beyond the
        # sample: it is not a loose fragment (a small cube would otherwise lose whole
        # branches of the network that the bone around it holds)
        for face in _cut_faces(labels, st.region):
            keep_ids[face] = True
        keep_ids[0] = False
        kept = keep_ids[labels]
        near = ndi.binary_dilation(kept, structure=structure)
        drop = (st.bone > 0) & ~near
        n_fragments = int(count) - int(keep_ids.sum())
        st.fragment_bone += st.bone[drop].astype(xp.float64).sum()
        st.counters[3] += np.uint64(n_fragments)
        st.bone[drop] = 0.0
        st.mineral[drop] = 0.0
        st.osteoid[drop] = 0.0
        st.bmu_day[drop] = -1
        st.bmu_flags[drop] = 0
        st.bmu_amount[drop] = 0.0

    def stats(self) -> RemodelStats:
        """Cumulative counters (copies scalars to the host)."""
        c = asnumpy(self.state.counters).astype(np.int64)
        counts = dict(zip(COUNTERS, c.tolist()))
        if counts["seed_overflow"]:
            raise RuntimeError(
                f"{counts['seed_overflow']} BMU activations did not fit the seed buffer; "
                "this is a bug in the buffer sizing — please report it with the scenario"
            )
        voxel_mm3 = (self.voxel_size_um / 1000.0) ** 3
        return RemodelStats(
            bmus_trabecular=counts["bmus_trabecular"],
            bmus_osteonal=counts["bmus_osteonal"],
            perforations=counts["perforations"],
            fragments_removed=counts["fragments_removed"],
            fragment_volume_mm3=float(asnumpy(self.state.fragment_bone)[0]) * voxel_mm3,
            active_bmu_voxels=int((self.state.bmu_day >= 0).sum()),
        )


def _cut_faces(labels: Any, region: Any) -> list[Any]:
    """Component labels on the grid's faces where the trabecular compartment is cut."""
    out = []
    for axis in range(labels.ndim):
        for end in (0, -1):
            sl = tuple(end if a == axis else slice(None) for a in range(labels.ndim))
            out.append(labels[sl][region[sl] == Region.TRABECULAR])
    return out


class SurfaceDensity(NamedTuple):
    """Surface voxels per voxel-face area of the surface activation counts (κ), or ``None``
    where there is too little of that surface to measure."""

    trabecular: float | None  #: the trabecular BMUs' surface (κ)
    wall: float | None  #: the intracortical pore walls (κ_wall)


def _central_block(shape: tuple[int, ...], max_edge: int) -> tuple[slice, ...]:
    return tuple(slice(max((n - max_edge) // 2, 0), max((n - max_edge) // 2, 0) + min(n, max_edge)) for n in shape)


def measure_surface_density(volume: BoneVolume, scale_um: float | None = None, max_edge: int = 128, *,
                            walls: bool = True) -> SurfaceDensity:
    """κ and κ_wall of this volume: BMU candidates per voxel-face area of the surface seen at ``scale_um``.

    Counts, on the grid, the voxels that can start a trabecular BMU (bone of the trabecular
    compartment with a marrow face-neighbour in it) and those that can start a pore-wall BMU
    (cortical bone with a marrow face-neighbour and no trabecular-marrow one), and divides
    each count by the marching-cubes area of its surface as a grid of ``scale_um`` voxels
    holds the same bone (:func:`voxelbone.volume.coarsen_to`; the volume's own grid when it
    is as coarse or coarser). With ``scale_um`` None — the model's rule — on a central block
    of at most ``max_edge``³ voxels at the grid's own resolution, on the host; with a scale
    over the whole volume (the pore walls lie in the cortex, at the sample's edge), a CuPy
    volume on its device (only counts and areas come back).

    The engine activates ``candidates · v²/κ`` of surface. The grid's staircase makes κ
    depend on the voxel size relative to the structure; measuring it keeps the activation
    per µm² of surface the same at every voxel size. Measured at one scale for every grid
    (``RemodelParams.surface_scale_um``, a candidate rule, not adopted), a finer grid would
    no longer start more BMUs on the roughness only it resolves (the rims of the cavities it
    digs; invariance page, "Activation at one scale"). The pore walls have their own κ:
    canals curve more than trabeculae, and at the trabecular κ they start 1.15–1.45 times
    the BMUs per µm² of wall the cortical Ac.f asks.

    The areas keep the faces that close the mesh where the sample is cut
    (``drop_cut_planes=False``), as the trabecular area did when the clinical calibration
    (``sites.SiteRates``) was first fitted. ``None`` for a surface with fewer than 200
    candidates, and for the walls when ``walls`` is False (not measured).
    """
    from ..metrics.surface import bone_surface_mm2  # noqa: PLC0415
    from ..volume import coarsen_to  # noqa: PLC0415

    v = float(volume.voxel_size_um)
    if scale_um is None:
        sl = _central_block(volume.shape, max_edge)
        b = np.ascontiguousarray(asnumpy(volume.bone[sl]), dtype=np.float32)
        r = np.ascontiguousarray(asnumpy(volume.region[sl]))
    else:
        b, r = volume.bone, volume.region
    _, any_tm = cpu.surface_flags(b, r)
    n_trab = int(((b >= 0.5) & (r == int(Region.TRABECULAR)) & any_tm).sum())
    n_wall = int(cpu.pore_wall_voxels(b, r)[0].sum()) if walls else 0
    seen = BoneVolume(b, b, r, v, volume.site)
    if scale_um is not None and scale_um > v and all(n * v >= 2 * scale_um for n in b.shape):
        seen = coarsen_to(seen, float(scale_um))
    sb, sr = seen.bone, seen.region
    s_trab = sr == int(Region.TRABECULAR)
    face_mm2 = (v / 1000.0) ** 2
    kappa = None
    if n_trab >= 200:
        area = bone_surface_mm2(sb * s_trab, seen.voxel_size_um, within=s_trab, drop_cut_planes=False)
        kappa = min(max(n_trab * face_mm2 / area, 0.4), 1.5) if area > 0 else None
    wall = None
    if walls and n_wall >= 200:
        near = cpu.pore_wall_voxels(sb, sr)[1]  # the canal walls and the pores they face
        area = bone_surface_mm2(sb, seen.voxel_size_um, within=near, drop_cut_planes=False)
        wall = min(max(n_wall * face_mm2 / area, 0.4), 1.5) if area > 0 else None
    return SurfaceDensity(kappa, wall)


def measure_modelling_surface_density(volume: BoneVolume, max_edge: int = 128) -> float | None:
    """κ_m of this volume: modelling surface voxels per voxel-face area of that true surface.

    Counts the voxels on which modelling-based formation works (the quiescent surface of
    :func:`voxelbone.remodel.cpu.model_surface`: trabecular and endocortical bone facing
    marrow of the trabecular compartment) and divides by the marching-cubes area of the
    bone surface nearest to them, to that marrow or to the trabecular compartment, without the cut planes,
    on the same central block as :func:`measure_surface_density`. The rule needs its own
    density: κ counts only the trabecular compartment's surface voxels against an area that
    includes the cut planes, while the rule also forms on the endocortical surface; with κ the
    rule formed 1.47× (20 µm) and 1.38× (40 µm) the intended volume per µm² of the lumbar
    phantom. ``None`` when there is too little surface.
    """
    from ..metrics.surface import bone_surface_mm2  # noqa: PLC0415

    sl = _central_block(volume.shape, max_edge)
    b = np.ascontiguousarray(asnumpy(volume.bone[sl]), dtype=np.float32)
    r = np.ascontiguousarray(asnumpy(volume.region[sl]))
    marrow, _, surface = cpu.model_surface(b, r, np.full(b.shape, -1, dtype=np.int16))
    n_surf = int(surface.sum())
    if n_surf < 200:
        return None
    area_mm2 = bone_surface_mm2(b, volume.voxel_size_um, within=surface | marrow | (r == int(Region.TRABECULAR)))
    if not area_mm2 > 0:
        return None
    face_mm2 = (volume.voxel_size_um / 1000.0) ** 2
    return float(np.clip(n_surf * face_mm2 / area_mm2, 0.4, 1.5))
