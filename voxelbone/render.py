"""3-D renders with PyVista, offscreen (EGL when there is no display), saved as PNG/GIF/MP4.

Scenes:

* :func:`render_thickness` — bone isosurface coloured by local thickness (µm colour bar);
* :func:`render_sed` and :func:`render_sed_grid` — bone coloured by the strain energy
  density of a micro-FE compression (:func:`sed_field`: the solver of
  :mod:`voxelbone.mechanics` run on the volume as drawn);
* :func:`render_change` — bone resorbed (red) and formed (green) between two volumes, the
  unchanged bone translucent grey;
* :func:`render_grid` — several volumes side by side with one shared camera (before/after,
  or presets at the same year);
* :func:`render_cortex_cutaway` — the cortex cut open half-way through its thickness, so
  its canals (Ct.Po) show as holes;
* :func:`render_cortex_change` — the cortex seen from the marrow and the trabecular network
  beside it, the start surface coloured by the bone lost (red) and gained (blue) since, in
  µm of dense bone per area (:func:`surface_change_um`: partial volume, so a thinning of a
  third of a voxel shows);
* :func:`run_renders` also offers the cortical-change figure
  (:func:`voxelbone.plots.plot_cortex_change`, a 2-D figure of cross-sections and profiles);
* :func:`animate` — structure over the simulated years (GIF and MP4), year and key metrics
  written on each frame;
* :func:`render_results` — all of the above for a results folder (``voxelbone render``).

Large volumes are block-averaged (the bone fraction, so the 0.5 isosurface stays
sub-voxel) to at most ``max_voxels`` before meshing, and the mesh is decimated; the
caption says so.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import imageio.v2 as imageio
import numpy as np
from scipy.ndimage import distance_transform_edt, grey_dilation
from skimage.measure import marching_cubes

from .backend import asnumpy
from .cortex_change import cortex_change
from .metrics import local_thickness
from .plots import plot_cortex_change
from .results import load_snapshot
from .runfolder import RunFolder
from .units import DAYS_PER_YEAR
from .volume import BONE_THRESHOLD, BoneVolume, Region, coarsen

__all__ = [
    "COLORINGS",
    "RenderOptions",
    "SedField",
    "animate",
    "bone_surface",
    "render_change",
    "render_cortex_change",
    "render_cortex_cutaway",
    "render_grid",
    "render_results",
    "render_sed",
    "render_sed_grid",
    "render_thickness",
    "run_renders",
    "sed_field",
    "surface_change_um",
]

DEFAULT_MAX_VOXELS = 192**3
RESORBED_RGB = (0.85, 0.15, 0.12)
FORMED_RGB = (0.15, 0.65, 0.25)
#: What the single-volume scenes of a run are coloured by (:attr:`RenderOptions.color`).
COLORINGS = ("thickness", "sed")
#: Colour map of strain energy density: blue (unloaded) to red (most loaded).
SED_COLORMAP = "coolwarm"
#: Relative residual of the solves behind SED renders (the mechanostat's; a picture needs no more).
SED_RTOL = 1e-4


@dataclass(frozen=True)
class RenderOptions:
    """Image size, detail and camera shared by the scenes.

    Attributes
    ----------
    window_size : (int, int)
        Image size in pixels (width, height) of one panel.
    max_voxels : int
        Volumes with more voxels are block-averaged before meshing (caption says so).
    decimate : float
        Fraction of triangles removed from meshes over 400 000 triangles (0 keeps all).
    azimuth_deg, elevation_deg : float
        Camera direction relative to the isometric view.
    color : {None, "thickness", "sed"}
        What the start and end scenes of a run (:func:`run_renders`) are coloured by:
        ``"thickness"`` local thickness; ``"sed"`` strain energy density of a micro-FE
        compression along ``sed_axis`` (``sed_end`` and ``sed_before_after`` replace the
        thickness scenes); ``None`` thickness, plus ``sed_end`` when the run had
        mechanics on (``fe_every_days > 0``).
    sed_axis : {"z", "y", "x"}
        Load axis of the SED scenes.
    """

    window_size: tuple[int, int] = (800, 800)
    max_voxels: int = DEFAULT_MAX_VOXELS
    decimate: float = 0.5
    azimuth_deg: float = 0.0
    elevation_deg: float = 0.0
    color: str | None = None
    sed_axis: str = "z"

    def __post_init__(self) -> None:
        if self.color is not None and self.color not in COLORINGS:
            raise ValueError(f"color must be one of {COLORINGS} or None, got {self.color!r}")
        if self.sed_axis not in ("z", "y", "x"):
            raise ValueError(f"sed_axis must be 'z', 'y' or 'x', got {self.sed_axis!r}")


def _pyvista() -> Any:
    if not os.environ.get("DISPLAY") and "VTK_DEFAULT_OPENGL_WINDOW" not in os.environ:
        os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = "vtkEGLRenderWindow"
    # deferred: PyVista/VTK cost ~0.3 s to import and need the OpenGL choice made first
    import pyvista as pv  # noqa: PLC0415

    pv.OFF_SCREEN = True
    return pv


def _factor(shape: Sequence[int], max_voxels: int) -> int:
    n = int(np.prod(shape))
    return max(1, int(math.ceil((n / max_voxels) ** (1.0 / 3.0)))) if n > max_voxels else 1


def _coarse(volume: BoneVolume, opts: RenderOptions) -> tuple[BoneVolume, int]:
    """The volume on the host, block-averaged (:func:`voxelbone.volume.coarsen`) to fit ``max_voxels``."""
    k = _factor(volume.shape, opts.max_voxels)
    return coarsen(volume.to(np), k), k


def _field(volume: BoneVolume, opts: RenderOptions) -> tuple[np.ndarray, float, int]:
    v, k = _coarse(volume, opts)
    return np.asarray(v.bone, dtype=np.float32), v.voxel_size_um, k


def bone_surface(field: np.ndarray, spacing_um: float, *, level: float = BONE_THRESHOLD,
                 decimate: float = 0.0, scalars: np.ndarray | None = None, scalars_name: str = "values") -> Any:
    """Isosurface of a bone-fraction field as a PyVista mesh (coordinates in mm).

    Parameters
    ----------
    field
        3-D bone fraction (padded with zeros so the surface is closed at the borders).
    spacing_um
        Voxel size of ``field`` in µm.
    scalars
        Optional per-voxel values sampled at each vertex (nearest voxel inside the bone).
    """
    pv = _pyvista()

    if not np.any(field > level):
        return pv.PolyData()
    padded = np.pad(field, 1)
    verts, faces, _, _ = marching_cubes(padded, level=level, step_size=1, allow_degenerate=False)
    idx = np.clip(np.rint(verts).astype(np.int64) - 1, 0, np.array(field.shape) - 1)
    verts = (verts - 1.0) * (spacing_um / 1000.0)
    mesh = pv.PolyData(verts[:, ::-1].copy(), np.hstack([np.full((faces.shape[0], 1), 3), faces]).astype(np.int64).ravel())
    if scalars is not None:
        mesh.point_data[scalars_name] = scalars[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.float32)
    if decimate > 0 and mesh.n_cells > 400_000:
        mesh = mesh.decimate_pro(decimate, preserve_topology=True)
    return mesh


def _plotter(shape: tuple[int, int], opts: RenderOptions) -> Any:
    pv = _pyvista()
    w, h = opts.window_size
    p = pv.Plotter(off_screen=True, shape=shape, window_size=(w * shape[1], h * shape[0]), border=False)
    p.set_background("white")
    return p


def _camera(p: Any, opts: RenderOptions) -> None:
    p.camera_position = "iso"
    p.camera.azimuth = opts.azimuth_deg
    p.camera.elevation = opts.elevation_deg
    p.reset_camera()


def _caption(volume: BoneVolume, k: int, extra: str = "") -> str:
    nz, ny, nx = volume.shape
    text = f"{nx}×{ny}×{nz} voxels at {volume.voxel_size_um:g} µm"
    if k > 1:
        text += f"; rendered block-averaged ×{k} ({volume.voxel_size_um * k:g} µm)"
    return text + (f"\n{extra}" if extra else "")


#: The thickness colour bar: horizontal, under the structure, labels below it.
_THICKNESS_BAR = {"title": "local thickness (µm)", "color": "black", "fmt": "%.0f", "n_labels": 5,
                  "vertical": False, "position_x": 0.25, "position_y": 0.08, "width": 0.5}


def _title_over_bar(p: Any, title: str = _THICKNESS_BAR["title"]) -> None:
    """Put the colour bar's labels under it and its title over it (VTK draws both on one side, overlapping)."""
    bar = p.scalar_bar
    bar.SetTextPositionToPrecedeScalarBar()
    bar.SetTitle("")
    p.add_text(title, position=(0.25, 0.175), viewport=True, font_size=9, color="black")


