"""Shared command line of the benchmark scripts (each runs one group of `voxelbone bench`)."""

from __future__ import annotations

import argparse
import sys

from voxelbone.bench_cases import bench_cli


def main(group: str, doc: str) -> int:
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--sizes", default=None, help="comma-separated edges (default 128,256,512; --quick: 64,96)")
    ap.add_argument("--backend", choices=["auto", "numpy", "cupy", "all"], default="all")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the JSON record here")
    args = ap.parse_args()
    args.cases, args.compare = group, None
    return bench_cli(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main("kernels", __doc__))
