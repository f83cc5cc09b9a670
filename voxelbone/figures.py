"""The figures of a run folder (plots and 3-D renders), each drawn on its own.

A figure that fails (a missing OpenGL context, a full disk, a bug in one scene) is
reported by name with its error and does not stop the others; the run's results are
already final when figures are drawn (see :func:`voxelbone.simulate.simulate`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence, TextIO

from . import plots, render
from .runfolder import RunFolder, StudyFolder

__all__ = ["FigureReport", "draw_figures", "draw_replicate_figures", "draw_run_figures"]

#: A figure: drawing it writes and returns one file or several.
Figure = Callable[[], "Path | Sequence[Path]"]


@dataclass
class FigureReport:
    """What drawing a set of figures gave: the files written and the figures that failed."""

    written: list[Path] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def draw_figures(figures: Mapping[str, Figure], *, stream: TextIO | None = None) -> FigureReport:
    """Draw each figure in turn; a failure is recorded (and printed on ``stream``), not raised.

    Parameters
    ----------
    figures
        Name → function drawing the figure.
    stream
        Where failures are reported (default ``sys.stderr``).
    """
    stream = stream if stream is not None else sys.stderr
    report = FigureReport()
    for name, draw in figures.items():
        try:
            out = draw()
        except Exception as exc:  # one figure's failure is reported, the others are drawn
            report.errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"voxelbone: figure {name!r} not drawn: {report.errors[name]}", file=stream, flush=True)
            continue
        report.written.extend([out] if isinstance(out, Path) else list(out))
    return report


def draw_run_figures(folder: RunFolder, *, with_plots: bool = True, with_renders: bool = True,
                     options: render.RenderOptions | None = None, stream: TextIO | None = None) -> FigureReport:
    """Every plot and render of a run folder, into its ``plots/`` and ``renders/``.

    Parameters
    ----------
    folder
        The run's folder (metrics, courses and snapshots are read from it).
    with_plots, with_renders
        Which kinds to draw.
    options
        Image size and detail of the renders.
    stream
        Where failures are reported (default ``sys.stderr``).

    Returns
    -------
    FigureReport
        Files written, and ``{figure name: error}`` of the figures that failed.
    """
    figures: dict[str, Figure] = {}
    errors: dict[str, str] = {}
    for kind, wanted, make in (("(plots)", with_plots, lambda: plots.run_plots(folder)),
                               ("(renders)", with_renders, lambda: render.run_renders(folder, options=options))):
        if not wanted:
            continue
        try:
            figures.update(make())
        except Exception as exc:  # e.g. no snapshots to render: reported like a figure
            errors[kind] = f"{type(exc).__name__}: {exc}"
            print(f"voxelbone: {kind} not drawn: {errors[kind]}", file=stream or sys.stderr, flush=True)
    report = draw_figures(figures, stream=stream)
    report.errors = {**errors, **report.errors}
    return report


def draw_replicate_figures(study: StudyFolder, *, stream: TextIO | None = None) -> FigureReport:
    """The plots of a set of replicates (metrics with 95 % bands) into ``study``'s ``plots/``.

    Each replicate's own figures are drawn in its run folder by the run itself.
    """
    return draw_figures(plots.replicate_plots(study), stream=stream)