def _thickness_mesh(volume: BoneVolume, opts: RenderOptions) -> tuple[Any, int]:
    field, spacing, k = _field(volume, opts)
    lt = np.asarray(asnumpy(local_thickness(field > BONE_THRESHOLD, spacing)))
    # surface vertices lie between voxels: take the thickness of the bone beside them
    lt = grey_dilation(lt, size=(3, 3, 3))
    return bone_surface(field, spacing, decimate=opts.decimate, scalars=lt, scalars_name="thickness (µm)"), k


def render_thickness(volume: BoneVolume, path: str | Path, *, title: str = "", clim_um: tuple[float, float] | None = None,
                     options: RenderOptions | None = None) -> Path:
    """Bone isosurface coloured by local thickness, with a colour bar in µm.

    Parameters
    ----------
    volume
        The volume to draw (host or device arrays).
    path
        PNG to write.
    title
        Text at the top left (e.g. the preset and year).
    clim_um
        Colour range in µm (default 0 to the 99th percentile of the thickness).
    """
    return render_grid({title: volume}, path, options=options, clim_um=clim_um)


def render_grid(volumes: Mapping[str, BoneVolume], path: str | Path, *, columns: int | None = None,
                clim_um: tuple[float, float] | None = None, options: RenderOptions | None = None) -> Path:
    """Several volumes side by side with the same camera and colour scale (thickness).

    Parameters
    ----------
    volumes
        Panel title → volume, drawn left to right then top to bottom.
    columns
        Panels per row (default: all in one row up to 4).
    """
    opts = options or RenderOptions()
    if not volumes:
        raise ValueError("render_grid needs at least one volume")
    meshes = {label: _thickness_mesh(v, opts) for label, v in volumes.items()}
    panels = {label: (mesh, _caption(volumes[label], k)) for label, (mesh, k) in meshes.items()}
    return _draw_panels(panels, path, scalars="thickness (µm)", cmap="viridis", clim=clim_um, bar=_THICKNESS_BAR,
                        columns=columns, opts=opts)


