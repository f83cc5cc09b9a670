"""The cortical-change figure: a known layer of cortex removed shows where it was, and only there."""

from __future__ import annotations

import numpy as np
import pytest

from voxelbone.runfolder import RunFolder
from voxelbone.volume import TMD_MAX_MG_CM3, BoneVolume, Region

V_UM = 30.0
N = 40
PERI, ENDO = 4, 16  # the cortex fills y = PERI .. ENDO-1 (12 voxels, 360 µm); outside below PERI
LAYER = ENDO - 1    # the endocortical layer the tests remove


def _start() -> BoneVolume:
    """A flat cortex along the low-y face with two canals, rods in the marrow beyond it."""
    bone = np.zeros((N, N, N), np.float32)
    region = np.full(bone.shape, Region.TRABECULAR, np.uint8)
    region[:, :PERI, :] = Region.OUTSIDE
    region[:, PERI:ENDO, :] = Region.CORTICAL
    bone[:, PERI:ENDO, :] = 1.0
    bone[:, 8:10, 10:12] = 0.0   # canals along z
    bone[:, 9:11, 28:30] = 0.0
    for x in (8, 20, 32):        # rods from the endosteum into the marrow
        bone[:, ENDO:N - 2, x:x + 3] = 1.0
    return BoneVolume(bone=bone, mineral=0.9 * bone, region=region, voxel_size_um=V_UM)


def _without_layer(v: BoneVolume, remaining: float = 0.0) -> BoneVolume:
    """``v`` with the endocortical layer's bone (and mineral) scaled to ``remaining`` between the rods."""
    bone, mineral = np.array(v.bone), np.array(v.mineral)
    keep = np.ones(N, bool)
    for x in (8, 20, 32):
        keep[x:x + 3] = False
    bone[:, LAYER, keep] *= remaining
    mineral[:, LAYER, keep] *= remaining
    return BoneVolume(bone=bone, mineral=mineral, region=v.region, voxel_size_um=V_UM)


@pytest.fixture(scope="module")
def removed():
    from voxelbone.cortex_change import cortex_change

    start = _start()
    return start, cortex_change(start, _without_layer(start))


def test_difference_is_the_removed_layer_and_nothing_else(removed):
    start, c = removed
    d = c.difference_mg_cm3
    layer = np.zeros_like(d, dtype=bool)
    layer[LAYER, :] = True
    layer &= np.array(start.bone)[c.slice_z] > 0
    layer[LAYER, [x + i for x in (8, 20, 32) for i in range(3)]] = False
    assert np.allclose(d[layer], -0.9 * TMD_MAX_MG_CM3)
    assert np.all(d[~layer] == 0.0)
    # the profile loses the layer's density at its depth, and no other depth changes
    change = c.profile_end_mg_cm3 - c.profile_start_mg_cm3
    at = LAYER - PERI
    assert change[at] < -0.5 * 0.9 * TMD_MAX_MG_CM3
    assert np.all(np.abs(np.delete(change, at)) < 1e-3)
    # the map over the cortex's face: a voxel of dense bone lost between the rods, nothing at them
    assert c.map_axis == "x" and c.bone_change_map_um.shape == (N, N)
    rods = np.zeros(N, bool)
    for x in (8, 20, 32):
        rods[x:x + 3] = True
    assert np.allclose(c.bone_change_map_um[:, ~rods], -V_UM) and np.all(c.bone_change_map_um[:, rods] == 0.0)
    # the contoured cortex loses the layer: one voxel of mean depth, and Ct.Th falls
    assert c.endosteal_depth_start_um - c.endosteal_depth_end_um == pytest.approx(V_UM, abs=0.25 * V_UM)
    assert c.ct_th_end_um < c.ct_th_start_um


def test_thickness_is_the_cortical_metric(removed):
    from voxelbone.metrics.cortical import cortical_metrics

    start, c = removed
    end = _without_layer(start)
    for v, th in ((start, c.ct_th_start_um), (end, c.ct_th_end_um)):
        assert th == pytest.approx(cortical_metrics(v.bone, v.region, V_UM).ct_th_um, rel=1e-6)


def test_a_third_of_a_voxel_shows_though_the_mask_does_not_move():
    from voxelbone.cortex_change import cortex_change

    start = _start()
    c = cortex_change(start, _without_layer(start, remaining=2.0 / 3.0))
    assert c.ct_th_end_um == c.ct_th_start_um  # the binary cortex is unchanged ...
    d = c.difference_mg_cm3
    assert d[LAYER].min() == pytest.approx(-0.3 * TMD_MAX_MG_CM3, rel=1e-5)  # ... its density is not
    assert (c.profile_end_mg_cm3 - c.profile_start_mg_cm3)[LAYER - PERI] < -100.0
    assert c.bone_change_map_um.min() == pytest.approx(-V_UM / 3.0, rel=1e-5)  # a third of a voxel: −10 µm


