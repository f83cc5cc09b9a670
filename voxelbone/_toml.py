"""TOML reading shared by scenarios and presets: the parser and the line of a key.

One place finds the line of a field in a TOML text, so every error about a file's field
(scenario or preset) names the same line.
"""

from __future__ import annotations

import re
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["toml_line", "tomllib"]


def toml_line(text: str, key: str, occurrence: int = 0) -> int | None:
    """1-based line of the ``occurrence``-th ``key = ...`` or ``[key]`` / ``[[key]]`` in ``text``.

    Falls back to the first occurrence when there are fewer; ``None`` when the key is absent.

    Examples
    --------
    >>> text = 'name = "a"\\n\\n[[period]]\\nyears = 2\\n\\n[[period]]\\nyears = 3\\n'
    >>> toml_line(text, "period"), toml_line(text, "years", occurrence=1), toml_line(text, "seed")
    (3, 7, None)
    """
    hits = [i for i, ln in enumerate(text.splitlines(), 1)
            if re.match(rf"\s*{re.escape(key)}\s*=", ln) or ln.strip() in (f"[{key}]", f"[[{key}]]")]
    if not hits:
        return None
    return hits[occurrence] if len(hits) > occurrence else hits[0]
