"""Units shared by every layer: one definition of each time constant.

Inside the model time runs in days; at the interface (scenarios, tables, plots) in
years. Every conversion goes through these names.
"""

from __future__ import annotations

__all__ = ["DAYS_PER_YEAR", "HOURS_PER_DAY", "days_to_years", "whole_days", "years_to_days"]

#: Julian year, the convention of the remodeling literature's annual rates.
DAYS_PER_YEAR: float = 365.25

#: Hours in a day (the cell layer integrates hourly).
HOURS_PER_DAY: int = 24


def days_to_years(days: float) -> float:
    """Convert days to (Julian) years.

    Examples
    --------
    >>> days_to_years(730.5)
    2.0
    """
    return float(days) / DAYS_PER_YEAR


def years_to_days(years: float) -> float:
    """Convert (Julian) years to days.

    Examples
    --------
    >>> years_to_days(0.5)
    182.625
    """
    return float(years) * DAYS_PER_YEAR


def whole_days(years: float) -> int:
    """The whole days a run of ``years`` lasts (its last step ends on that day).

    Examples
    --------
    >>> whole_days(1.0)
    365
    >>> whole_days(3.0)
    1096
    """
    return int(round(years_to_days(years)))
