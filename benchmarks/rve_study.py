"""Representative-volume study: replicates at several cube edges, the 95 % interval of each metric's 1-year change.

    python benchmarks/rve_study.py [OUT]      (default OUT: results/rve)

Runs 3 replicates of postmenopausal_untreated (lumbar spine, 30 µm voxels, 1 year, step 10
days, metrics every 90 days) at 48³, 80³, 128³, 160³ and 192³ voxels (1.44 to 5.76 mm) on the
local Dask cluster (2 workers), prints the Markdown table of docs/user-guide/outputs.md and
writes OUT/rve.json (copied to benchmarks/rve_<date>.json as the record). The table of
voxelbone.rve.RVE_EDGE_MM is filled from its output; its wall time is in the record.
"""

import sys
from pathlib import Path

from voxelbone.rve import NOT_STUDIED, RVE_EDGE_MM, markdown_table, rve_study

SIZES = (48, 80, 128, 160, 192)
REPLICATES = 3

if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/rve")
    result = rve_study(out, SIZES, REPLICATES, voxel_size_um=30.0, years=1.0, step_days=10, metrics_every_days=90,
                       backend="numpy", n_workers=2)
    print(result["study"])
    print(markdown_table(result, [*RVE_EDGE_MM, *(m for m in NOT_STUDIED if m not in RVE_EDGE_MM)]))
    print(f"wall time {result['wall_s'] / 60:.1f} min")