def _draw_panels(panels: Mapping[str, tuple[Any, str]], path: str | Path, *, scalars: str, cmap: str,
                 clim: tuple[float, float] | None, bar: Mapping[str, Any], columns: int | None,
                 opts: RenderOptions) -> Path:
    """Meshes coloured by one point field, side by side with one camera and one colour scale.

    ``panels``: title → (mesh, caption); ``clim`` default 0 to the 99th percentile of the field.
    """
    n = len(panels)
    nc = columns or min(n, 4)
    nr = (n + nc - 1) // nc
    if clim is None:
        vals = [m.point_data[scalars] for m, _ in panels.values() if m.n_points]
        hi = float(np.percentile(np.concatenate(vals), 99)) if vals else 1.0
        clim = (0.0, hi if hi > 0 else 1.0)
    p = _plotter((nr, nc), opts)
    for i, (label, (mesh, caption)) in enumerate(panels.items()):
        p.subplot(i // nc, i % nc)
        if mesh.n_points:
            p.add_mesh(mesh, scalars=scalars, cmap=cmap, clim=clim, smooth_shading=True,
                       show_scalar_bar=(i == 0), scalar_bar_args=dict(bar))
            if i == 0:
                _title_over_bar(p, bar["title"])
        p.add_text(label, position="upper_left", font_size=11, color="black")
        p.add_text(caption, position="lower_left", font_size=7, color="black")
        _camera(p, opts)
    p.link_views()
    return _screenshot(p, path)


_SED_NAME = "SED (MPa)"


@dataclass(frozen=True)
class SedField:
    """Strain energy density of a volume as drawn (block-averaged to ``max_voxels``).

    Attributes
    ----------
    bone : ndarray, float32
        Bone fraction of the drawn grid (its 0.5 isosurface is the surface drawn).
    voxel_size_um : float
        Voxel edge of the drawn grid (µm).
    factor : int
        Block-averaging factor from the volume to the drawn grid (1: none).
    sed_mpa : ndarray, float32
        SED per voxel of the drawn grid (MPa = mJ/mm³) from
        :func:`voxelbone.mechanics.apparent_modulus`; each marrow voxel holds the value of
        the nearest bone voxel, so the surface between them takes the bone's value.
        Bone that carries no load (not connected face to face between the loaded faces) is 0.
    e_app_mpa : float
        Apparent modulus of the same solve (MPa).
    axis : str
        Load axis.
    caption : str
        Grid size, voxel size and load case, for the picture.
    """

    bone: np.ndarray
    voxel_size_um: float
    factor: int
    sed_mpa: np.ndarray
    e_app_mpa: float
    axis: str
    caption: str


def sed_field(volume: BoneVolume, *, axis: str = "z", options: RenderOptions | None = None,
              tissue_modulus_mpa: float | None = None) -> SedField:
    """Solve a constrained compression of the volume as drawn and return its SED per voxel.

    The volume is block-averaged as every render is (``options.max_voxels``), then
    :func:`voxelbone.mechanics.apparent_modulus` compresses it along ``axis`` by 1 %
    (bottom face fixed, top face displaced; tissue modulus from mineral) to a relative
    residual of ``SED_RTOL``, on the CPU (the drawn grid is a host copy).

    Parameters
    ----------
    volume
        The volume to draw (host or device arrays).
    axis : {"z", "y", "x"}
        Load axis.
    options
        ``max_voxels`` of the drawn grid.
    tissue_modulus_mpa
        Modulus of fully mineralised tissue (default that of :mod:`voxelbone.mechanics`).

    Returns
    -------
    SedField

    Warns
    -----
    voxelbone.mechanics.MechanicsWarning
        When no bone connects the loaded faces (the SED is then 0 everywhere).
    """
    from .mechanics import apparent_modulus  # noqa: PLC0415 — numba kernels compile on first use

    opts = options or RenderOptions()
    cv, k = _coarse(volume, opts)
    res = apparent_modulus(cv, axis=axis, tissue_modulus_mpa=tissue_modulus_mpa, rtol=SED_RTOL, backend="numpy")
    bone = np.asarray(cv.bone, dtype=np.float32)
    sed = np.asarray(asnumpy(res.sed_mpa), dtype=np.float32)
    is_bone = bone >= BONE_THRESHOLD
    if is_bone.any() and not is_bone.all():
        nearest = distance_transform_edt(~is_bone, return_distances=False, return_indices=True)
        sed = sed[tuple(nearest)]
    caption = _caption(volume, k, f"{abs(100 * res.strain):g} % compression along {axis}: "
                                  f"E_app = {res.e_app_mpa:.0f} MPa")
    return SedField(bone, cv.voxel_size_um, k, sed, float(res.e_app_mpa), axis, caption)


def _sed_mesh(field: SedField, opts: RenderOptions) -> Any:
    return bone_surface(field.bone, field.voxel_size_um, decimate=opts.decimate, scalars=field.sed_mpa,
                        scalars_name=_SED_NAME)


#: The SED colour bar (the load case is in each panel's caption).
_SED_BAR = {**_THICKNESS_BAR, "title": "strain energy density (MPa)", "fmt": "%.2f"}


def render_sed_grid(volumes: Mapping[str, BoneVolume | SedField], path: str | Path, *, axis: str = "z",
                    columns: int | None = None, clim_mpa: tuple[float, float] | None = None,
                    options: RenderOptions | None = None) -> Path:
    """Several volumes side by side, bone coloured by strain energy density on one scale.

    Parameters
    ----------
    volumes
        Panel title → volume (solved here by :func:`sed_field`) or an already solved
        :class:`SedField`.
    path
        PNG to write.
    axis : {"z", "y", "x"}
        Load axis of the volumes solved here.
    columns
        Panels per row (default: all in one row up to 4).
    clim_mpa
        Colour range in MPa (default 0 to the 99th percentile of the SED on the surfaces).

    Returns
    -------
    Path
        The PNG written.
    """
    opts = options or RenderOptions()
    if not volumes:
        raise ValueError("render_sed_grid needs at least one volume")
    fields = {label: v if isinstance(v, SedField) else sed_field(v, axis=axis, options=opts)
              for label, v in volumes.items()}
    panels = {label: (_sed_mesh(f, opts), f.caption) for label, f in fields.items()}
    return _draw_panels(panels, path, scalars=_SED_NAME, cmap=SED_COLORMAP, clim=clim_mpa, bar=_SED_BAR,
                        columns=columns, opts=opts)


def render_sed(volume: BoneVolume | SedField, path: str | Path, *, title: str = "", axis: str = "z",
               clim_mpa: tuple[float, float] | None = None, options: RenderOptions | None = None) -> Path:
    """Bone isosurface coloured by the strain energy density of a 1 % compression along ``axis``.

    Where the bone carries the load the surface is red, where it carries little it is blue
    (:data:`SED_COLORMAP`); the caption gives the load case and the apparent modulus. See
    :func:`sed_field` for the solve and :func:`render_sed_grid` for the parameters.
    """
    return render_sed_grid({title: volume}, path, axis=axis, clim_mpa=clim_mpa, options=options)


def _screenshot(p: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    p.screenshot(str(path))
    p.close()
    return path


def render_change(before: BoneVolume, after: BoneVolume, path: str | Path, *, title: str = "",
                  options: RenderOptions | None = None) -> Path:
    """Bone resorbed (red) and formed (green) from ``before`` to ``after``; unchanged bone grey.

    Parameters
    ----------
    before, after
        Volumes of the same shape and voxel size (e.g. the first and last snapshot).
    """
    if before.shape != after.shape or before.voxel_size_um != after.voxel_size_um:
        raise ValueError(f"render_change needs volumes of one grid: {before.shape} at {before.voxel_size_um} µm "
                         f"vs {after.shape} at {after.voxel_size_um} µm")
    opts = options or RenderOptions()
    b0, spacing, k = _field(before, opts)
    b1, _, _ = _field(after, opts)
    kept = np.minimum(b0, b1)
    resorbed = np.clip(b0 - b1, 0.0, 1.0)
    formed = np.clip(b1 - b0, 0.0, 1.0)
    p = _plotter((1, 1), opts)
    m_kept = bone_surface(kept, spacing, decimate=opts.decimate)
    if m_kept.n_points:
        p.add_mesh(m_kept, color="lightgrey", opacity=0.35, smooth_shading=True)
    # changes are thin shells: draw where at least a quarter of a voxel changed
    for field, rgb, name in ((resorbed, RESORBED_RGB, "resorbed"), (formed, FORMED_RGB, "formed")):
        m = bone_surface(field, spacing, level=0.25, decimate=opts.decimate)
        if m.n_points:
            p.add_mesh(m, color=rgb, smooth_shading=True, label=name)
    vox_mm3 = (before.voxel_size_um / 1000.0) ** 3
    res_mm3 = float(np.clip(asnumpy(before.bone) - asnumpy(after.bone), 0, None).sum()) * vox_mm3
    form_mm3 = float(np.clip(asnumpy(after.bone) - asnumpy(before.bone), 0, None).sum()) * vox_mm3
    p.add_text(title or "bone change", position="upper_left", font_size=11, color="black")
    p.add_text(f"resorbed {res_mm3:.3f} mm³ (red), formed {form_mm3:.3f} mm³ (green)\n" + _caption(before, k),
               position="lower_left", font_size=8, color="black")
    _camera(p, opts)
    return _screenshot(p, path)


def render_cortex_cutaway(volume: BoneVolume, path: str | Path, *, title: str = "", options: RenderOptions | None = None) -> Path:
    """The cortex cut open half-way through its thickness, so its pores show as holes.

    The cortical compartment (``region == CORTICAL``) is clipped by a plane through the
    middle of its thickness, parallel to the periosteal surface; the trabecular bone is
    drawn translucent behind it.
    """
    opts = options or RenderOptions()
    region = np.asarray(asnumpy(volume.region))
    cort = region == int(Region.CORTICAL)
    if not cort.any():
        raise ValueError("the volume has no cortical region to cut away (region labels hold no cortex)")
    cv, k = _coarse(volume, opts)
    field, spacing = np.asarray(cv.bone, dtype=np.float32), cv.voxel_size_um
    creg = np.asarray(cv.region) == int(Region.CORTICAL)
    ctb = np.where(creg, field, 0.0)
    trab = np.where(~creg, field, 0.0)
    # the cortex's thin axis: the one along which the cortical mask is shortest
    extent = [np.ptp(np.nonzero(creg.any(axis=tuple(j for j in range(3) if j != a)))[0]) + 1 for a in range(3)]
    axis = int(np.argmin(extent))
    idx = np.nonzero(creg.any(axis=tuple(j for j in range(3) if j != axis)))[0]
    mid = 0.5 * (idx.min() + idx.max()) * spacing / 1000.0
    normal = [0.0, 0.0, 0.0]
    normal[2 - axis] = -1.0 if idx.min() < field.shape[axis] / 2 else 1.0   # mesh is (x, y, z) = (axis2, axis1, axis0)
    origin = [0.0, 0.0, 0.0]
    origin[2 - axis] = mid
    p = _plotter((1, 1), opts)
    m_c = bone_surface(ctb, spacing, decimate=opts.decimate)
    if m_c.n_points:
        cut = m_c.clip(normal=normal, origin=origin, invert=False)
        p.add_mesh(cut, color="ivory", smooth_shading=True, specular=0.2)
    m_t = bone_surface(trab, spacing, decimate=opts.decimate)
    if m_t.n_points:
        p.add_mesh(m_t, color="lightsteelblue", opacity=0.25)
    po = 1.0 - float(asnumpy(volume.bone)[cort].mean())
    p.add_text(title or "cortex cut-away", position="upper_left", font_size=11, color="black")
    p.add_text(f"cortical pores seen from inside the cortex; pore fraction {100 * po:.1f} %\n" + _caption(volume, k),
               position="lower_left", font_size=8, color="black")
    p.camera_position = [tuple(np.array(origin) + 4 * np.array(normal) * (field.shape[0] * spacing / 1000.0)
                               + np.array([0.3, 0.3, 0.3])), tuple(np.array(field.shape[::-1]) * spacing / 2000.0), (0, 0, 1)]
    p.reset_camera()
    return _screenshot(p, path)


#: Colours of :func:`render_cortex_change`: bone lost, unchanged, bone gained.
LOSS_RGB = RESORBED_RGB
UNCHANGED_RGB = (0.93, 0.91, 0.84)
GAIN_RGB = (0.13, 0.33, 0.80)
#: Colour range (±, µm of fully dense bone per unit area) of :func:`render_cortex_change`:
#: half a 30 µm voxel, one scale for every run, so a thinning of a third of a voxel is red.
CORTEX_CHANGE_CLIM_UM = 15.0
_CHANGE_NAME = "bone change (µm)"
_CHANGE_BAR = {**_THICKNESS_BAR, "title": "bone gained − lost (µm of dense bone)", "fmt": "%.0f"}


def surface_change_um(before: np.ndarray, after: np.ndarray, voxel_size_um: float) -> np.ndarray:
    """Bone gained minus lost per unit area near each voxel, in µm of fully dense bone.

    The change of bone fraction averaged over the 3×3×3 voxels around each voxel, times
    three voxel edges: at a flat surface that lost (gained) a layer of bone fraction ``f``
    one voxel deep this reads ``−f × voxel_size_um`` (``+``) on both sides of the surface,
    so a thinning of a third of a voxel, invisible in the 0.5 isosurface, reads a third of
    a voxel (the quantity of the map of :func:`voxelbone.cortex_change.cortex_change`,
    taken locally).

    Parameters
    ----------
    before, after
        Bone fractions of one grid.
    voxel_size_um
        Voxel edge (µm).
    """
    from scipy.ndimage import uniform_filter  # noqa: PLC0415

    diff = np.asarray(after, dtype=np.float32) - np.asarray(before, dtype=np.float32)
    return (uniform_filter(diff, size=3, mode="constant") * (3.0 * voxel_size_um)).astype(np.float32)


def _surface_in_box(field: np.ndarray, spacing_um: float, scalars: np.ndarray, decimate: float) -> Any:
    """:func:`bone_surface` of the non-zero part of ``field`` (meshed in its bounding box, placed in the volume)."""
    nz = [np.nonzero(field.any(axis=tuple(a for a in range(3) if a != axis)))[0] for axis in range(3)]
    if any(i.size == 0 for i in nz):
        return bone_surface(field[:0], spacing_um)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in nz)
    mesh = bone_surface(field[box], spacing_um, decimate=decimate, scalars=scalars[box], scalars_name=_CHANGE_NAME)
    if mesh.n_points:
        mesh.points += np.array([box[2].start, box[1].start, box[0].start], dtype=float) * (spacing_um / 1000.0)
    return mesh


def _cortex_change_scene(before: BoneVolume, after: BoneVolume, title: str, opts: RenderOptions) -> Any:
    """The plotter of :func:`render_cortex_change`, drawn but not yet saved (None without a cortex)."""
    from matplotlib.colors import LinearSegmentedColormap  # noqa: PLC0415

    from .cortex_change import cortex_face  # noqa: PLC0415

    if before.shape != after.shape or before.voxel_size_um != after.voxel_size_um:
        raise ValueError(f"render_cortex_change needs volumes of one grid: {before.shape} at {before.voxel_size_um} µm "
                         f"vs {after.shape} at {after.voxel_size_um} µm")
    c0, k = _coarse(before, opts)
    c1, _ = _coarse(after, opts)
    spacing = c0.voxel_size_um
    b0 = np.asarray(c0.bone, dtype=np.float32)
    b1 = np.asarray(c1.bone, dtype=np.float32)
    creg = np.asarray(c0.region) == int(Region.CORTICAL)
    if not creg.any():
        return None
    change = surface_change_um(b0, b1, spacing)
    face = cortex_face(creg)
    # the cortex's side of the volume along its thin axis (a ring: its low-y half), seen from the marrow;
    # the network is drawn in that half, on the far side along the other in-slice axis (the viewer looks past it)
    axis, side = face if face is not None else (1, -1)
    lateral = 3 - axis
    idx = np.indices(b0.shape, sparse=True)
    near = (idx[axis] < b0.shape[axis] / 2.0) if side < 0 else (idx[axis] >= b0.shape[axis] / 2.0)
    far_half = idx[lateral] < b0.shape[lateral] / 2.0
    cortex_field = np.where(creg & near, b0, 0.0)
    network_field = np.where(~creg & near & far_half, b0, 0.0)
    cmap = LinearSegmentedColormap.from_list("loss_gain", [LOSS_RGB, UNCHANGED_RGB, GAIN_RGB])
    clim = (-CORTEX_CHANGE_CLIM_UM, CORTEX_CHANGE_CLIM_UM)
    p = _plotter((1, 1), opts)
    first = True
    for field in (cortex_field, network_field):
        mesh = _surface_in_box(field, spacing, change, opts.decimate)
        if mesh.n_points:
            p.add_mesh(mesh, scalars=_CHANGE_NAME, cmap=cmap, clim=clim, smooth_shading=True, specular=0.2,
                       show_scalar_bar=first, scalar_bar_args=dict(_CHANGE_BAR))
            if first:
                _title_over_bar(p, _CHANGE_BAR["title"])
            first = False
    vox_mm3 = (before.voxel_size_um / 1000.0) ** 3
    cort = np.asarray(asnumpy(before.region)) == int(Region.CORTICAL)
    d = (np.asarray(asnumpy(after.bone), dtype=np.float64) - np.asarray(asnumpy(before.bone), dtype=np.float64))[cort]
    lost, gained = float(np.clip(-d, 0, None).sum()) * vox_mm3, float(np.clip(d, 0, None).sum()) * vox_mm3
    p.add_text((title or "cortex change") + "\nthe cortex seen from the marrow, with the trabecular network beside it",
               position="upper_left", font_size=10, color="black")
    p.add_text(f"cortex: bone lost {lost:.4f} mm³ (red), gained {gained:.4f} mm³ (blue); start surface coloured\n"
               + _caption(before, k), position="lower_left", font_size=8, color="black")
    # camera: from the marrow side of the cortex, above, on the side away from the network
    direction = np.zeros(3)
    direction[2 - axis] = -float(side)   # mesh coordinates are (x, y, z) = (axis 2, axis 1, axis 0)
    direction[2 - lateral] = 0.45
    direction[2] = 0.5
    centre = np.array(b0.shape[::-1], dtype=float) * spacing / 2000.0
    p.camera_position = [tuple(centre + 4.0 * float(np.max(centre)) * direction / np.linalg.norm(direction)),
                         tuple(centre), (0.0, 0.0, 1.0)]
    p.reset_camera()
    p.camera.zoom(0.85)  # room for the colour bar and the texts
    return p


def render_cortex_change(before: BoneVolume, after: BoneVolume, path: str | Path, *, title: str = "",
                         options: RenderOptions | None = None) -> Path | None:
    """The start bone surface coloured by the bone lost (red) and gained (blue) since: the cortex from the marrow.

    The cortical compartment of ``before`` (``region == CORTICAL``) is seen from the marrow
    side, so its endocortical surface, where a cortex thins, faces the viewer; the
    trabecular network is drawn in the half of the volume beside it, on the far side.
    Every surface is the 0.5 isosurface of ``before``'s bone fraction coloured by
    :func:`surface_change_um` (µm of dense bone gained minus lost; ±``CORTEX_CHANGE_CLIM_UM``
    spans the colours): partial-volume loss shows, so a thinning of a third of a voxel is red
    though the isosurface has not moved. A cortex along one face of the volume is seen
    across that face; a cortex all round (a ring) is cut in half along y.

    Parameters
    ----------
    before, after
        Volumes of one grid (e.g. the first and last snapshot); host or device.
    path
        PNG to write.
    title
        Text at the top left (e.g. the years).
    options
        Image size and detail.

    Returns
    -------
    Path or None
        The PNG written; None (nothing written) when ``before`` has no cortical region.

    Raises
    ------
    ValueError
        When the volumes differ in shape or voxel size.
    """
    p = _cortex_change_scene(before, after, title, options or RenderOptions())
    return None if p is None else _screenshot(p, path)


def animate(frames: Sequence[tuple[str, BoneVolume]], path: str | Path, *, fps: float = 4.0,
            options: RenderOptions | None = None) -> list[Path]:
    """Animation of a sequence of volumes (one frame each), written as GIF and MP4.

    Parameters
    ----------
    frames
        ``(text, volume)``: the text (year and key metrics) is written on the frame.
    path
        Output path; ``.gif`` and ``.mp4`` files are written beside each other with its stem.

    Returns
    -------
    list of Path
        The files written (MP4 is skipped with a warning when no ffmpeg is available).
    """
    if not frames:
        raise ValueError("animate needs at least one frame")
    opts = options or RenderOptions()
    stem = Path(path).with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    meshes = [(text, *_thickness_mesh(v, opts)) for text, v in frames]
    vals = [m.point_data["thickness (µm)"] for _, m, _ in meshes if m.n_points]
    clim = (0.0, max(float(np.percentile(np.concatenate(vals), 99)), 1.0) if vals else 1.0)
    images = []
    for text, mesh, k in meshes:
        p = _plotter((1, 1), opts)
        if mesh.n_points:
            p.add_mesh(mesh, scalars="thickness (µm)", cmap="viridis", clim=clim, smooth_shading=True,
                       scalar_bar_args=_THICKNESS_BAR)
            _title_over_bar(p)
        p.add_text(text, position="upper_left", font_size=11, color="black")
        _camera(p, opts)
        # hold the camera fixed across frames: use the first volume's bounds
        p.reset_camera(bounds=meshes[0][1].bounds if meshes[0][1].n_points else None)
        images.append(np.asarray(p.screenshot(return_img=True)))
        p.close()
    written = []
    gif = stem.with_suffix(".gif")
    imageio.mimsave(gif, images, duration=1.0 / fps, loop=0)
    written.append(gif)
    try:
        mp4 = stem.with_suffix(".mp4")
        with imageio.get_writer(mp4, fps=fps, codec="libx264", macro_block_size=16, quality=7) as w:
            for im in images:
                w.append_data(im)
        written.append(mp4)
    except Exception as exc:  # noqa: BLE001 — no ffmpeg: the GIF still stands
        warnings.warn(f"MP4 not written ({exc}); the GIF was", RuntimeWarning, stacklevel=2)
    return written


def _frame_text(day: int, row: Mapping[str, Any] | None) -> str:
    text = f"year {day / DAYS_PER_YEAR:.2f}"
    if row:
        parts = []
        for key, label, scale, unit in (("bv_tv", "BV/TV", 100, "%"), ("tb_th_um", "Tb.Th", 1, " µm"),
                                        ("conn_d_per_mm3", "Conn.D", 1, "/mm³"), ("ct_po", "Ct.Po", 100, "%")):
            v = row.get(key)
            if isinstance(v, float) and math.isfinite(v):
                parts.append(f"{label} {v * scale:.1f}{unit}")
        text += "\n" + "  ".join(parts)
    return text


def _row_at(rows: Sequence[Mapping[str, Any]], day: int) -> Mapping[str, Any] | None:
    if not rows:
        return None
    return min(rows, key=lambda r: abs(float(r.get("day", 0.0)) - day))


def _had_mechanics(folder: RunFolder) -> bool:
    """Whether the run in ``folder`` had load-driven remodelling on (its scenario's ``fe_every_days`` > 0)."""
    try:
        scenario = folder.info().get("scenario") or {}
    except (OSError, ValueError):
        return False
    return int(scenario.get("fe_every_days") or 0) > 0


def run_renders(folder: RunFolder, *, options: RenderOptions | None = None,
                max_frames: int = 24) -> dict[str, Callable[[], Path | list[Path]]]:
    """The renders of one run folder, by name, each ready to draw into ``folder``'s ``renders/``.

    ``thickness_start``, ``thickness_end``, and with more than one snapshot
    ``before_after``, ``change`` and the animation ``structure`` (GIF and MP4);
    ``cortex_cutaway`` when the last volume has a cortex; ``cortex_change`` (more than one
    snapshot, a first volume with a cortex): a cross-section of the cortex at start and end,
    their density difference, depth profiles and Ct.Th
    (:func:`voxelbone.plots.plot_cortex_change`), where a thinning below a voxel shows;
    ``cortex_change_3d`` (the same runs): the start surface of the cortex seen from the
    marrow and the trabecular network beside it, coloured by the bone lost (red) and
    gained (blue) since (:func:`render_cortex_change`).
    With ``options.color == "sed"`` the thickness scenes are replaced by ``sed_end`` and (more than one snapshot)
    ``sed_before_after``, the bone coloured by strain energy density (:func:`render_sed`;
    one solve per volume, shared by the scenes); with ``options.color`` left ``None``, a
    run that had mechanics on gets ``sed_end`` beside the thickness scenes. Snapshots are
    read once, when the first figure needs them.

    Raises
    ------
    FileNotFoundError
        When the folder holds no snapshots.
    """
    snaps = folder.snapshots()
    if not snaps:
        raise FileNotFoundError(f"{folder.path} has no snapshots to render")
    opts = options or RenderOptions()
    (d0, p0), (d1, p1) = snaps[0], snaps[-1]
    y0, y1 = f"year {d0 / DAYS_PER_YEAR:.1f}", f"year {d1 / DAYS_PER_YEAR:.1f}"
    volume = functools.lru_cache(maxsize=2)(load_snapshot)
    sed = functools.lru_cache(maxsize=2)(lambda p: sed_field(volume(p), axis=opts.sed_axis, options=opts))

    def cutaway() -> list[Path]:
        v1 = volume(p1)
        if not (np.asarray(v1.region) == int(Region.CORTICAL)).any():
            return []  # no cortex in this volume: nothing to cut away
        return [render_cortex_cutaway(v1, folder.render_path("cortex_cutaway"), title=y1, options=opts)]

    def cortex() -> list[Path]:
        v0 = volume(p0)
        if not (np.asarray(v0.region) == int(Region.CORTICAL)).any():
            return []  # a volume without a cortex (a core cut inside trabecular bone): no cortical change
        change = cortex_change(v0, volume(p1))
        return [plot_cortex_change(change, folder.render_path("cortex_change"), title=f"cortex, {y0} to {y1}")]

    def cortex_3d() -> list[Path]:
        out = render_cortex_change(volume(p0), volume(p1), folder.render_path("cortex_change_3d"),
                                   title=f"cortex, {y0} to {y1}", options=opts)
        return [] if out is None else [out]  # no cortex in the first volume: nothing to draw

    def animation() -> list[Path]:
        rows = folder.read_metrics()
        step = max(1, int(math.ceil(len(snaps) / max_frames)))
        chosen = snaps[::step] if snaps[::step][-1] == snaps[-1] else [*snaps[::step], snaps[-1]]
        frames = [(_frame_text(d, _row_at(rows, d)), load_snapshot(p)) for d, p in chosen]
        small = RenderOptions(window_size=(480, 480), max_voxels=min(opts.max_voxels, 128**3), decimate=opts.decimate)
        return animate(frames, folder.render_path("structure", suffix=""), options=small)

    figures: dict[str, Callable[[], Path | list[Path]]] = {}
    if opts.color != "sed":
        figures["thickness_start"] = lambda: render_thickness(volume(p0), folder.render_path("thickness_start"),
                                                              title=y0, options=opts)
        figures["thickness_end"] = lambda: render_thickness(volume(p1), folder.render_path("thickness_end"),
                                                            title=y1, options=opts)
    if opts.color == "sed" or (opts.color is None and _had_mechanics(folder)):
        figures["sed_end"] = lambda: render_sed(sed(p1), folder.render_path("sed_end"), title=y1, options=opts)
    if len(snaps) > 1:
        if opts.color == "sed":
            figures["sed_before_after"] = lambda: render_sed_grid({y0: sed(p0), y1: sed(p1)},
                                                                  folder.render_path("sed_before_after"), options=opts)
        else:
            figures["before_after"] = lambda: render_grid({y0: volume(p0), y1: volume(p1)},
                                                          folder.render_path("before_after"), options=opts)
        figures["change"] = lambda: render_change(volume(p0), volume(p1), folder.render_path("change"),
                                                  title=f"{y0} to {y1}", options=opts)
    figures["cortex_cutaway"] = cutaway
    if len(snaps) > 1:
        figures["cortex_change"] = cortex
        figures["cortex_change_3d"] = cortex_3d
        figures["structure"] = animation
    return figures


def render_results(result_dir: str | Path, *, options: RenderOptions | None = None, max_frames: int = 24) -> list[Path]:
    """Every render of a results folder into its ``renders/`` (see :func:`run_renders`); raises on the first failure."""
    written: list[Path] = []
    for draw in run_renders(RunFolder(result_dir), options=options, max_frames=max_frames).values():
        out = draw()
        written.extend([out] if isinstance(out, Path) else out)
    return written
