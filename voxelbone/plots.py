"""Plots (matplotlib, Agg backend): metrics over time, hormone courses, thickness histograms.

Every function takes data (rows, courses, volumes) or a results folder and writes one PNG;
runs drawn together share their axes so presets can be compared by eye. A run given as
replicates (several metrics tables of the same scenario on different seeds) is drawn as
its mean with a band: the 95 % interval of the mean at each time point (:func:`metric_band`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from .intervals import t_interval
from .metrics import local_thickness
from .results import load_rows, load_snapshot
from .runfolder import RunFolder, StudyFolder
from .units import DAYS_PER_YEAR

if TYPE_CHECKING:
    from .cortex_change import CortexChange

__all__ = [
    "HORMONE_PANELS",
    "METRIC_PANELS",
    "Band",
    "CHANGE_PANELS",
    "has_stiffness",
    "metric_band",
    "plot_bmd_stiffness",
    "replicate_plots",
    "plot_activity",
    "plot_hormones",
    "plot_metrics",
    "plot_run",
    "run_plots",
    "plot_thickness_histograms",
    "plot_cortex_change",
    "CORTEX_CHANGE_CLIM_MG_CM3",
]

#: (column, label with unit, scale) of the metric panels
METRIC_PANELS: tuple[tuple[str, str, float], ...] = (
    ("bv_tv", "BV/TV (%)", 100.0),
    ("tb_th_um", "Tb.Th (µm)", 1.0),
    ("tb_sp_um", "Tb.Sp (µm)", 1.0),
    ("tb_n_per_mm", "Tb.N (1/mm)", 1.0),
    ("conn_d_per_mm3", "Conn.D (1/mm³)", 1.0),
    ("bs_bv_per_mm", "BS/BV (1/mm)", 1.0),
    ("ct_th_um", "Ct.Th (µm)", 1.0),
    ("ct_po", "Ct.Po (%)", 100.0),
    ("bmd_mg_cm3", "BMD (mg HA/cm³)", 1.0),
    ("e_app_z_mpa", "E_app,z (MPa)", 1.0),  # runs with mechanics on (Scenario.fe_every_days)
)

#: (column, panel title, relative) of the density-and-stiffness figure: ``abmd_pct`` is a change
#: from day 0 already (%), the apparent modulus is drawn as its change from the first row (%)
CHANGE_PANELS: tuple[tuple[str, str, bool], ...] = (
    ("abmd_pct", "aBMD change (%)", False),
    ("e_app_z_mpa", "stiffness change: E_app,z (%)", True),
)

#: (column, label with unit) of the hormone panels
HORMONE_PANELS: tuple[tuple[str, str], ...] = (
    ("estradiol_pg_ml", "estradiol (pg/mL)"),
    ("testosterone_ng_dl", "testosterone (ng/dL)"),
    ("igf1_ng_ml", "IGF-1 (ng/mL)"),
    ("pth_pg_ml", "PTH (pg/mL)"),
    ("cortisol_ug_dl", "cortisol (µg/dL)"),
    ("il6_pg_ml", "IL-6 (pg/mL)"),
)


def _pyplot() -> Any:
    # deferred: matplotlib costs ~0.5 s to import, and only figures need it
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _grid(n: int) -> tuple[int, int]:
    cols = 3 if n > 4 else 2 if n > 1 else 1
    return (n + cols - 1) // cols, cols


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _as_rows(run: str | Path | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(run, (str, Path)):
        p = Path(run)
        return RunFolder(p).read_metrics() if p.is_dir() else load_rows(p)
    return list(run)


Rows = Sequence[Mapping[str, Any]]


def _as_tables(run: str | Path | Rows | Sequence[Rows]) -> list[list[Mapping[str, Any]]]:
    """One metrics table per replicate (a single run is a list of one table)."""
    if isinstance(run, (str, Path)) and Path(run).is_dir() and StudyFolder(run).holds_replicates():
        return [f.read_metrics() for f in StudyFolder(run).replicates()]
    if isinstance(run, (list, tuple)) and run and isinstance(run[0], (list, tuple)):
        return [list(rows) for rows in run]
    return [_as_rows(run)]  # type: ignore[arg-type]


@dataclass(frozen=True)
class Band:
    """A metric over time across replicates: the mean and its 95 % interval at each time point."""

    years: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def metric_band(tables: Sequence[Rows], column: str, *, scale: float = 1.0, relative: bool = False) -> Band:
    """Mean and 95 % Student-t interval of ``column`` at each time point across replicates.

    Parameters
    ----------
    tables
        One metrics table per replicate, at the same time points.
    column
        Metric column.
    scale
        Factor applied to the values (e.g. 100 for a fraction in %).
    relative
        Use each replicate's change from its own first row in % instead of the values.

    Returns
    -------
    Band
        ``low``/``high`` are NaN for a single replicate.
    """
    if not tables or any(not rows for rows in tables):
        raise ValueError("a band needs at least one replicate with metrics rows")
    n_rows = {len(rows) for rows in tables}
    days = [[float(r["day"]) for r in rows] for rows in tables]
    if len(n_rows) != 1 or any(d != days[0] for d in days):
        raise ValueError("replicates must have their metrics at the same days to be drawn as a band")
    values = np.array([[float(r[column]) if r.get(column) not in ("", None) else np.nan for r in rows]
                       for rows in tables]) * scale
    if relative:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = 100.0 * (values / values[:, :1] - 1.0)
    stats = [t_interval(values[:, j]) for j in range(values.shape[1])]
    return Band(np.array([float(r["year"]) for r in tables[0]]), np.array([s.mean for s in stats]),
                np.array([s.low for s in stats]), np.array([s.high for s in stats]))


def plot_metrics(runs: Mapping[str, str | Path | Rows | Sequence[Rows]], path: str | Path, *,
                 metrics: Sequence[tuple[str, str, float]] = METRIC_PANELS, relative: bool = False) -> Path:
    """Each metric over simulated years, one line per run, shared axes per metric.

    Parameters
    ----------
    runs
        Label → metrics rows (``metrics.csv`` rows, a results folder or a CSV path), or
        replicates (a list of metrics tables, or a folder of replicates): drawn as the
        mean with a shaded band, the 95 % interval of the mean (:func:`metric_band`).
    path
        PNG to write.
    metrics
        ``(column, label, scale)`` panels; columns missing from every run are left out.
    relative
        Plot the change from each run's first row in % instead of the values.

    Returns
    -------
    Path
        The PNG written.
    """
    if not runs:
        raise ValueError("plot_metrics needs at least one run")
    data = {label: _as_tables(r) for label, r in runs.items()}
    for label, tables in data.items():
        if not all(tables):
            raise ValueError(f"run {label!r} has no metrics rows")
    panels = [m for m in metrics if any(m[0] in tables[0][0] for tables in data.values())]
    plt = _pyplot()
    nr, nc = _grid(len(panels))
    fig, axes = plt.subplots(nr, nc, figsize=(4.2 * nc, 2.9 * nr), squeeze=False, sharex=True)
    for ax, (col, label, scale) in zip(axes.flat, panels):
        for run_label, tables in data.items():
            if col not in tables[0][0]:
                continue
            if len(tables) > 1:
                band = metric_band(tables, col, scale=scale, relative=relative)
                line = ax.plot(band.years, band.mean, label=f"{run_label} (mean of {len(tables)}, 95 % band)", lw=1.6)[0]
                ax.fill_between(band.years, band.low, band.high, color=line.get_color(), alpha=0.25, lw=0)
                continue
            rows = tables[0]
            x = np.array([float(r["year"]) for r in rows])
            y = np.array([float(r[col]) if r[col] not in ("", None) else np.nan for r in rows]) * scale
            if relative:
                y = 100.0 * (y / y[0] - 1.0) if y[0] else y * np.nan
            ax.plot(x, y, label=run_label, lw=1.6)
        ax.set_title(label if not relative else f"{label.split(' (')[0]} change (%)", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("years")
    axes.flat[0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def _header_has(csv_path: Path, column: str) -> bool:
    """Whether a CSV file exists and its header names ``column`` (the rows are not read)."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            return column in next(csv.reader(f), [])
    except OSError:
        return False


