"""Why trabecular DA falls on the lumbar network phantom with mechanics on (docs/user-guide/mechanics.md).

    NUMBA_NUM_THREADS=1 python benchmarks/anisotropy_phantom_study.py [--seeds 1 2 3] [--rim-um 400]
        [--boundary constrained|kinematic] [--modes blind on blind-rim embedded]
        [--embed-um 400] [--embed-mpa E] [--no-diagnostics]

For each seed, on the starting 48³ lumbar cube (40 µm), one solve along z: the main MIL
direction, the trabecular surface's signal (median, share below 0.02 % and how much of it
lies within ``--rim-um`` of the four free lateral faces), the trabecular resorption set
point fitted over the whole surface and over the interior alone, and the share of the
interior surface clipped at ``signal_ratio_max``. Then two years of
``postmenopausal_untreated`` (10-day steps, a solve every 28 days) with blind BMUs, with
mechanics on, and with a prototype that leaves the rim blind and fits the set points over
the interior (not the model's rule: a measurement of what the rim does), printing
trabecular MIL DA (whole and interior) at day 0 and at the end, and the share of the
starting trabecular bone kept in the rim and in the interior. ``embedded`` (a prototype)
pads the four lateral faces with ``--embed-um`` of a homogeneous layer of ``--embed-mpa``
(default: the trabecular network's own E_app on day 0) in every solve; its day-0
diagnostics print the layer's modulus, the median signal within 120 µm of a side face and
inside, the set point and the share of the interior clipped. About 30 s per run on one
idle core (embedded: about 4 min). ``--boundary`` sets the mechanostat's load case
(:class:`voxelbone.remodel.mechanostat.MechanostatParams`; the model's default is
``constrained``, free lateral faces).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from typing import Any

import numpy as np

import voxelbone.remodel.mechanostat as mech
from voxelbone.mechanics import apparent_modulus
from voxelbone.metrics.anisotropy import mean_intercept_length
from voxelbone.phantom import make_phantom
from voxelbone.scenario import Period, Scenario
from voxelbone.simulate import _default_measure, simulate
from voxelbone.volume import BoneVolume, Region

SIZE = 48
VOXEL_SIZE_UM = 40.0


def rim_mask(shape: tuple[int, int, int], voxel_size_um: float, rim_um: float) -> np.ndarray:
    """Voxels within ``rim_um`` of the four lateral (y, x) faces of the cube."""
    n = int(round(rim_um / voxel_size_um))
    rim = np.zeros(shape, bool)
    rim[:, :n], rim[:, -n:], rim[:, :, :n], rim[:, :, -n:] = True, True, True, True
    return rim


def trabecular_da(volume: BoneVolume, rim: np.ndarray) -> tuple[float, float]:
    """MIL DA of the trabecular compartment, whole and outside the rim."""
    trab = np.asarray(volume.region) == int(Region.TRABECULAR)
    bone = np.asarray(volume.bone) >= 0.5
    return (mean_intercept_length(bone, within=trab).da_ratio,
            mean_intercept_length(bone, within=trab & ~rim).da_ratio)


def start_diagnostics(seed: int, rim_um: float) -> None:
    """One solve on the starting cube: the signal and the set points (see the module docstring)."""
    v = make_phantom("lumbar_spine", SIZE, VOXEL_SIZE_UM, seed=seed)
    rim = rim_mask(v.shape, VOXEL_SIZE_UM, rim_um)
    trab = v.region == int(Region.TRABECULAR)
    fabric = mean_intercept_length(v.bone >= 0.5, within=trab)
    p = mech.MechanostatParams()
    res = apparent_modulus(v, axis=p.axis, rtol=p.rtol, boundary=p.boundary)
    signal = mech.local_signal(res.effective_strain, v.bone, VOXEL_SIZE_UM, p.influence_distance_um)
    surf = mech.surface_mask(v.bone, v.region) & trab
    s, inner = signal[surf], ~rim[surf]
    lo, hi, w, a = p.signal_ratio_min, p.signal_ratio_max, p.mechanical_share, -p.resorption_exponent
    s_all = mech._solve_setpoint(s, a, lo, hi, w)
    s_in = mech._solve_setpoint(s[inner], a, lo, hi, w)
    low = s < 2e-4
    print(f"seed {seed}: main MIL direction (z, y, x) {np.round(fabric.eigenvectors[:, 0], 3)}; "
          f"signal median {100 * np.median(s):.3f} %, below 0.02 %: {low.mean():.2f} of the surface "
          f"({(~inner[low]).mean() if low.any() else 0.0:.2f} of it in the rim); set point {100 * s_all:.3f} % "
          f"(interior clipped {np.mean(s[inner] >= hi * s_all):.2f}), interior-fitted {100 * s_in:.3f} % "
          f"(clipped {np.mean(s[inner] >= hi * s_in):.2f})", flush=True)


def embedded_diagnostics(seed: int, embed_um: float, embed_mpa: float | None) -> None:
    """One embedded solve on the starting cube: the edge's signal against the interior's."""
    v = make_phantom("lumbar_spine", SIZE, VOXEL_SIZE_UM, seed=seed)
    m = embedded_mechanostat(embed_um, embed_mpa)()
    m.solve(v)
    m.calibrate(v, 100.0)
    surf = mech.surface_mask(v.bone, v.region) & (v.region == int(Region.TRABECULAR))
    s = np.asarray(m.signal)[surf]
    near = rim_mask(v.shape, VOXEL_SIZE_UM, 120.0)[surf]
    inner = ~rim_mask(v.shape, VOXEL_SIZE_UM, 400.0)[surf]
    sp = m.setpoint_resorption["trabecular"]
    print(f"seed {seed} embedded in {m.e_embed_mpa:.0f} MPa: below 0.02 %: {np.mean(s < 2e-4):.3f} of the surface; "
          f"median {100 * np.median(s):.3f} %, within 120 µm of a side face {100 * np.median(s[near]):.3f} % against "
          f"{100 * np.median(s[~near]):.3f} % inside; set point {100 * sp:.3f} %, interior clipped "
          f"{np.mean(s[inner] >= mech.MechanostatParams().signal_ratio_max * sp):.2f}", flush=True)


def blind_rim_mechanostat(rim_um: float) -> type:
    """A Mechanostat that leaves the rim blind and fits its set points over the interior (prototype)."""

    class BlindRim(mech.Mechanostat):
        def _fit_setpoints(self, volume: Any, cavities: Any = None) -> None:
            rim = rim_mask(volume.shape, volume.voxel_size_um, rim_um)
            region = np.where(rim, np.uint8(int(Region.OUTSIDE)), np.asarray(volume.region))
            view = BoneVolume.__new__(BoneVolume)
            object.__setattr__(view, "bone", volume.bone)
            object.__setattr__(view, "region", region)
            super()._fit_setpoints(view, None if cavities is None else np.where(rim, 0.0, np.asarray(cavities)))

        def modulation(self, load_scale: float, estradiol_pg_ml: float) -> mech.Modulation:
            m = super().modulation(load_scale, estradiol_pg_ml)
            rim = rim_mask(m.activation.shape, VOXEL_SIZE_UM, rim_um)
            m.activation[rim] = 1.0
            m.refill[rim] = 1.0
            return m

    return BlindRim


def embedded_mechanostat(embed_um: float, modulus_mpa: float | None = None) -> type:
    """A Mechanostat whose solve embeds the cube in a homogeneous layer (prototype).

    The four lateral faces are padded with ``embed_um`` of a homogeneous material whose
    modulus is the apparent modulus of the cube's trabecular network on day 0 (constrained
    E_app along the load axis, the cortex left out): the trabecular bone around a cube cut
    from a vertebra, homogenised (the embedded
    configuration of Pahr & Zysset 2008 Biomech Model Mechanobiol 7:463). The layer takes
    the loaded faces' displacement like the bone; a strut cut by a lateral face is held by
    it, with the compliance of bone rather than the rigidity of kinematic faces. The signal
    is that of the cube (the layer cropped off). ``modulus_mpa`` replaces the layer's modulus.
    """
    from voxelbone.mechanics.stiffness import FULLY_MINERALISED_MODULUS_MPA, MINERAL_EXPONENT

    class Embedded(mech.Mechanostat):
        e_embed_mpa: float | None = modulus_mpa
        padded_displacement: Any = None

        def solve(self, volume: BoneVolume, keep: bool = True, cavities: Any = None) -> Any:
            p = self.params
            n = max(int(round(embed_um / volume.voxel_size_um)), 1)
            if self.e_embed_mpa is None:  # the trabecular network's own, cortex left out
                trab = np.asarray(volume.region) == int(Region.TRABECULAR)
                net = BoneVolume(np.where(trab, volume.bone, 0.0).astype(np.float32),
                                 np.where(trab, volume.mineral, 0.0).astype(np.float32), volume.region,
                                 volume.voxel_size_um)
                self.e_embed_mpa = apparent_modulus(net, axis=p.axis, rtol=p.rtol).e_app_mpa
            m = (self.e_embed_mpa / FULLY_MINERALISED_MODULUS_MPA) ** (1.0 / MINERAL_EXPONENT)
            lateral = ((0, 0), (n, n), (n, n))
            bone = np.pad(np.asarray(volume.bone, np.float32), lateral, constant_values=1.0)
            mineral = np.pad(np.asarray(volume.mineral, np.float32), lateral, constant_values=np.float32(m))
            region = np.pad(np.asarray(volume.region), lateral, constant_values=int(Region.TRABECULAR))
            padded = BoneVolume(bone, mineral, region, volume.voxel_size_um)
            res = apparent_modulus(padded, axis=p.axis, rtol=p.rtol, boundary=p.boundary,
                                   initial_displacement=self.padded_displacement)
            cut = (slice(None), slice(n, -n), slice(n, -n))
            res = dataclasses.replace(res, effective_strain=res.effective_strain[cut], sed_mpa=res.sed_mpa[cut])
            if not keep:
                return res
            self.padded_displacement = res.displacement_voxels
            self.result = res
            self.signal = mech.local_signal(res.effective_strain, volume.bone, volume.voxel_size_um,
                                            p.influence_distance_um)
            self.region = volume.region.copy()
            return res

    return Embedded


def run(seed: int, mode: str, rim_um: float, embed_um: float = 400.0, embed_mpa: float | None = None) -> None:
    """Two years untreated; ``mode`` is ``blind``, ``on``, ``blind-rim`` or ``embedded``."""
    rim = rim_mask((SIZE,) * 3, VOXEL_SIZE_UM, rim_um)

    def measure(v: BoneVolume) -> dict[str, float]:
        da, da_in = trabecular_da(v, rim)
        return {**_default_measure(v), "da": da, "da_interior": da_in}

    original = mech.Mechanostat
    if mode == "blind-rim":
        mech.Mechanostat = blind_rim_mechanostat(rim_um)  # simulate imports it when mechanics is on
    elif mode == "embedded":
        mech.Mechanostat = embedded_mechanostat(embed_um, embed_mpa)
    try:
        sc = Scenario(name="da", site="lumbar_spine", periods=(Period("postmenopausal_untreated", 2.0),), size=SIZE,
                      voxel_size_um=VOXEL_SIZE_UM, seed=seed, step_days=10, metrics_every_days=730,
                      fe_every_days=0 if mode == "blind" else 28)
        r = simulate(sc, None, backend="numpy", progress=False, render=False, measure=measure)
    finally:
        mech.Mechanostat = original
    v0 = make_phantom("lumbar_spine", SIZE, VOXEL_SIZE_UM, seed=seed)
    trab = v0.region == int(Region.TRABECULAR)
    end = np.asarray(r.volume.bone)
    kept = [end[trab & m].sum() / v0.bone[trab & m].sum() for m in (rim, ~rim)]
    first, last = r.rows[0], r.rows[-1]
    print(f"seed {seed} {mode:9s}: DA {first['da']:.3f} -> {last['da']:.3f}, interior {first['da_interior']:.3f} -> "
          f"{last['da_interior']:.3f}; trabecular bone kept: rim {kept[0]:.3f}, interior {kept[1]:.3f}", flush=True)


def set_boundary(boundary: str) -> None:
    """Make ``boundary`` the load case of every Mechanostat built with default parameters from here on."""
    mech.MechanostatParams = functools.partial(mech.MechanostatParams, boundary=boundary)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--rim-um", type=float, default=400.0)
    ap.add_argument("--boundary", choices=("constrained", "kinematic"), default="constrained")
    ap.add_argument("--modes", nargs="+", choices=("blind", "on", "blind-rim", "embedded"),
                    default=["blind", "on", "blind-rim"])
    ap.add_argument("--embed-um", type=float, default=400.0, help="thickness of the embedding layer (mode embedded)")
    ap.add_argument("--embed-mpa", type=float, default=None,
                    help="modulus of the embedding layer (default: the trabecular network's E_app on day 0)")
    ap.add_argument("--no-diagnostics", action="store_true", help="skip the day-0 solve diagnostics")
    args = ap.parse_args()
    set_boundary(args.boundary)
    if not args.no_diagnostics:
        for seed in args.seeds:
            start_diagnostics(seed, args.rim_um)
            if "embedded" in args.modes:
                embedded_diagnostics(seed, args.embed_um, args.embed_mpa)
    for seed in args.seeds:
        for mode in args.modes:
            run(seed, mode, args.rim_um, args.embed_um, args.embed_mpa)


if __name__ == "__main__":
    main()
