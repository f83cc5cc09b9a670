"""Therapy presets: regimens as data, turned into hormone courses.

A preset is a TOML file naming a population (baseline levels), the drugs with dose,
interval, route and optional start/duration, the evidence behind it and its evidence level
(``clinical`` where human bone outcomes exist, ``extrapolated`` where only the mechanism is
known — then ``mechanism`` says which), and optionally ``load_scale``, the mechanical load
relative to habitual loading (default 1; the disuse presets ``bed_rest`` and ``spaceflight``
lower it; read only by runs with mechanics on). The presets shipped with the package live beside
this module; a user's own file works the same way (``load_preset("my_regimen.toml")``).

.. code-block:: toml

    title = "Testosterone replacement"
    population = "hypogonadal_man"
    evidence = "clinical"
    summary = "testosterone cypionate 140 mg IM weekly"
    references = ["Snyder PJ et al. 2017 JAMA Intern Med 177:471"]

    [[drug]]
    name = "testosterone_cypionate"
    dose_mg = 140
    every_days = 7
    route = "im"
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from difflib import get_close_matches
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .._toml import toml_line, tomllib
from ..hormones import STEPS_PER_DAY, HormoneCourse, Population, Segment, build_course, state_from_mapping
from ..pharmacokinetics import Dosing, DrugSpec
from ..units import DAYS_PER_YEAR

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = [
    "Preset",
    "PresetError",
    "check_load_needs_mechanics",
    "course_for_periods",
    "drug_specs",
    "list_presets",
    "load_preset",
    "populations",
]

EVIDENCE = ("clinical", "extrapolated")
_PRESET_KEYS = {"title", "population", "evidence", "summary", "mechanism", "references", "drug", "population_overrides",
                "load_scale"}
_DRUG_KEYS = {"name", "dose_mg", "every_days", "route", "start_day", "duration_days"}
_DATA_FILES = {"drugs.toml", "populations.toml"}


class PresetError(ValueError):
    """A preset (or its data files) is malformed; the message names the file, field and line."""


@dataclass(frozen=True)
class DrugDose:
    """A drug of a preset and its regimen."""

    dosing: Dosing
    spec: DrugSpec


@dataclass(frozen=True)
class Preset:
    """A therapy preset (see the module docstring for the file format)."""

    name: str
    title: str
    population: Population
    evidence: str
    summary: str
    drugs: tuple[DrugDose, ...]
    references: tuple[str, ...]
    mechanism: str = ""
    source: str = ""
    #: Mechanical load relative to habitual loading (1); disuse < 1. Read only when a run
    #: has mechanics on (``Scenario.fe_every_days``; :mod:`voxelbone.remodel.mechanostat`).
    load_scale: float = 1.0

    def segment(self, start_day: float, end_day: float) -> Segment:
        """This preset as one period of a course (drug times relative to the period start)."""
        dosings = tuple(
            (replace(d.dosing, start_day=start_day + d.dosing.start_day), d.spec) for d in self.drugs
        )
        return Segment(self.population, dosings, start_day, end_day)

    def hormone_course(self, days: float, steps_per_day: int = STEPS_PER_DAY) -> HormoneCourse:
        """Hormone course of this preset held for ``days``."""
        return build_course([self.segment(0.0, days)], days, steps_per_day)


def _err(source: str, text: str, key: str, msg: str, occurrence: int = 0) -> PresetError:
    line = toml_line(text, key, occurrence)
    where = f"{source}, line {line}" if line else source
    return PresetError(f"{where}: {msg}")


def _read_toml(path: Path | Any, source: str) -> tuple[dict[str, Any], str]:
    text = path.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{source}: not valid TOML: {exc}") from None


def _data_dir() -> Any:
    return resources.files(__name__)


@functools.cache
def drug_specs() -> dict[str, DrugSpec]:
    """The drug database (``drugs.toml``)."""
    data, text = _read_toml(_data_dir() / "drugs.toml", "drugs.toml")
    out = {}
    for name, d in data.items():
        try:
            out[name] = DrugSpec(
                name=name, target=d["target"], absorption_half_life_days=float(d["absorption_half_life_days"]),
                elimination_half_life_days=float(d["elimination_half_life_days"]),
                level_per_mg_per_day=float(d["level_per_mg_per_day"]), routes=tuple(d["routes"]),
                description=d.get("description", ""), references=tuple(d.get("references", ())), ic50=d.get("ic50"),
            )
        except KeyError as exc:
            raise _err("drugs.toml", text, name, f"drug {name} lacks field {exc.args[0]}") from None
    return out


@functools.cache
def populations() -> dict[str, Population]:
    """The populations (``populations.toml``)."""
    data, text = _read_toml(_data_dir() / "populations.toml", "populations.toml")
    out = {}
    for name, d in data.items():
        base = state_from_mapping(d, f"populations.toml [{name}]")
        out[name] = Population(
            name=name, description=d.get("description", ""), baseline=base, adapted_to=d.get("adapted_to", name),
            years_since_menopause=d.get("years_since_menopause"),
            transition_from_estradiol_pg_ml=d.get("transition_from_estradiol_pg_ml"),
            transition_time_constant_years=float(d.get("transition_time_constant_years", 0.4)),
            pth_trend_per_year=float(d.get("pth_trend_per_year", 0.0)),
            il6_trend_per_year=float(d.get("il6_trend_per_year", 0.0)),
            bone_deficit=d.get("bone_deficit", 0.0) if d.get("bone_deficit") == "equilibrium" else float(d.get("bone_deficit", 0.0)),
            bone_deficit_per_year_since_menopause=float(d.get("bone_deficit_per_year_since_menopause", 0.0)),
            references=tuple(d.get("references", ())),
        )
    for name, p in out.items():
        if p.adapted_to not in out:
            raise PresetError(f"populations.toml [{name}]: adapted_to names unknown population {p.adapted_to!r}")
    return out


def _builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in _data_dir().iterdir()
                  if p.name.endswith(".toml") and p.name not in _DATA_FILES)


def _parse(data: dict[str, Any], text: str, name: str, source: str) -> Preset:
    unknown = sorted(set(data) - _PRESET_KEYS)
    if unknown:
        raise _err(source, text, unknown[0], f"unknown field {unknown[0]!r}; a preset has {', '.join(sorted(_PRESET_KEYS))}")
    for key in ("title", "population", "evidence", "summary"):
        if key not in data:
            raise PresetError(f"{source}: missing field {key!r}")
        if not isinstance(data[key], str) or not data[key].strip():
            raise _err(source, text, key, f"{key} must be a non-empty string")
    pops = populations()
    if data["population"] not in pops:
        close = get_close_matches(data["population"], pops, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise _err(source, text, "population", f"unknown population {data['population']!r}{hint}; known: {', '.join(pops)}")
    pop = pops[data["population"]]
    overrides = data.get("population_overrides", {})
    if overrides:
        allowed = {"years_since_menopause", "pth_pg_ml", "il6_pg_ml", "il1_pg_ml", "tnf_pg_ml", "cortisol_ug_dl",
                   "igf1_ng_ml", "testosterone_ng_dl", "estradiol_pg_ml"}
        bad = sorted(set(overrides) - allowed)
        if bad:
            raise _err(source, text, bad[0], f"population_overrides cannot set {bad[0]!r}; allowed: {', '.join(sorted(allowed))}")
        base = {h: getattr(pop.baseline, h) for h in pop.baseline.__dataclass_fields__}
        base.update({k: v for k, v in overrides.items() if k in base})
        pop = replace(pop, baseline=state_from_mapping(base, f"{source} population_overrides"),
                      years_since_menopause=overrides.get("years_since_menopause", pop.years_since_menopause))
    if data["evidence"] not in EVIDENCE:
        raise _err(source, text, "evidence", f"evidence must be one of {', '.join(EVIDENCE)}, got {data['evidence']!r}")
    if data["evidence"] == "extrapolated" and not str(data.get("mechanism", "")).strip():
        raise PresetError(f"{source}: an extrapolated preset must state the mechanism it relies on (field 'mechanism')")
    specs = drug_specs()
    drugs = []
    raw_drugs = data.get("drug", [])
    if not isinstance(raw_drugs, list):
        raise _err(source, text, "drug", "drugs are given as [[drug]] tables")
    for i, d in enumerate(raw_drugs):
        bad = sorted(set(d) - _DRUG_KEYS)
        if bad:
            raise _err(source, text, bad[0], f"drug {i + 1}: unknown field {bad[0]!r}; a drug has {', '.join(sorted(_DRUG_KEYS))}")
        for key in ("name", "dose_mg", "every_days", "route"):
            if key not in d:
                raise _err(source, text, "drug", f"drug {i + 1}: missing field {key!r}", occurrence=i)
        if d["name"] not in specs:
            close = get_close_matches(str(d["name"]), specs, n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise _err(source, text, "name", f"drug {i + 1}: unknown drug {d['name']!r}{hint}", occurrence=i)
        spec = specs[d["name"]]
        if d["route"] not in spec.routes:
            raise _err(source, text, "route", f"drug {i + 1}: {spec.name} is given {' or '.join(spec.routes)}, not {d['route']!r}", occurrence=i)
        try:
            dosing = Dosing(spec.name, float(d["dose_mg"]), float(d["every_days"]), d["route"],
                            float(d.get("start_day", 0.0)), None if d.get("duration_days") is None else float(d["duration_days"]))
        except (TypeError, ValueError) as exc:
            field_name = next((k for k in ("dose_mg", "every_days", "duration_days", "start_day") if k in str(exc)), "drug")
            raise _err(source, text, field_name, f"drug {i + 1}: {exc}", occurrence=i) from None
        drugs.append(DrugDose(dosing, spec))
    refs = data.get("references", [])
    if not isinstance(refs, list) or not refs:
        raise _err(source, text, "references", "a preset needs at least one reference (the evidence behind it)")
    load_scale = data.get("load_scale", 1.0)
    if isinstance(load_scale, bool) or not isinstance(load_scale, (int, float)) or not 0.0 <= load_scale <= 5.0:
        raise _err(source, text, "load_scale", f"load_scale must be a number in [0, 5] (1 = habitual load), got {load_scale!r}")
    return Preset(name=name, title=data["title"], population=pop, evidence=data["evidence"], summary=data["summary"],
                  drugs=tuple(drugs), references=tuple(refs), mechanism=data.get("mechanism", ""), source=source,
                  load_scale=float(load_scale))


@functools.cache
def _load_builtin(name: str) -> Preset:
    path = _data_dir() / f"{name}.toml"
    data, text = _read_toml(path, f"{name}.toml")
    return _parse(data, text, name, f"preset {name} ({name}.toml)")


def load_preset(name_or_path: str | Path) -> Preset:
    """A preset by name (shipped) or from a TOML file.

    Raises
    ------
    PresetError
        For an unknown name (listing close matches) or a malformed file (naming the field
        and line).

    Examples
    --------
    >>> trt = load_preset("trt")
    >>> trt.population.name, trt.evidence, [d.spec.name for d in trt.drugs]
    ('hypogonadal_man', 'clinical', ['testosterone_cypionate'])
    >>> load_preset("trtt")
    Traceback (most recent call last):
    ...
    voxelbone.presets.PresetError: unknown preset 'trtt'; did you mean trt? (run 'voxelbone presets' for the list)
    """
    key = str(name_or_path)
    if key.endswith(".toml") or Path(key).is_file():
        path = Path(key)
        if not path.is_file():
            raise FileNotFoundError(f"preset file not found: {path}")
        data, text = _read_toml(path, str(path))
        return _parse(data, text, path.stem, str(path))
    names = _builtin_names()
    if key not in names:
        close = get_close_matches(key, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PresetError(f"unknown preset {key!r}{hint} (run 'voxelbone presets' for the list)")
    return _load_builtin(key)


def check_load_needs_mechanics(scenario: Scenario) -> None:
    """Refuse a scenario whose preset changes the mechanical load while mechanics is off.

    A preset's ``load_scale`` acts only through load-driven remodelling (micro-FE every
    ``fe_every_days``); with mechanics off a disuse preset such as ``bed_rest`` would run as
    its hormones alone and report a disuse scenario without disuse.

    Raises
    ------
    ValueError
        A period's preset has ``load_scale`` other than 1 and ``scenario.fe_every_days`` is 0;
        the message names the preset, its load and how to turn mechanics on.

    Examples
    --------
    >>> from voxelbone.scenario import Period, Scenario
    >>> check_load_needs_mechanics(Scenario(periods=(Period("bed_rest", 1.0),), fe_every_days=28))
    >>> check_load_needs_mechanics(Scenario(periods=(Period("bed_rest", 1.0),)))
    Traceback (most recent call last):
    ...
    ValueError: preset 'bed_rest' scales the mechanical load to 0.2x habitual, which acts only through load-driven remodelling, and mechanics is off: the run would show its hormones alone. Turn mechanics on: --fe-every-days 28 (fe_every_days = 28 in a scenario file)
    """
    from ..scenario import SUGGESTED_FE_EVERY_DAYS  # noqa: PLC0415 (scenario imports nothing from here)

    if scenario.fe_every_days > 0:
        return
    for period in scenario.periods:
        load = load_preset(period.preset).load_scale
        if load != 1.0:
            raise ValueError(f"preset {period.preset!r} scales the mechanical load to {load:g}x habitual, which acts "
                             "only through load-driven remodelling, and mechanics is off: the run would show its "
                             f"hormones alone. Turn mechanics on: --fe-every-days {SUGGESTED_FE_EVERY_DAYS} "
                             f"(fe_every_days = {SUGGESTED_FE_EVERY_DAYS} in a scenario file)")


def list_presets() -> list[Preset]:
    """Every shipped preset, sorted by name.

    Examples
    --------
    >>> names = [p.name for p in list_presets()]
    >>> "teriparatide" in names and names == sorted(names)
    True
    """
    return [load_preset(n) for n in _builtin_names()]


def course_for_periods(periods: Sequence[tuple[str, float]], steps_per_day: int = STEPS_PER_DAY, extra_days: float = 0.0) -> HormoneCourse:
    """Hormone course of consecutive ``(preset, years)`` periods (drug levels decay across boundaries).

    Examples
    --------
    Half a year before the menopause, then half a year after it, on an hourly grid:

    >>> course = course_for_periods([("premenopausal", 0.5), ("postmenopausal_untreated", 0.5)])
    >>> float(course.days[-1]), course.days.size
    (365.25, 8767)
    >>> round(course.at(30.0).estradiol_pg_ml, 1), round(course.at(300.0).estradiol_pg_ml, 1)
    (101.5, 9.3)
    """
    segments = []
    t = 0.0
    for preset_name, years in periods:
        p = load_preset(preset_name)
        end = t + float(years) * DAYS_PER_YEAR
        segments.append(p.segment(t, end))
        t = end
    return build_course(segments, t + extra_days, steps_per_day)
