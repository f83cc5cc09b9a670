"""Benchmark group 'scenario' of `voxelbone bench` (see voxelbone/bench_cases.py); prints a table, --json writes a record."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("scenario", __doc__))
