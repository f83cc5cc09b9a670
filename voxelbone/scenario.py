"""Scenario: what a run simulates — site, starting volume, therapy periods, grid and outputs.

A scenario chains periods, each a therapy preset held for a number of years, e.g. two
years untreated after menopause, then five years of hormone therapy, then stop. Scenarios
are plain dataclasses, read from and written to TOML:

.. code-block:: toml

    name = "menopause_then_mht"
    site = "lumbar_spine"
    seed = 1
    size = 96
    voxel_size_um = 30.0

    [[period]]
    preset = "postmenopausal_untreated"
    years = 2

    [[period]]
    preset = "mht_estradiol_progesterone"
    years = 5
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ._toml import toml_line, tomllib
from .sites import get_site
from .units import DAYS_PER_YEAR, whole_days
from .volume import COMPARTMENT_CHOICES
from .voxel_sizes import ACCURATE_VOXEL_UM, MAX_VOXEL_UM, MIN_VOXEL_UM, VoxelSizeWarning, voxel_size_caveat

__all__ = ["DEFAULT_PRESET", "SUGGESTED_FE_EVERY_DAYS", "Period", "Scenario", "load_scenario", "scenario_to_toml"]

DEFAULT_PRESET = "postmenopausal_untreated"
#: Days between micro-FE solves that the ``fe_every_days`` study chose (docs/user-guide/mechanics.md,
#: "How often to solve"); suggested wherever mechanics must be turned on.
SUGGESTED_FE_EVERY_DAYS = 28


@dataclass(frozen=True)
class Period:
    """One therapy period: a preset (name or TOML path) held for ``years``."""

    preset: str
    years: float

    def __post_init__(self) -> None:
        if not isinstance(self.preset, str) or not self.preset:
            raise ValueError(f"period preset must be a non-empty preset name or file, got {self.preset!r}")
        if not (isinstance(self.years, (int, float)) and math.isfinite(self.years) and self.years > 0):
            raise ValueError(f"period years must be a positive number, got {self.years!r} (preset {self.preset})")


@dataclass(frozen=True)
class Scenario:
    """Everything that defines a run (and nothing about where it runs).

    Parameters
    ----------
    name : str
        Label used in tables and reports.
    site : str
        Phantom site (``lumbar_spine`` or ``femoral_neck``); also selects site-specific
        remodeling rates.
    periods : tuple of Period
        Therapy periods in order; total duration = sum of their ``years``.
    size : int, optional
        Phantom edge length in voxels (default: the site's default); not with ``input``,
        whose shape is the scan's.
    voxel_size_um : float, optional
        Voxel edge in µm, 5–100 (default: the site's default, or the scan's header);
        outside 10–40 µm, the calibrated range, a warning says what is less accurate.
    seed : int
        Seed of the phantom and of every remodeling draw.
    step_days : int
        Remodeling time step in days; the last step is shorter when the run's days are not a
        whole number of steps, so a run ends on its last day.
    metrics_every_days : int
        Days between morphometry evaluations (rounded to whole steps).
    snapshot_every_days : int, optional
        Days between saved volumes; ``None`` saves the first and the last only.
    checkpoint_every_days : int
        Days between checkpoints (a resumable state written atomically).
    fragments_every_days : int
        Days between removals of loose bone fragments.
    spin_up_days : int
        Days of balanced remodeling run before day 0 so the starting volume carries the
        remodeling space of its first period's turnover.
    input : str, optional
        A micro-CT file to start from instead of a phantom. In a scenario file a relative
        path (as a preset file or region file) is read beside the file when it is there.
    compartments : str
        Compartments of the input file: ``auto``, ``trabecular`` or a region file
        (:func:`voxelbone.io.load_volume`).
    fe_every_days : int
        Days between micro-FE solves of load-driven remodelling
        (:mod:`voxelbone.remodel.mechanostat`): the local strain then steers where BMUs
        start and how much they refill, and ``e_app_z_mpa`` is reported at every metric
        evaluation. 0 (default) turns mechanics off.

    Examples
    --------
    Two years untreated after the menopause, then five years of hormone therapy:

    >>> s = Scenario(name="mht", periods=(Period("postmenopausal_untreated", 2),
    ...                                   Period("mht_estradiol_progesterone", 5)))
    >>> s.years, s.days, s.period_at(800).preset
    (7.0, 2557, 'mht_estradiol_progesterone')
    >>> Period("trt", -1)
    Traceback (most recent call last):
    ...
    ValueError: period years must be a positive number, got -1 (preset trt)
    """

    name: str = "default"
    site: str = "lumbar_spine"
    periods: tuple[Period, ...] = (Period(DEFAULT_PRESET, 2.0),)
    size: int | None = None
    voxel_size_um: float | None = None
    seed: int = 0
    step_days: int = 1
    metrics_every_days: int = 30
    snapshot_every_days: int | None = None
    checkpoint_every_days: int = 90
    fragments_every_days: int = 30
    spin_up_days: int = 200
    input: str | None = None
    compartments: str = "auto"
    fe_every_days: int = 0

    def __post_init__(self) -> None:
        periods = tuple(p if isinstance(p, Period) else Period(**p) for p in self.periods)
        object.__setattr__(self, "periods", periods)
        if not periods:
            raise ValueError("a scenario needs at least one period")
        if self.days < 1:
            raise ValueError(f"a scenario must last at least one day; {self.years:g} years is {self.days} days: "
                             f"give at least {1 / DAYS_PER_YEAR:.4f} years")
        for name in ("step_days", "metrics_every_days", "checkpoint_every_days", "fragments_every_days"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive whole number of days, got {v!r}")
        if self.snapshot_every_days is not None and (not isinstance(self.snapshot_every_days, int) or self.snapshot_every_days < 1):
            raise ValueError(f"snapshot_every_days must be a positive whole number of days, got {self.snapshot_every_days!r}")
        if not isinstance(self.spin_up_days, int) or self.spin_up_days < 0:
            raise ValueError(f"spin_up_days must be ≥ 0 days, got {self.spin_up_days!r}")
        get_site(self.site)  # an unknown site fails here, with the known ones
        if self.size is not None and (not isinstance(self.size, int) or self.size < 16):
            raise ValueError(f"size must be a whole number of voxels ≥ 16, got {self.size!r}")
        if self.size is not None and self.input is not None:
            raise ValueError(f"size={self.size} is the edge of a phantom; a run from input {self.input!r} keeps the "
                             "scan's shape: leave size out (crop the scan to change its extent)")
        if self.voxel_size_um is not None:
            vs = self.voxel_size_um
            if not (isinstance(vs, (int, float)) and math.isfinite(vs) and vs > 0):
                raise ValueError(f"voxel_size_um must be a positive number of micrometres, got {vs!r}")
            if not MIN_VOXEL_UM <= vs <= MAX_VOXEL_UM:
                lo, hi = ACCURATE_VOXEL_UM
                raise ValueError(f"voxel_size_um={vs} is outside what the model supports ({MIN_VOXEL_UM:g}–"
                                 f"{MAX_VOXEL_UM:g} µm; it is calibrated at {lo:g}–{hi:g} µm)")
            caveat = voxel_size_caveat(vs)
            if caveat and self.input is None:  # a scan's loader warns with the header's value beside it
                warnings.warn(caveat, VoxelSizeWarning, stacklevel=3)
            object.__setattr__(self, "voxel_size_um", float(vs))
        if not isinstance(self.fe_every_days, int) or isinstance(self.fe_every_days, bool) or self.fe_every_days < 0:
            raise ValueError(f"fe_every_days must be a whole number of days ≥ 0 (0: mechanics off), got {self.fe_every_days!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def years(self) -> float:
        """Total simulated time in years."""
        return float(sum(p.years for p in self.periods))

    @property
    def days(self) -> int:
        """Total simulated time in whole days."""
        return whole_days(self.years)

    @property
    def n_steps(self) -> int:
        """Number of remodeling steps; the last is shorter than ``step_days`` when the run's days
        are not a whole number of steps, so that the run ends on its last day."""
        return max(1, int(math.ceil(self.days / self.step_days)))

    def period_at(self, day: float) -> Period:
        """The period in effect on ``day`` (days since the start)."""
        t = 0.0
        for p in self.periods:
            t += p.years * DAYS_PER_YEAR
            if day < t:
                return p
        return self.periods[-1]

    def with_overrides(self, **kw: Any) -> "Scenario":
        """A copy with the given fields replaced (``None`` values are ignored)."""
        kw = {k: v for k, v in kw.items() if v is not None}
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for run.json and TOML)."""
        d = dataclasses.asdict(self)
        d["periods"] = [dataclasses.asdict(p) for p in self.periods]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "scenario") -> "Scenario":
        """Build from plain data, naming unknown or malformed fields."""
        known = {f.name for f in dataclasses.fields(cls)}
        data = dict(data)
        if "period" in data:  # TOML array-of-tables spelling
            data["periods"] = data.pop("period")
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
        periods = data.get("periods")
        if periods is not None:
            if not isinstance(periods, list) or not periods:
                raise ValueError(f"{source}: 'period' must be a non-empty list of tables with preset and years")
            out = []
            for i, p in enumerate(periods):
                if not isinstance(p, Mapping) or set(p) - {"preset", "years"} or "preset" not in p or "years" not in p:
                    raise ValueError(f"{source}: period {i + 1} must have exactly 'preset' and 'years', got {dict(p) if isinstance(p, Mapping) else p!r}")
                out.append(Period(str(p["preset"]), p["years"]))
            data["periods"] = tuple(out)
        return cls(**data)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario TOML file.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For TOML syntax errors and unknown or malformed fields, naming the file and line.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"scenario file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: not valid TOML: {exc}") from None
    # a relative path the scenario names (a period's preset file, the input scan, a region file) is
    # read beside the scenario file when it is there, else where the command runs
    def beside(name: Any) -> Any:
        if isinstance(name, str) and name and not Path(name).is_absolute():
            there = p.parent / name
            if there.exists():
                return str(there.resolve())
        return name

    for period in data.get("period", []) if isinstance(data.get("period"), list) else []:
        preset = period.get("preset") if isinstance(period, dict) else None
        if isinstance(preset, str) and preset.endswith(".toml"):
            period["preset"] = beside(preset)
    if "input" in data:
        data["input"] = beside(data["input"])
    if data.get("compartments") not in (None, *COMPARTMENT_CHOICES):
        data["compartments"] = beside(data["compartments"])
    try:
        return Scenario.from_dict(data, source=str(p))
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        head = msg.split("known fields")[0]
        for key in data:
            if re.search(rf"\b{re.escape(key)}\b", head):
                line = toml_line(text, key)
                msg += f" (line {line})" if line else ""
                break
        raise ValueError(msg if msg.startswith(str(p)) else f"{p}: {msg}") from None


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def scenario_to_toml(scenario: Scenario) -> str:
    """TOML text that :func:`load_scenario` reads back to an equal scenario.

    Examples
    --------
    >>> text = scenario_to_toml(Scenario(name="trt", periods=(Period("trt", 1.5),)))
    >>> print(text[text.index("[[period]]"):], end="")
    [[period]]
    preset = "trt"
    years = 1.5
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "trt.toml"
    ...     _ = path.write_text(text)
    ...     load_scenario(path) == Scenario(name="trt", periods=(Period("trt", 1.5),))
    True
    """
    d = scenario.to_dict()
    periods = d.pop("periods")
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if v is not None]
    for p in periods:
        lines += ["", "[[period]]", f"preset = {_toml_value(p['preset'])}", f"years = {_toml_value(p['years'])}"]
    return "\n".join(lines) + "\n"