def _red(img: np.ndarray) -> np.ndarray:
    """Red, dark or light (the loss colours), not the orange of the end contour."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return (r > 80) & (g < 0.45 * r) & (b < 0.45 * r)


def test_red_pixels_lie_on_the_removed_layer(removed):
    from voxelbone.plots import _cortex_figure, _pyplot

    _, c = removed
    fig, ax = _cortex_figure(c, "test")
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    h = img.shape[0]
    a = ax["difference"]
    wy, wx = c.window

    def pixel(y: int, x: int) -> tuple[int, int]:
        px, py = a.transData.transform(((x + 0.5) * V_UM / 1000, (y + 0.5) * V_UM / 1000))
        return int(round(h - py)), int(round(px))

    xs = [x for x in range(wx.start, wx.stop) if x % 12 in (2, 3, 4)]
    on = [img[pixel(LAYER, x)] for x in xs]
    off = [img[pixel(y, x)] for x in xs for y in range(wy.start, wy.stop) if abs(y - LAYER) > 1]
    assert np.mean([_red(p[None])[0] for p in on]) > 0.9
    assert np.mean([_red(p[None])[0] for p in off]) == 0.0
    _pyplot().close(fig)


def test_no_map_when_the_cortex_is_a_ring(tmp_path):
    from voxelbone.cortex_change import cortex_change
    from voxelbone.plots import plot_cortex_change

    n = 48
    z, y, x = np.mgrid[:n, :n, :n]
    r = np.hypot(y - (n - 1) / 2, x - (n - 1) / 2)
    region = np.where(r > 21, Region.OUTSIDE, np.where(r > 13, Region.CORTICAL, Region.TRABECULAR)).astype(np.uint8)
    bone = ((r <= 21) & (r > 13)).astype(np.float32)
    ring = BoneVolume(bone=bone, mineral=bone, region=region, voxel_size_um=V_UM)
    c = cortex_change(ring, ring)
    assert c.bone_change_map_um is None and c.map_axis == ""
    assert c.cortex_start.any() and np.all(c.difference_mg_cm3 == 0.0)
    assert plot_cortex_change(c, tmp_path / "ring.png").is_file()  # drawn without the map's panel


def test_errors_name_the_problem():
    from voxelbone.cortex_change import cortex_change

    start = _start()
    with pytest.raises(ValueError, match="one grid"):
        cortex_change(start, BoneVolume.from_mask(np.array(start.bone)[:20] > 0.5, V_UM))
    with pytest.raises(ValueError, match="slice_z"):
        cortex_change(start, start, slice_z=N)
    core = BoneVolume.from_mask(np.array(start.bone) > 0.5, V_UM)  # no periosteal envelope: all trabecular
    with pytest.raises(ValueError, match="neither volume has a contoured cortex"):
        cortex_change(core, core)


def _run_folder_of_a_thinned_cortex(tmp_path):
    """A run folder holding the start volume (day 0) and the same volume without its inner cortical layer (day 365)."""
    folder = RunFolder(tmp_path / "run")
    folder.create()
    start = _start()
    folder.save_snapshot(start, 0)
    folder.save_snapshot(_without_layer(start), 365)
    return folder, start


def test_a_run_writes_the_cortex_change_figure(tmp_path):
    import imageio.v2 as imageio

    from voxelbone.cortex_change import cortex_change
    from voxelbone.plots import plot_cortex_change
    from voxelbone.render import run_renders

    folder, start = _run_folder_of_a_thinned_cortex(tmp_path)
    figures = run_renders(folder)
    written = figures["cortex_change"]()
    assert written == [folder.render_path("cortex_change")]
    # the first snapshot compared with the last: more red than the same figure of no change
    unchanged = plot_cortex_change(cortex_change(start, start), tmp_path / "unchanged.png",
                                   title="cortex, year 0.0 to year 1.0")
    red = [_red(np.asarray(imageio.imread(p))[..., :3].astype(int)).sum() for p in (written[0], unchanged)]
    assert red[0] > red[1] + 1000, red
    # a volume without a cortex has no cortical change to draw, and says nothing went wrong
    core = RunFolder(tmp_path / "core")
    core.create()
    for day in (0, 365):
        core.save_snapshot(BoneVolume.from_mask(np.array(start.bone) > 0.5, V_UM), day)
    assert run_renders(core)["cortex_change"]() == []


def _scene_image(before: BoneVolume, after: BoneVolume):
    """The 3-D cortical-change scene as an RGB image, and a function from mesh points (mm) to pixels (row, col)."""
    from vtkmodules.vtkRenderingCore import vtkCoordinate

    from voxelbone.render import RenderOptions, _cortex_change_scene

    p = _cortex_change_scene(before, after, "test", RenderOptions(window_size=(320, 320)))
    img = np.asarray(p.screenshot(return_img=True))[..., :3].astype(int)
    h = img.shape[0]
    coord = vtkCoordinate()
    coord.SetCoordinateSystemToWorld()

    def pixels(points_mm: np.ndarray) -> np.ndarray:
        out = []
        for pt in points_mm:
            coord.SetValue(*map(float, pt))
            x, y = coord.GetComputedDoubleDisplayValue(p.renderer)
            out.append((int(round(h - 1 - y)), int(round(x))))
        return np.array(out)

    return img, pixels, p


def _layer_face_mm(xs, zs) -> np.ndarray:
    """Points of the start surface's endosteal face over the removed layer (mesh coordinates (x, y, z), mm)."""
    return np.array([((x + 0.5) * V_UM / 1000, (LAYER + 0.5) * V_UM / 1000, z * V_UM / 1000)
                     for x in xs for z in zs])


