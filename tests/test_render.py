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
