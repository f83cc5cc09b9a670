"""Compartments contoured from the bone (voxelbone.compartments): shapes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from voxelbone.compartments import ContourParams, segment_compartments, trabecular_voi
from voxelbone.metrics.cortical import cortical_metrics
from voxelbone.volume import Region


def _hollow_cylinder(voxel_um: float, length_um: float = 640.0, canals: bool = True, knob: bool = False):
    """A cortex 360–600 µm from the axis (240 µm thick) around marrow with two rods.

    Returns bone mask, labels and the Haversian canal mask (radius 30 µm at 480 µm from the axis).
    """
    n_xy = int(round(1440.0 / voxel_um))
    n_z = int(round(length_um / voxel_um))
    c = (n_xy - 1) / 2.0
    z, y, x = np.ogrid[:n_z, :n_xy, :n_xy]
    ry, rx = (y - c) * voxel_um, (x - c) * voxel_um
    rr = np.broadcast_to(np.hypot(ry, rx), (n_z, n_xy, n_xy))
    cortex = (rr <= 600.0) & (rr > 360.0)
    canal = np.zeros(cortex.shape, bool)
    if canals:
        for ang in np.linspace(0, 2 * np.pi, 10, endpoint=False):
            cy, cx = 480.0 * np.sin(ang), 480.0 * np.cos(ang)
            canal |= np.broadcast_to((ry - cy) ** 2 + (rx - cx) ** 2 <= 30.0**2, cortex.shape)
    # two 80-µm rods across the marrow, fused to the endocortical surface
    rods = ((np.abs(ry) <= 40.0) | (np.abs(rx) <= 40.0)) & (rr <= 360.0)
    rods = np.broadcast_to(rods & (np.abs((z - n_z / 2) * voxel_um) <= 80.0), cortex.shape)
    if knob:  # a 360-µm-wide ridge of the cortex reaching 240 µm into the marrow, instead of the rods
        rods = np.broadcast_to((np.abs(rx) <= 180.0) & (ry >= 120.0) & (np.hypot(ry, rx) <= 360.0), cortex.shape)
    bone = (cortex & ~canal) | rods
    region = np.where(rr <= 600.0, np.where(rr > 360.0, Region.CORTICAL, Region.TRABECULAR), Region.OUTSIDE)
    return bone, region.astype(np.uint8), canal, cortex


def test_hollow_cylinder_with_canals_and_rods_is_contoured():
    bone, region, canal, cortex = _hollow_cylinder(20.0)
    for envelope in (region != Region.OUTSIDE, None):  # labelled periosteum, and detected from the bone
        c = segment_compartments(bone, 20.0, envelope=envelope)
        assert c.has_periosteal_shell
        assert np.array_equal(c.outside, region == Region.OUTSIDE)
        assert (c.cortex ^ cortex).sum() <= 0.01 * cortex.sum()  # the rods are trabecular, the canals cortical
        # only the roots of the rods stay cortex: the crevices beside them, narrower than the
        # marrow's passage (ContourParams.passage_radius_um), are not marrow, as in Buie's
        # opening of the marrow space
        rooted = c.cortex & ~cortex
        root_um = ContourParams().passage_radius_um
        rr = np.hypot(*np.meshgrid((np.arange(bone.shape[1]) - (bone.shape[1] - 1) / 2) * 20.0,
                                   (np.arange(bone.shape[2]) - (bone.shape[2] - 1) / 2) * 20.0, indexing="ij"))
        assert (np.broadcast_to(rr, bone.shape)[rooted] >= 360.0 - root_um).all()
        assert (rooted & bone).sum() < 0.15 * (bone & ~cortex).sum()
        assert (c.cortex & canal).sum() == canal.sum()  # closed canals are pores of the cortex
        assert not (c.marrow & bone).any() and (c.marrow | c.cortex | c.outside | bone).all()
        assert 0.9 < c.cortical_bone_share < 1.0
        labels = c.region_labels()
        assert set(np.unique(labels).tolist()) == {0, 1, 2}
    m = cortical_metrics(bone, region, 20.0)
    assert m.ct_po == pytest.approx(canal.sum() / cortex.sum(), abs=0.005)
    assert abs(m.ct_th_um - 240.0) <= 20.0


def test_contouring_does_not_depend_on_the_voxel_size():
    th = {}
    for v in (20.0, 40.0):
        bone, region, _, cortex = _hollow_cylinder(v, knob=True)
        knob = bone & ~cortex
        c = segment_compartments(bone, v, envelope=region != Region.OUTSIDE)
        assert (c.cortex ^ cortex ^ knob).sum() <= 0.03 * cortex.sum(), f"{v} µm"  # the ridge is cortex
        th[v] = cortical_metrics(bone, region, v).ct_th_um
    assert abs(th[20.0] - th[40.0]) <= 40.0, th  # within a voxel


def test_a_pore_opened_into_the_marrow_is_marrow():
    v = 20.0
    bone, region, canal, cortex = _hollow_cylinder(v)
    envelope = region != Region.OUTSIDE
    before = segment_compartments(bone, v, envelope=envelope)
    n_xy = bone.shape[1]
    c0 = (n_xy - 1) / 2.0
    y = np.arange(n_xy)[None, :, None]
    x = np.arange(n_xy)[None, None, :]
    one = canal & np.broadcast_to(((x - c0) * v > 300.0) & (np.abs(y - c0) * v < 100.0), bone.shape)
    assert one.any() and before.cortex[one].all()
    # a canal-sized perforation (60 µm wide) of the wall between that canal (450–510 µm from
    # the axis) and the marrow: the canal stays a pore of the cortex
    slit = np.broadcast_to((np.abs(y - c0) * v <= 30.0) & ((x - c0) * v > 340.0) & ((x - c0) * v < 470.0), bone.shape)
    assert segment_compartments(bone & ~slit, v, envelope=envelope).cortex[one].all()
    # the canal enlarged to 120 µm (a pore of the transitional zone) stays a pore while its wall holds
    wide = np.broadcast_to(((y - c0) * v) ** 2 + ((x - c0) * v - 480.0) ** 2 <= 60.0**2, bone.shape)
    enlarged = bone & ~wide
    assert segment_compartments(enlarged, v, envelope=envelope).cortex[wide].all()
    # ... and joins the marrow once the wall between them is gone over the pore's width
    breach = np.broadcast_to((np.abs(y - c0) * v <= 60.0) & ((x - c0) * v > 340.0) & ((x - c0) * v < 480.0), bone.shape)
    opened = enlarged & ~breach
    after = segment_compartments(opened, v, envelope=envelope)
    # at mid-length a rod fused to the endosteum stands in front of the breach, so the marrow
    # reaches the pore there only around the rod
    beside_rod = np.broadcast_to(np.abs(np.arange(bone.shape[0])[:, None, None] - bone.shape[0] / 2) * v > 100.0,
                                 bone.shape)
    assert (after.marrow & wide & beside_rod).sum() == (wide & beside_rod).sum()
    assert (after.marrow & wide).sum() >= 0.9 * wide.sum()
    other = canal & ~one
    assert (after.cortex & other).sum() == other.sum()  # the closed canals stay pores
    assert cortical_metrics(opened, region, v).ct_po < cortical_metrics(enlarged, region, v).ct_po


def _slab_with_a_canal(v: float, canal_radius_um: float = 60.0):
    """A flat 300-µm cortex (periosteum at y = 4) over marrow, 3.2 mm long, with one canal.

    The canal (an enlarged pore, radius 60 µm, 200 µm below the periosteum) runs the whole
    length along z; the returned breach is a cavity-sized hole (200 µm along z, 120 µm
    across) through its wall into the marrow.
    """
    nz, ny, nx = 160, 44, 40
    z, y, x = np.ogrid[:nz, :ny, :nx]
    shape = (nz, ny, nx)
    depth = (y - 4 + 0.5) * v
    inside = np.broadcast_to(y >= 4, shape)
    cortex = inside & np.broadcast_to(depth <= 300.0, shape)
    canal = np.broadcast_to((depth - 200.0) ** 2 + ((x - 19.5) * v) ** 2 <= canal_radius_um**2, shape)
    breach = np.broadcast_to((np.abs((z - 79.5) * v) <= 100.0) & (np.abs((x - 19.5) * v) <= 60.0)
                             & (depth >= 200.0) & (depth <= 320.0), shape)
    region = np.where(inside, np.where(cortex, Region.CORTICAL, Region.TRABECULAR), Region.OUTSIDE)
    from_breach_um = np.broadcast_to(np.abs(z - 79.5) * v, shape)
    return cortex & ~canal, region.astype(np.uint8), canal, breach, from_breach_um


def test_a_long_canal_breached_once_opens_into_the_marrow_only_near_the_breach():
    # Buie's endosteal step dilates the marrow back by a bounded distance: one resorption
    # cavity through the wall of a canal running millimetres along the bone makes the canal
    # marrow near the cavity, not along its whole length (an unbounded reconstruction moved
    # the whole canal and the wall beside it out of the cortex, and back when the wall
    # refilled: Ct.Th of a thin shell jumped by ±10 µm from one month to the next)
    v = 20.0
    bone, region, canal, breach, from_breach_um = _slab_with_a_canal(v)
    envelope = region != Region.OUTSIDE
    closed = segment_compartments(bone, v, envelope=envelope)
    opened = segment_compartments(bone & ~breach, v, envelope=envelope)
    assert closed.cortex[canal].all()
    assert opened.marrow[canal & (from_breach_um < 150.0)].all()
    reach = ContourParams().marrow_reach_um
    assert opened.cortex[canal & (from_breach_um > 2.0 * reach + 200.0)].all()
    th = [cortical_metrics(b, region, v).ct_th_um for b in (bone, bone & ~breach)]
    assert 0.0 <= th[0] - th[1] <= 5.0, th
    # a Haversian canal of ordinary size (80 µm wide) behind the same hole stays a pore: the
    # marrow passes only where it is wider than a canal (ContourParams.passage_radius_um)
    bone, region, canal, breach, _ = _slab_with_a_canal(v, canal_radius_um=40.0)
    narrow = segment_compartments(bone & ~breach, v, envelope=envelope)
    assert narrow.cortex[canal & ~breach & (from_breach_um > 120.0)].all()


def test_trabecular_voi_keeps_away_from_the_cortex_by_the_same_micrometres_at_any_voxel_size():
    # the VOI is the trabecular compartment farther than trabecular_close_um (150 µm) from the
    # contoured cortex: in the cylinder, within 360 − 150 = 210 µm of the axis, whatever the voxel
    margin = ContourParams().trabecular_close_um
    for v in (20.0, 40.0):
        bone, region, _, cortex = _hollow_cylinder(v, canals=False)
        labels = segment_compartments(bone, v, envelope=region != Region.OUTSIDE).region_labels()
        voi = trabecular_voi(labels, v)
        assert voi.any() and not (voi & (labels != Region.TRABECULAR)).any()
        n = bone.shape[1]
        rr = np.broadcast_to(np.hypot(*np.meshgrid((np.arange(n) - (n - 1) / 2) * v, (np.arange(n) - (n - 1) / 2) * v,
                                                   indexing="ij")), bone.shape)
        assert rr[voi].max() <= 360.0 - margin + v / 2, v  # nothing of the band beside the cortex, to half a voxel
        root_um = ContourParams().passage_radius_um  # the rods' roots stay cortex (test above)
        assert voi[rr <= 360.0 - root_um - margin - v].all(), v  # and everything farther in
    # without a cortex the VOI is the whole trabecular compartment
    labels = np.full((8, 8, 8), int(Region.TRABECULAR), np.uint8)
    assert trabecular_voi(labels, 30.0).all()
    with pytest.raises(ValueError, match="voxel_size_um"):
        trabecular_voi(labels, 0.0)


def test_trabecular_core_without_shell_is_all_trabecular():
    rng = np.random.default_rng(0)
    from scipy import ndimage as ndi

    field = ndi.gaussian_filter(rng.standard_normal((48, 48, 48)), 3.0)
    bone = field > np.quantile(field, 0.75)  # BV/TV 0.25, a random foam reaching every face
    c = segment_compartments(bone, 30.0)
    assert not c.has_periosteal_shell
    assert c.trabecular.all() and not c.cortex.any() and not c.outside.any()
    assert c.cortical_bone_share == 0.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="3-D"):
        segment_compartments(np.zeros((4, 4)), 20.0)
    with pytest.raises(ValueError, match="voxel_size_um"):
        segment_compartments(np.zeros((4, 4, 4)), 0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        segment_compartments(np.zeros((4, 4, 4)), 20.0, envelope=np.ones((4, 4, 5), bool))
    with pytest.raises(ValueError, match="trabecular_close_um"):
        ContourParams(trabecular_close_um=-1.0)
    with pytest.raises(ValueError, match="marrow_reach_um"):
        ContourParams(marrow_reach_um=0.0)
    with pytest.raises(ValueError, match="passage_radius_um"):
        ContourParams(passage_radius_um=float("nan"))