def test_3d_render_shows_the_removed_layer_in_red_and_nothing_else():
    start = _start()
    img, pixels, p = _scene_image(start, _without_layer(start))
    h, w = img.shape[:2]
    body = np.zeros((h, w), bool)
    body[: int(0.78 * h)] = True   # above the colour bar (which holds red itself)
    red = _red(img) & body
    # the endosteal face of the layer on the viewer's side (no network drawn there): red
    on = pixels(_layer_face_mm([x for x in range(22, N - 1) if not 31 <= x <= 35], range(3, N - 3)))
    inside = (on[:, 0] >= 0) & (on[:, 0] < h) & (on[:, 1] >= 0) & (on[:, 1] < w)
    assert inside.all()
    assert _red(img[on[:, 0], on[:, 1]]).mean() > 0.9
    # not red: the cortex where the layer was kept (at the rods, x = 20..22 and 32..34) and the cortex's
    # top face more than two voxels from the layer (both seen: they are drawn, not background)
    kept = pixels(np.array([(x * V_UM / 1000, (LAYER + 0.5) * V_UM / 1000, z * V_UM / 1000)
                            for x in (21, 33) for z in range(3, N - 3)]))
    top = pixels(np.array([(x * V_UM / 1000, y * V_UM / 1000, (N - 0.5) * V_UM / 1000)
                           for x in range(22, N - 2) for y in range(PERI + 2, LAYER - 2)]))
    for where in (kept, top):
        seen = img[where[:, 0], where[:, 1]]
        assert np.all(np.any(seen < 235, axis=-1)) and not _red(seen).any()
    assert red.sum() > 500
    p.close()
    # no change: no red anywhere on the bone
    img, _, p = _scene_image(start, start)
    assert (_red(img) & body).sum() == 0
    assert (np.any(img < 235, axis=-1) & body).mean() > 0.1   # the bone is drawn
    p.close()


def test_a_run_writes_the_3d_cortex_render(tmp_path):
    import imageio.v2 as imageio

    from voxelbone.render import RenderOptions, render_cortex_change, run_renders

    folder, start = _run_folder_of_a_thinned_cortex(tmp_path)
    opts = RenderOptions(window_size=(320, 320))
    written = run_renders(folder, options=opts)["cortex_change_3d"]()
    assert written == [folder.render_path("cortex_change_3d")]
    # the first snapshot compared with the last: red, where the same render of no change has none
    unchanged = render_cortex_change(start, start, tmp_path / "unchanged.png", title="cortex, year 0.0 to year 1.0",
                                     options=opts)
    imgs = [np.asarray(imageio.imread(p))[..., :3].astype(int) for p in (written[0], unchanged)]
    red = [_red(im[: int(0.78 * im.shape[0])]).sum() for im in imgs]
    assert red[0] > 500 and red[1] == 0, red
    with pytest.raises(ValueError, match="one grid"):
        render_cortex_change(start, BoneVolume.from_mask(np.array(start.bone)[:20] > 0.5, V_UM), tmp_path / "x.png")
    # a volume without a cortex: nothing to draw, nothing written
    core = RunFolder(tmp_path / "core")
    core.create()
    for day in (0, 365):
        core.save_snapshot(BoneVolume.from_mask(np.array(start.bone) > 0.5, V_UM), day)
    assert run_renders(core, options=opts)["cortex_change_3d"]() == []
    assert not core.render_path("cortex_change_3d").exists()
