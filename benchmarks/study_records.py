"""Shared by the one-year trace studies: run their jobs in worker processes and write their record."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from typing import Any


def run_jobs(run: Callable[[Any], dict[str, Any]], jobs: Sequence[Any], workers: int) -> tuple[list[dict[str, Any]], float, str]:
    """``run`` on every job in ``workers`` spawned processes (one core each); returns the records,
    the wall time (s) and the commit of the source that ran (taken before any record is written,
    which would make it "-dirty")."""
    from voxelbone.runfolder import git_commit  # noqa: PLC0415

    commit = git_commit()
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        records = pool.map(run, jobs, chunksize=1)
    return records, time.perf_counter() - t0, commit


def write_record(path: str | None, records: list[dict[str, Any]], wall_s: float, workers: int, commit: str) -> None:
    """The study's record with its provenance (nothing when ``path`` is None)."""
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"records": records, "wall_s": wall_s, "workers": workers, "git_commit": commit,
                       "date": time.strftime("%Y-%m-%d")}, fh, indent=1)