def has_stiffness(runs: Mapping[str, str | Path | Rows | Sequence[Rows]]) -> bool:
    """Whether any of the runs reports the apparent modulus (``e_app_z_mpa``: mechanics on)."""
    return any(tables[0] and "e_app_z_mpa" in tables[0][0] for tables in (_as_tables(r) for r in runs.values()))


def plot_bmd_stiffness(runs: Mapping[str, str | Path | Rows | Sequence[Rows]], path: str | Path) -> Path:
    """Areal BMD change and apparent stiffness change (% from day 0) side by side, one line per run.

    Trials report the change of DXA aBMD, and some the change of finite-element strength
    beside it (the Testosterone Trials, Snyder et al. 2017); a run with mechanics on gives
    the change of its apparent modulus ``e_app_z_mpa``. Runs without mechanics appear in
    the aBMD panel only.

    Parameters
    ----------
    runs
        Label → metrics rows, a results folder or a CSV path, or replicates (drawn as the
        mean with its 95 % band, :func:`metric_band`).
    path
        PNG to write.

    Returns
    -------
    Path
        The PNG written.

    Raises
    ------
    ValueError
        When no run reports ``e_app_z_mpa`` (mechanics off in every run; see
        :func:`has_stiffness`).
    """
    if not runs:
        raise ValueError("plot_bmd_stiffness needs at least one run")
    data = {label: _as_tables(r) for label, r in runs.items()}
    if not has_stiffness(data):
        raise ValueError("no run reports e_app_z_mpa: turn mechanics on (Scenario.fe_every_days > 0) to plot "
                         "stiffness change")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(CHANGE_PANELS), figsize=(4.6 * len(CHANGE_PANELS), 3.3), squeeze=False,
                             sharex=True, sharey=True)
    for ax, (col, title, relative) in zip(axes.flat, CHANGE_PANELS):
        for i, (run_label, tables) in enumerate(data.items()):
            color = f"C{i % 10}"  # one colour per run in both panels
            if not tables[0] or col not in tables[0][0]:
                continue
            band = metric_band(tables, col, relative=relative)
            label = run_label if len(tables) == 1 else f"{run_label} (mean of {len(tables)}, 95 % band)"
            ax.plot(band.years, band.mean, label=label, lw=1.6, color=color)
            if len(tables) > 1:
                ax.fill_between(band.years, band.low, band.high, color=color, alpha=0.25, lw=0)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("years")
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("change from day 0 (%)")
    axes.flat[0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def plot_hormones(courses: Mapping[str, Any], path: str | Path, *, days: float | None = None,
                  panels: Sequence[tuple[str, str]] = HORMONE_PANELS) -> Path:
    """Hormone time courses, one line per course, one panel per hormone.

    Parameters
    ----------
    courses
        Label → :class:`~voxelbone.hormones.HormoneCourse`, or a mapping of columns
        (``day`` plus hormone names, e.g. rows of ``hormones.csv`` transposed).
    path
        PNG to write.
    days
        Plot only the first ``days`` days (weekly injections are invisible over years).
    """
    if not courses:
        raise ValueError("plot_hormones needs at least one course")
    plt = _pyplot()
    nr, nc = _grid(len(panels))
    fig, axes = plt.subplots(nr, nc, figsize=(4.2 * nc, 2.7 * nr), squeeze=False, sharex=True)
    for label, course in courses.items():
        table = course.as_table() if hasattr(course, "as_table") else {k: np.asarray(v, float) for k, v in course.items()}
        t = np.asarray(table["day"], float)
        sel = t <= (days if days is not None else t[-1])
        for ax, (col, title) in zip(axes.flat, panels):
            ax.plot(t[sel], np.asarray(table[col], float)[sel], label=label, lw=1.2)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("days")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_activity(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Remodeling rates from the cell layer over time (``activity.csv`` rows)."""
    plt = _pyplot()
    cols = [("activation_trabecular_per_yr", "Ac.f trabecular (/yr)"), ("activation_cortical_per_yr", "Ac.f cortical (/yr)"),
            ("erosion_depth_um", "erosion depth (µm)"), ("refill_trabecular", "refill fraction (trabecular)")]
    cols = [c for c in cols if rows and c[0] in rows[0]]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.6 * len(cols), 2.8), squeeze=False)
    t = np.array([float(r["day"]) for r in rows]) / DAYS_PER_YEAR
    for ax, (c, title) in zip(axes.flat, cols):
        ax.plot(t, [float(r[c]) for r in rows], lw=1.4)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("years")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_thickness_histograms(volumes: Mapping[str, Any], path: str | Path, *, bins_um: float | None = None) -> Path:
    """Histograms of trabecular local thickness (Tb.Th distribution) of several volumes.

    Parameters
    ----------
    volumes
        Label (e.g. ``"year 0"``) → :class:`~voxelbone.volume.BoneVolume`.
    bins_um
        Bin width in µm (default: the voxel size).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, vol in volumes.items():
        mask = np.asarray(vol.mask()) & (np.asarray(vol.region) == 1)
        lt = np.asarray(local_thickness(mask, vol.voxel_size_um))
        vals = lt[mask]
        if vals.size == 0:
            continue
        w = bins_um or vol.voxel_size_um
        edges = np.arange(0.0, vals.max() + 2 * w, w)
        ax.hist(vals, bins=edges, histtype="step", density=True, lw=1.5, label=f"{label} (mean {vals.mean():.0f} µm)")
    ax.set_xlabel("local thickness (µm)")
    ax.set_ylabel("fraction of bone volume per µm")
    ax.set_title("Tb.Th distribution")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


#: Colour range (±, mg HA/cm³) of the density difference of :func:`plot_cortex_change`: half of
#: fully mineralised bone, one scale for every run.
CORTEX_CHANGE_CLIM_MG_CM3 = 600.0
#: Density differences below this (mg HA/cm³) are left uncoloured in the difference image
#: (secondary mineralisation of a few %; the profiles show them).
CORTEX_CHANGE_FLOOR_MG_CM3 = 60.0
#: Colour of the start volume's cortical contour, and of the end volume's.
CONTOUR_START, CONTOUR_END = "#00b7eb", "#ff8c00"


def _cortex_figure(change: CortexChange, title: str = "") -> tuple[Any, dict[str, Any]]:
    """The figure of :func:`plot_cortex_change` and its axes by name (``slice``, ``start``, ``end``,
    ``difference``, ``profile``, ``profile_change``, ``map`` when there is one, ``thickness``), not yet saved."""
    from matplotlib.colors import ListedColormap  # noqa: PLC0415
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    from .volume import TMD_MAX_MG_CM3  # noqa: PLC0415

    plt = _pyplot()
    v = change.voxel_size_um
    ny, nx = change.density_start_mg_cm3.shape
    wy, wx = change.window
    fig = plt.figure(figsize=(15.0, 8.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1.2, 1.0))
    row = top.subplots(1, 4)
    ax = dict(zip(("slice", "start", "end", "difference"), row))
    lower = ("profile", "profile_change") + (("map",) if change.bone_change_map_um is not None else ()) + ("thickness",)
    ax.update(zip(lower, bottom.subplots(1, len(lower))))
    grey = {"cmap": "gray", "vmin": 0.0, "vmax": TMD_MAX_MG_CM3, "interpolation": "nearest"}

    def extent(sy: slice, sx: slice) -> tuple[float, float, float, float]:  # mm, y downwards as in the array
        return (sx.start * v / 1000, sx.stop * v / 1000, sy.stop * v / 1000, sy.start * v / 1000)

    def contours(a: Any, sy: slice, sx: slice) -> None:
        ys = (np.arange(sy.start, sy.stop) + 0.5) * v / 1000
        xs = (np.arange(sx.start, sx.stop) + 0.5) * v / 1000
        for mask, color, style in ((change.cortex_start, CONTOUR_START, "solid"),
                                   (change.cortex_end, CONTOUR_END, "dashed")):
            m = mask[sy, sx].astype(float)
            if 0.0 < m.mean() < 1.0:
                a.contour(xs, ys, m, levels=[0.5], colors=[color], linestyles=style, linewidths=1.3)

    full = (slice(0, ny), slice(0, nx))
    a = ax["slice"]
    a.imshow(change.density_start_mg_cm3, extent=extent(*full), **grey)
    contours(a, *full)
    e = extent(wy, wx)
    a.add_patch(Rectangle((e[0], e[3]), e[1] - e[0], e[2] - e[3], fill=False, ec="yellow", lw=1.5))
    a.set_title(f"start, slice z = {change.slice_z * v / 1000:.2f} mm", fontsize=10)
    for name, dens, label in (("start", change.density_start_mg_cm3, "start (magnified)"),
                              ("end", change.density_end_mg_cm3, "end (magnified)")):
        im = ax[name].imshow(dens[wy, wx], extent=e, **grey)
        contours(ax[name], wy, wx)
        ax[name].set_title(label, fontsize=10)
    cb = top.colorbar(im, ax=[ax["slice"], ax["start"], ax["end"]], location="bottom", shrink=0.4, aspect=40)
    cb.set_label("tissue mineral density (mg HA/cm³)", fontsize=8)
    cb.ax.tick_params(labelsize=7)

    d = change.difference_mg_cm3[wy, wx]
    a = ax["difference"]
    a.imshow(np.minimum(change.density_start_mg_cm3, change.density_end_mg_cm3)[wy, wx], extent=e,
             cmap=ListedColormap(plt.get_cmap("gray")(np.linspace(0.35, 0.9, 256))), vmin=0.0, vmax=TMD_MAX_MG_CM3,
             interpolation="nearest")
    shown = np.ma.masked_where(np.abs(d) < CORTEX_CHANGE_FLOOR_MG_CM3, d)
    imd = a.imshow(shown, extent=e, cmap="RdBu", vmin=-CORTEX_CHANGE_CLIM_MG_CM3, vmax=CORTEX_CHANGE_CLIM_MG_CM3,
                   interpolation="nearest")
    contours(a, wy, wx)
    a.set_title("end − start: lost red, gained blue", fontsize=10)
    cb = top.colorbar(imd, ax=a, location="bottom", shrink=0.9, aspect=20)
    cb.set_label(f"density change (mg HA/cm³; |Δ| < {CORTEX_CHANGE_FLOOR_MG_CM3:g} grey)", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    for name in ("slice", "start", "end", "difference"):
        ax[name].set_xlabel("x (mm)", fontsize=8)
        ax[name].tick_params(labelsize=7)
    ax["slice"].set_ylabel("y (mm)", fontsize=8)

    depth = change.depth_um
    endo0, endo1 = change.endosteal_depth_start_um, change.endosteal_depth_end_um
    a = ax["profile"]
    a.plot(depth, change.profile_start_mg_cm3, color="black", lw=1.5, label="start")
    a.plot(depth, change.profile_end_mg_cm3, color=CONTOUR_END, lw=1.5, label="end")
    a.set_ylabel("mean density (mg HA/cm³)", fontsize=9)
    a.set_title("density by depth below the periosteum (whole volume)", fontsize=10)
    a2 = ax["profile_change"]
    a2.axhline(0.0, color="grey", lw=0.8)
    a2.plot(depth, change.profile_end_mg_cm3 - change.profile_start_mg_cm3, color="black", lw=1.5)
    a2.set_ylabel("end − start (mg HA/cm³)", fontsize=9)
    a2.set_title("density change by depth", fontsize=10)
    for a in (ax["profile"], a2):
        for x, color, style, label in ((endo0, CONTOUR_START, "solid", f"endosteum, start: {endo0:.0f} µm"),
                                       (endo1, CONTOUR_END, "dashed", f"endosteum, end: {endo1:.0f} µm")):
            if np.isfinite(x):
                a.axvline(x, color=color, ls=style, lw=1.3, label=label)
        a.set_xlabel("depth below the periosteal surface (µm)", fontsize=9)
        a.grid(alpha=0.3)
        a.tick_params(labelsize=8)
    ax["profile"].legend(fontsize=7, loc="center left", bbox_to_anchor=(0.42, 0.55))  # right of the endosteum

    if "map" in ax:
        a, cmap = ax["map"], change.bone_change_map_um
        nz, nu = cmap.shape
        lim = max(float(np.percentile(np.abs(cmap), 98)), v)
        im = a.imshow(cmap, extent=(0.0, nu * v / 1000, nz * v / 1000, 0.0), cmap="RdBu", vmin=-lim, vmax=lim,
                      interpolation="nearest", aspect="equal")
        cb = bottom.colorbar(im, ax=a, shrink=0.9)
        cb.set_label("µm of dense bone (end − start)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
        a.set_title(f"cortical bone change per area: mean {float(cmap.mean()):+.1f} µm", fontsize=10)
        a.set_xlabel(f"{change.map_axis} (mm)", fontsize=9)
        a.set_ylabel("z (mm)", fontsize=9)
        a.tick_params(labelsize=8)

    a = ax["thickness"]
    vals = [t for t in (change.thickness_start_um, change.thickness_end_um) if t.size]
    if vals:
        t_max = max(float(t.max()) for t in vals)
        edges = np.arange(0.0, t_max + v, v / 2)
        for t, mean, color, style, label in (
                (change.thickness_start_um, change.ct_th_start_um, "black", "solid", "start"),
                (change.thickness_end_um, change.ct_th_end_um, CONTOUR_END, "dashed", "end")):
            if t.size:
                a.hist(t, bins=edges, histtype="step", density=True, color=color, lw=1.5,
                       label=f"{label}: Ct.Th {mean:.0f} µm")
                a.axvline(mean, color=color, ls=style, lw=1.0)
        a.set_xlim(max(0.0, min(float(t.min()) for t in vals) - 2 * v), t_max + v)
    a.set_xlabel("local thickness of the contoured cortex (µm)", fontsize=9)
    a.set_ylabel("fraction of cortex per µm", fontsize=9)
    a.set_title("cortical thickness distribution", fontsize=10)
    a.legend(fontsize=7, loc="upper left")
    a.grid(alpha=0.3)
    a.tick_params(labelsize=8)

    dth = change.ct_th_end_um - change.ct_th_start_um
    head = (f"Ct.Th {change.ct_th_start_um:.0f} → {change.ct_th_end_um:.0f} µm ({dth:+.0f} µm, "
            f"{dth / v:+.2f} voxel of {v:g} µm): contoured cortex, start ({CONTOUR_START_NAME}) and end "
            f"({CONTOUR_END_NAME}, dashed)")
    top.suptitle(f"{title}\n{head}" if title else head, fontsize=11)
    return fig, ax


#: Names of the contour colours, for the figure's heading.
CONTOUR_START_NAME, CONTOUR_END_NAME = "cyan", "orange"


def plot_cortex_change(change: CortexChange, path: str | Path, *, title: str = "") -> Path:
    """The cortex at start and end: a cross-section, its difference, depth profiles and Ct.Th.

    Panels, top: the start cross-section (tissue mineral density) with the magnified window
    marked; the window at start and at end; their difference (end − start density: lost
    red, gained blue, the unchanged bone grey). The contoured cortex of start (cyan) and
    end (orange, dashed) is drawn on each. Bottom: the mean density at each depth below the
    periosteal surface over the whole volume at start and end, its change, where the cortex
    lies along one face a map over that face of the cortical bone gained minus lost per unit
    area (µm of dense bone), and the local thickness of the contoured cortex at start and
    end, whose means are Ct.Th. A thinning
    below a voxel shows as the loss of density at the endocortical surface and as the
    endosteal contour's move, both on one fixed colour scale
    (±:data:`CORTEX_CHANGE_CLIM_MG_CM3`).

    Parameters
    ----------
    change
        The two volumes' cortex (:func:`voxelbone.cortex_change.cortex_change`).
    path
        PNG to write.
    title
        First line of the heading (e.g. the years compared).

    Returns
    -------
    Path
        The PNG written.
    """
    fig, _ = _cortex_figure(change, title)
    return _save(fig, path)


def run_plots(folder: RunFolder) -> dict[str, Callable[[], Path]]:
    """The plots of one run folder, by name, each ready to draw into ``folder``'s ``plots/``.

    ``metrics`` (values) and ``metrics_change`` (% from start), ``bmd_stiffness`` (aBMD
    and stiffness change, when the run had mechanics on), ``hormones`` and ``activity``
    (when the daily courses were written) and ``thickness_histogram`` (first and last
    snapshot). Nothing is read or drawn until a figure is called.
    """
    label = folder.path.name

    def hormones() -> Path:
        hrows = folder.read_hormones()
        table = {k: [r[k] for r in hrows] for k in hrows[0]}
        return plot_hormones({label: table}, folder.plot_path("hormones"))

    def histogram() -> Path:
        snaps = folder.snapshots()
        chosen = [snaps[0], snaps[-1]] if len(snaps) > 1 else snaps
        vols = {f"year {day / DAYS_PER_YEAR:.1f}": load_snapshot(p) for day, p in chosen}
        return plot_thickness_histograms(vols, folder.plot_path("thickness_histogram"))

    figures: dict[str, Callable[[], Path]] = {
        "metrics": lambda: plot_metrics({label: folder.read_metrics()}, folder.plot_path("metrics")),
        "metrics_change": lambda: plot_metrics({label: folder.read_metrics()}, folder.plot_path("metrics_change"),
                                               relative=True),
    }
    if _header_has(folder.metrics_csv, "e_app_z_mpa"):
        figures["bmd_stiffness"] = lambda: plot_bmd_stiffness({label: folder.read_metrics()},
                                                              folder.plot_path("bmd_stiffness"))
    if folder.hormones_csv.exists():
        figures["hormones"] = hormones
    if folder.activity_csv.exists():
        figures["activity"] = lambda: plot_activity(folder.read_activity(), folder.plot_path("activity"))
    if folder.snapshots():
        figures["thickness_histogram"] = histogram
    return figures


def replicate_plots(study: StudyFolder) -> dict[str, Callable[[], Path]]:
    """The plots of a set of replicates (``metrics``, ``metrics_change`` and, with mechanics on,
    ``bmd_stiffness``, with bands) into ``study``'s ``plots/``."""
    label = study.path.name

    def draw(name: str, relative: bool) -> Path:
        return plot_metrics({label: [f.read_metrics() for f in study.replicates()]}, study.plot_path(name),
                            relative=relative)

    figures = {"metrics": lambda: draw("metrics", False), "metrics_change": lambda: draw("metrics_change", True)}
    reps = study.replicates()
    if reps and _header_has(reps[0].metrics_csv, "e_app_z_mpa"):
        figures["bmd_stiffness"] = lambda: plot_bmd_stiffness({label: [f.read_metrics() for f in study.replicates()]},
                                                              study.plot_path("bmd_stiffness"))
    return figures


def plot_run(result_dir: str | Path) -> list[Path]:
    """All plots of one results folder into its ``plots/`` (see :func:`run_plots`); raises on the first failure."""
    return [draw() for draw in run_plots(RunFolder(result_dir)).values()]
