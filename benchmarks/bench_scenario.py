"""Benchmark group 'scenario' of `voxelbone bench` (cases in voxelbone/bench_cases.py); prints a table, --json writes a record.

Takes the options of `voxelbone bench` (--sizes, --backend, --quick, --repeats, --json).
"""

import sys

from voxelbone.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--cases", "scenario", *sys.argv[1:]]))
