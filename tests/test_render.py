"""Renders, plots and the comparison report, judged by their pixels and in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from voxelbone.volume import BoneVolume, Region

DATA = Path(__file__).parent / "data"


def _png(path) -> np.ndarray:
    import imageio.v2 as imageio

    return np.asarray(imageio.imread(path))[..., :3].astype(np.int16)


def _ink(img: np.ndarray) -> np.ndarray:
    """Pixels that are not the white background."""
    return np.any(img < 235, axis=-1)


def _lattice(n: int = 48, voxel_um: float = 30.0, r: float = 3.0) -> BoneVolume:
    z, y, x = np.ogrid[:n, :n, :n]
    d = lambda a: np.abs(((a + 8) % 16) - 8)  # noqa: E731
    m = ((d(y) ** 2 + d(x) ** 2) <= r * r) | ((d(z) ** 2 + d(x) ** 2) <= r * r) | ((d(z) ** 2 + d(y) ** 2) <= r * r)
    region = np.full(m.shape, Region.TRABECULAR, np.uint8)
    region[:, :6, :] = Region.CORTICAL
    m[:, :6, :] = True
    m[:, :6, 10:13] = False  # canals through the cortex
    m[:, :6, 30:33] = False
    return BoneVolume.from_mask(m, voxel_um, region=region)


def _thinned(v: BoneVolume) -> BoneVolume:
    trab = np.asarray(v.region) == Region.TRABECULAR
    eroded = ndi.binary_erosion(v.mask()) & trab | (v.mask() & ~trab)
    return BoneVolume.from_mask(eroded, v.voxel_size_um, region=v.region)


@pytest.fixture(scope="module")
def small_opts():
    from voxelbone.render import RenderOptions

    return RenderOptions(window_size=(240, 240))


def test_thickness_render_matches_reference(tmp_path, small_opts):
    # the default (irregular network) lumbar phantom, 1.92 mm at 30 µm
    from voxelbone.phantom import make_phantom
    from voxelbone.render import render_thickness

    out = render_thickness(make_phantom("lumbar_spine", 64, 30.0, seed=1), tmp_path / "t.png", title="lumbar phantom",
                           options=small_opts)
    img = _png(out)
    ref_path = DATA / "ref_thickness_phantom.png"
    if os.environ.get("VOXELBONE_UPDATE_REFERENCE") == "1":  # deliberate update of the stored image
        shutil.copy(out, ref_path)
    ref = _png(ref_path)
    assert img.shape == ref.shape
    diff = np.abs(img - ref).mean()
    assert diff < 6.0, f"mean pixel difference {diff:.2f} from the stored reference"
    # coloured by thickness: the rods are not grey
    ink = _ink(img)
    sat = img.max(axis=-1) - img.min(axis=-1)
    assert ink.mean() > 0.1 and (sat[ink] > 40).mean() > 0.3


def test_later_year_shows_less_bone_in_same_view(tmp_path, small_opts):
    from voxelbone.render import render_grid

    v0 = _lattice()
    v1 = _thinned(v0)
    out = render_grid({"year 0": v0, "year 5": v1}, tmp_path / "ba.png", options=small_opts)
    img = _png(out)
    w = img.shape[1] // 2
    left, right = _ink(img[40:-40, :w]), _ink(img[40:-40, w:])
    assert right.sum() < 0.9 * left.sum()


def test_change_render_shows_resorbed_bone_in_red(tmp_path, small_opts):
    from voxelbone.render import RESORBED_RGB, render_change

    v0 = _lattice()
    v1 = _thinned(v0)
    img = _png(render_change(v0, v1, tmp_path / "c.png", options=small_opts))
    red = (img[..., 0] > 150) & (img[..., 1] < 110) & (img[..., 2] < 110)
    green = (img[..., 1] > 120) & (img[..., 0] < 100) & (img[..., 2] < 120)
    assert red.mean() > 0.02 and green.mean() < 0.002
    assert RESORBED_RGB[0] > RESORBED_RGB[1]
    with pytest.raises(ValueError, match="one grid"):
        render_change(v0, BoneVolume.from_mask(v0.mask()[:40], 30.0), tmp_path / "x.png")


def test_cortex_cutaway_and_large_volume_caption(tmp_path):
    from voxelbone.render import RenderOptions, _caption, _field, render_cortex_cutaway

    v = _lattice()
    img = _png(render_cortex_cutaway(v, tmp_path / "cut.png", options=RenderOptions(window_size=(240, 240))))
    assert _ink(img).mean() > 0.05
    # volumes above max_voxels are block-averaged and the caption says so
    field, spacing, k = _field(v, RenderOptions(max_voxels=24**3))
    assert k == 2 and field.shape == (24, 24, 24) and spacing == 60.0
    assert "block-averaged ×2" in _caption(v, k)
    with pytest.raises(ValueError, match="no cortical"):
        render_cortex_cutaway(BoneVolume.from_mask(v.mask(), 30.0), tmp_path / "n.png")


def test_animation_frames_change(tmp_path, small_opts):
    import imageio.v2 as imageio

    from voxelbone.render import animate

    v0 = _lattice()
    written = animate([("year 0", v0), ("year 5", _thinned(v0))], tmp_path / "anim", options=small_opts)
    gif = [p for p in written if p.suffix == ".gif"][0]
    frames = imageio.mimread(gif)
    assert len(frames) == 2
    assert np.abs(np.asarray(frames[0], float) - np.asarray(frames[1], float)).mean() > 1.0


def _column_and_branch(n: int = 48) -> BoneVolume:
    """A column from the bottom face to the top face and, at mid-height, a side branch with a free end."""
    m = np.zeros((n, 32, 40), bool)
    m[:, 13:19, 4:10] = True          # the column along z carries the compression
    m[21:27, 13:19, 10:22] = True     # the branch along x carries nothing beyond its root
    return BoneVolume.from_mask(m, 30.0)


def test_sed_render_colours_the_loaded_column_hotter_than_the_unloaded_branch(tmp_path, small_opts):
    from voxelbone.render import SedField, render_sed, sed_field

    field = sed_field(_column_and_branch(), options=small_opts)
    assert isinstance(field, SedField) and field.factor == 1 and field.e_app_mpa > 0
    column = float(field.sed_mpa[5:-5, 13:19, 4:10].mean())
    branch = float(field.sed_mpa[21:27, 13:19, 14:22].mean())
    assert column > 20 * branch > 0 or (column > 0 and branch == 0)
    # the marrow beside the surface holds the nearest bone's value (the surface samples it)
    assert field.sed_mpa[10, 12, 6] == field.sed_mpa[10, 13, 6] > 0.5 * column
    img = _png(render_sed(field, tmp_path / "sed.png", title="column", options=small_opts))
    h, w = img.shape[:2]
    ink = _ink(img)
    ink[: int(0.08 * h)] = False   # the title
    ink[int(0.78 * h):] = False    # the colour bar and the caption
    red = img[..., 0] > img[..., 2] + 25    # hue, not brightness: the lit side is darker than the colour map
    blue = img[..., 2] > img[..., 0] + 25
    # above the branch only the column is drawn; left of the column only the branch
    top = np.zeros_like(ink)
    top[int(0.1 * h):int(0.35 * h)] = True
    cols = np.nonzero((ink & top).any(axis=0))[0]
    assert cols.size > 5
    left = np.zeros_like(ink)
    left[int(0.35 * h):int(0.75 * h), : cols.min() - 3] = True
    col_px, branch_px = ink & top, ink & left
    assert col_px.sum() > 100 and branch_px.sum() > 100
    assert red[col_px].mean() > 0.7, f"column pixels red: {red[col_px].mean():.2f}"
    assert blue[branch_px].mean() > 0.7, f"branch pixels blue: {blue[branch_px].mean():.2f}"


def test_run_renders_offer_sed_scenes(tmp_path):
    from voxelbone.backend import get_backend
    from voxelbone.render import RenderOptions, run_renders
    from voxelbone.runfolder import RunFolder, RunState
    from voxelbone.scenario import Scenario

    folder = RunFolder(tmp_path / "run")
    folder.create()
    v = _column_and_branch(32)
    folder.save_snapshot(v, 0)
    folder.save_snapshot(v, 365)
    folder.write_status(RunState.COMPLETED, scenario=Scenario(fe_every_days=0), backend=get_backend("numpy"),
                        timings={})
    default = run_renders(folder)
    assert "thickness_end" in default and "sed_end" not in default
    sed = run_renders(folder, options=RenderOptions(color="sed"))
    assert {"sed_end", "sed_before_after"} <= set(sed) and "thickness_end" not in sed and "before_after" not in sed
    folder.write_status(RunState.COMPLETED, scenario=Scenario(fe_every_days=28), backend=get_backend("numpy"),
                        timings={})
    mech = run_renders(folder)
    assert "thickness_end" in mech and "sed_end" in mech
    assert set(run_renders(folder, options=RenderOptions(color="thickness"))) == set(default)
    with pytest.raises(ValueError, match="color must be"):
        RenderOptions(color="strain")


def test_render_command_passes_the_colouring(tmp_path, monkeypatch):
    import voxelbone.figures
    from voxelbone.cli import main
    from voxelbone.figures import FigureReport

    seen = {}
    monkeypatch.setattr(voxelbone.figures, "draw_run_figures",
                        lambda folder, **kw: seen.update(kw) or FigureReport())
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text('{"status": "running"}')  # a run folder, not any folder
    assert main(["render", str(tmp_path / "run"), "--color", "sed", "--axis", "y", "--no-plots"]) == 0
    assert seen["options"].color == "sed" and seen["options"].sed_axis == "y" and seen["with_plots"] is False
    assert main(["render", str(tmp_path / "run")]) == 0
    assert seen["options"].color is None


def test_metric_plot_draws_each_run(tmp_path):
    from voxelbone.plots import plot_metrics

    rows_a = [{"year": y, "bv_tv": 0.2 - 0.01 * y, "tb_th_um": 120.0} for y in range(5)]
    rows_b = [{"year": y, "bv_tv": 0.2 + 0.01 * y, "tb_th_um": 120.0} for y in range(5)]
    one = _png(plot_metrics({"a": rows_a}, tmp_path / "one.png"))
    two = _png(plot_metrics({"a": rows_a, "b": rows_b}, tmp_path / "two.png"))
    assert one.shape == two.shape
    # the second run adds a line of another colour (matplotlib's C1 orange)
    orange = lambda im: ((im[..., 0] > 230) & (im[..., 1] > 110) & (im[..., 1] < 160) & (im[..., 2] < 60)).sum()  # noqa: E731
    assert orange(two) > orange(one) + 50
    with pytest.raises(ValueError, match="at least one run"):
        plot_metrics({}, tmp_path / "none.png")


def _run_with(path, days, seed=0, **columns):
    """A completed run folder whose metrics rows hold the given columns (no simulation)."""
    from voxelbone.backend import get_backend
    from voxelbone.runfolder import RunFolder, RunState
    from voxelbone.scenario import Scenario

    folder = RunFolder(path)
    folder.create()
    table = folder.metrics_table()
    for k, day in enumerate(days):
        table.append({"day": float(day), "year": day / 365.25, "period": "p", "preset": "p", "bv_tv": 0.2 - 0.01 * k,
                      **{c: float(v[k]) for c, v in columns.items()}})
    folder.write_status(RunState.COMPLETED, scenario=Scenario(seed=seed, fe_every_days=28 if "e_app_z_mpa" in columns
                                                                else 0), backend=get_backend("numpy"), timings={})
    return folder


def test_bmd_stiffness_plot_draws_abmd_beside_the_stiffness_change(tmp_path, monkeypatch):
    from voxelbone import plots

    days = [0, 365, 730]
    on = _run_with(tmp_path / "on", days, abmd_pct=[0.0, -1.5, -2.5], e_app_z_mpa=[2000.0, 1900.0, 1700.0])
    off = _run_with(tmp_path / "off", days, abmd_pct=[0.0, -1.0, -2.0])
    assert "bmd_stiffness" in plots.run_plots(on) and "bmd_stiffness" not in plots.run_plots(off)
    captured = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: captured.append(fig) or path)
    plots.plot_bmd_stiffness({"on": on.path, "off": off.path}, tmp_path / "bs.png")
    bmd_ax, stiff_ax = captured[0].axes[:2]
    assert "aBMD" in bmd_ax.get_title() and "stiffness" in stiff_ax.get_title()
    assert [list(line.get_ydata()) for line in bmd_ax.lines[:2]] == [[0.0, -1.5, -2.5], [0.0, -1.0, -2.0]]
    stiff = [line for line in stiff_ax.lines if len(line.get_xdata()) == 3]
    assert len(stiff) == 1  # the run without mechanics has no stiffness line
    assert list(stiff[0].get_ydata()) == pytest.approx([0.0, -5.0, -15.0])
    assert stiff[0].get_color() == bmd_ax.lines[0].get_color()  # one colour per run across the panels
    with pytest.raises(ValueError, match="fe_every_days"):
        plots.plot_bmd_stiffness({"off": off.path}, tmp_path / "none.png")


def test_report_shows_stiffness_change_beside_abmd(tmp_path):
    from voxelbone.report import write_report

    days = [0, 365, 730]
    a = _run_with(tmp_path / "a", days, abmd_pct=[0.0, -1.5, -2.5], e_app_z_mpa=[2000.0, 1900.0, 1700.0])
    b = _run_with(tmp_path / "b", days, abmd_pct=[0.0, 0.5, 1.0], e_app_z_mpa=[2000.0, 2050.0, 2100.0])
    page = write_report({"a": a.path, "b": b.path}, tmp_path / "report", render=False).read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>2\.00</td><td>([^<(]+) \(.*?</tr>", page)}
    assert "aBMD change" in rows and "E_app,z change" in rows and "E_app,z" in rows
    # year 2: −2.5 % and +1 % aBMD; −15 % and +5 % stiffness, and b − a
    assert "<td>-2.5</td><td>1</td><td>+3.5</td>" in rows["aBMD change"]
    assert "<td>-15</td><td>5</td><td>+20</td>" in rows["E_app,z change"]
    assert 'id="stiffness"' in page and page.count("<img") == 3
    assert 'id="single-sample"' in page and "--replicates N" in page  # one seed each: no difference is resolved
    # runs without mechanics: no stiffness rows, no stiffness figure
    c = _run_with(tmp_path / "c", days, abmd_pct=[0.0, -1.0, -2.0])
    page = write_report({"c": c.path}, tmp_path / "report_off", render=False).read_text()
    assert "aBMD change" in page and "E_app,z" not in page and 'id="stiffness"' not in page


def test_report_of_replicates_gives_abmd_and_stiffness_changes_per_year(tmp_path):
    import html

    from voxelbone.intervals import t_interval
    from voxelbone.report import write_report
    from voxelbone.runfolder import StudyFolder

    days = [0.0, 365.25, 730.5]  # two years
    ends = {"a": ([-2.0, -3.0, -2.6], [1800.0, 1700.0, 1760.0]), "b": ([1.0, 0.4, 0.8], [2100.0, 2050.0, 2080.0])}
    for name, (abmd, e_app) in ends.items():
        study = StudyFolder(tmp_path / "runs" / name)
        for i in range(3):
            _run_with(study.replicate(i).path, days, seed=11 + i, abmd_pct=[0.0, abmd[i] / 2, abmd[i]],
                      e_app_z_mpa=[2000.0, (2000.0 + e_app[i]) / 2, e_app[i]])
    page = write_report({k: tmp_path / "runs" / k for k in ends}, tmp_path, render=False).read_text()
    table = page.split('id="intervals"')[1].split("</table>")[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>([^<]+)</td>.*?</tr>", table)}
    for name, (abmd, e_app) in ends.items():
        per_year = t_interval([x / 2.0 for x in abmd])           # aBMD: its end value per year
        stiff = t_interval([(e / 2000.0 - 1.0) * 100.0 / 2.0 for e in e_app])
        assert html.escape(per_year.format()) in rows["aBMD change"], name
        assert html.escape(stiff.format()) in rows["E_app,z"], name
    assert 'id="stiffness"' in page and 'id="single-sample"' not in page


def test_compare_runs_every_preset_with_mechanics_when_asked(tmp_path, monkeypatch):
    import voxelbone.report
    from voxelbone.cli import main

    seen = []
    monkeypatch.setattr(voxelbone.report, "simulate", lambda scenario, out, **kw: seen.append(scenario))
    monkeypatch.setattr(voxelbone.report, "write_report", lambda runs, out, **kw: tmp_path / "report.html")
    assert main(["compare", "postmenopausal_untreated", "bed_rest", "--fe-every-days", "28", "--out",
                 str(tmp_path), "--quiet", "--backend", "numpy"]) == 0
    assert [s.fe_every_days for s in seen] == [28, 28]
    seen.clear()
    voxelbone.report.compare(["postmenopausal_untreated"], tmp_path / "off", progress=False)
    assert [s.fe_every_days for s in seen] == [0]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.slow
def test_compare_report_in_headless_browser(tmp_path):
    from voxelbone.report import compare

    report = compare(["postmenopausal_untreated", "mht_estradiol_progesterone"], tmp_path, years=0.2, size=48,
                     seed=3, metrics_every_days=25, progress=False, backend="numpy")
    text = report.read_text()
    assert 'id="metrics"' in text and text.count("<img") >= 3
    assert "http://" not in text and "https://" not in text  # no network needed
    # a second call reuses the finished runs
    compare(["postmenopausal_untreated", "mht_estradiol_progesterone"], tmp_path, years=0.2, size=48, seed=3,
            metrics_every_days=25, progress=False, backend="numpy")
    assert "Reused finished runs: postmenopausal_untreated, mht_estradiol_progesterone" in report.read_text()
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium installed (apt install chromium)")
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                           report.as_uri()], capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert "<table" in dom and 'id="metrics"' in dom, proc.stderr[-2000:]
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    total = re.search(r'data-images-total="(\d+)"', dom)
    assert loaded and total, "the page's load handler did not run"
    assert int(loaded.group(1)) == int(total.group(1)) >= 3
