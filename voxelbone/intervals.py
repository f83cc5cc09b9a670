"""Confidence intervals of replicate results: the annualised change of a metric and its 95 % interval.

A replicate is one run of a scenario with its own seed (its own starting structure and
remodelling draws). Its effect on a metric is the annualised relative change from its
first to its last metrics row, :func:`annual_change_pct`. Over ``n`` replicates the
effect is reported as the mean with the 95 % confidence interval of the mean from
Student's t distribution (:func:`t_interval`)::

    mean ± t(0.975, n − 1) · s / √n        (s: the sample standard deviation, ddof = 1)

An effect is *resolved* when its interval excludes zero; otherwise the spread between
replicates is larger than the change itself, and the number is reported as unresolved,
never on its own. Two presets run on the same seeds (common random numbers) are compared
by the interval of their per-replicate differences (:func:`paired_interval`), which is
much narrower than the two intervals side by side when the replicates are correlated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["POINT_METRICS", "CONFIDENCE", "Interval", "annual_change_pct", "paired_interval", "t_interval"]

#: Confidence level of every interval voxelbone reports.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """The mean of ``n`` values with its confidence interval ``[low, high]``.

    ``low`` and ``high`` are NaN when the interval is undefined (fewer than two finite
    values).
    """

    mean: float
    low: float
    high: float
    n: int

    @property
    def resolved(self) -> bool:
        """True when the interval excludes zero (the effect is larger than the replicate spread)."""
        return bool(self.low > 0.0 or self.high < 0.0)

    def format(self, spec: str = "+.2f") -> str:
        """``mean [low, high]``, with `` unresolved`` appended when the interval includes zero."""
        text = f"{format(self.mean, spec)} [{format(self.low, spec)}, {format(self.high, spec)}]"
        return text if self.resolved else f"{text} unresolved"


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval of the mean.

    Parameters
    ----------
    values
        One value per replicate. A non-finite value makes the whole interval NaN (a
        replicate whose metric could not be measured is not silently dropped).
    confidence
        Two-sided confidence level (default 0.95).

    Returns
    -------
    Interval
        ``mean ± t((1 + confidence) / 2, n − 1) · s / √n``; ``low``/``high`` NaN for n < 2.

    Examples
    --------
    >>> iv = t_interval([1.0, 2.0, 3.0])
    >>> round(iv.low, 3), round(iv.high, 3), iv.resolved
    (-0.484, 4.484, False)
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if not np.all(np.isfinite(x)):
        return Interval(math.nan, math.nan, math.nan, n)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    # deferred: the CLI imports this module for POINT_METRICS and must answer --help without SciPy's ~0.5 s
    from scipy import stats  # noqa: PLC0415

    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


def paired_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Interval of the mean difference ``b − a`` of paired replicates (the same seed in each pair)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ValueError(f"paired values need one value per replicate in each, got {xa.size} and {xb.size}")
    return t_interval(xb - xa, confidence)


#: Columns that are already a change from day 0 in % (their day-0 value is 0): their annual
#: change is the change in percentage points per year, not a relative change of the column.
POINT_METRICS: frozenset[str] = frozenset({"abmd_pct"})


def annual_change_pct(rows: Sequence[Mapping[str, Any]], key: str) -> float:
    """Annualised change of ``key`` from the first to the last row, in %/yr.

    ``(last − first) / |first| / (year_last − year_first) · 100``, except for the columns of
    :data:`POINT_METRICS` (already a change from day 0 in %), whose change is
    ``(last − first) / (year_last − year_first)`` in percentage points per year. NaN when a
    relative change's first value is zero or either value is not a finite number.

    Examples
    --------
    >>> rows = [{"year": 0.0, "bv_tv": 0.20, "abmd_pct": 0.0}, {"year": 2.0, "bv_tv": 0.19, "abmd_pct": -3.0}]
    >>> round(annual_change_pct(rows, "bv_tv"), 6), annual_change_pct(rows, "abmd_pct")
    (-2.5, -1.5)
    """
    if len(rows) < 2:
        raise ValueError(f"an annual change needs at least two metrics rows, got {len(rows)}")
    first, last = rows[0], rows[-1]
    years = float(last["year"]) - float(first["year"])
    try:
        a, b = float(first[key]), float(last[key])
    except (KeyError, TypeError, ValueError):
        return math.nan
    if years <= 0.0 or not (math.isfinite(a) and math.isfinite(b)):
        return math.nan
    if key in POINT_METRICS:
        return (b - a) / years
    if a == 0.0:
        return math.nan
    return (b - a) / abs(a) / years * 100.0
