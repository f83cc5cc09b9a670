"""MkDocs hooks: tables generated from the package itself, so the docs cannot drift.

A page may hold these placeholders, each on a line of its own:

``<!-- presets-table -->``
    every therapy preset (title, population, evidence level, regimen), from
    :func:`voxelbone.presets.list_presets`;
``<!-- metric-columns -->``
    every morphometry column of ``metrics.csv`` with its ASBMR name and unit, from
    :class:`voxelbone.metrics.morphometry.Morphometry`;
``<!-- scenario-fields -->``
    every field of :class:`voxelbone.scenario.Scenario` with its default and its
    description from the class docstring.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any


def _presets_table() -> str:
    from voxelbone.presets import list_presets

    rows = ["| preset | title | population | evidence | regimen | mechanism (extrapolated presets) |",
            "|---|---|---|---|---|---|"]
    for p in list_presets():
        rows.append(f"| `{p.name}` | {p.title} | {p.population.name} | {p.evidence} | {p.summary or '—'} "
                    f"| {p.mechanism or '—'} |")
    return "\n".join(rows)


def _docstring_params(doc: str) -> dict[str, str]:
    """``name : type`` entries of a NumPy-style Parameters section and their text."""
    out: dict[str, str] = {}
    section = doc.split("Parameters", 1)[-1]
    section = re.split(r"\n\s*(Returns|Raises|Examples|Notes)\n", section)[0]
    current = None
    for line in section.splitlines():
        m = re.match(r"^\s{4}(\w+) : (.+)$", line)
        if m:
            current = m.group(1)
            out[current] = ""
        elif current and line.strip() and not set(line.strip()) <= {"-"}:
            out[current] = (out[current] + " " + line.strip()).strip()
    return out


def _scenario_fields() -> str:
    from voxelbone.scenario import Scenario

    described = _docstring_params(Scenario.__doc__ or "")
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Scenario):
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = "required"
        if f.name == "periods":
            default = "one period of " + ", ".join(f"{p.preset} for {p.years:g} years" for p in default)
        text = described.get(f.name, "")
        if not text:
            raise ValueError(f"Scenario field {f.name!r} has no entry in the Scenario docstring's Parameters")
        rows.append(f"| `{f.name}` | `{default!r}` | {text} |")
    return "\n".join(rows)


def _metric_columns() -> str:
    from voxelbone.metrics.morphometry import ASBMR, Morphometry

    rows = ["| column | ASBMR name | unit |", "|---|---|---|"]
    for f in dataclasses.fields(Morphometry):
        name, unit = ASBMR.get(f.name, (f.name, ""))
        rows.append(f"| `{f.name}` | {name} | {unit or '—'} |")
    return "\n".join(rows)


_GENERATORS = {"<!-- metric-columns -->": _metric_columns, "<!-- presets-table -->": _presets_table, "<!-- scenario-fields -->": _scenario_fields}


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace each placeholder line with its generated table."""
    for marker, make in _GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
