#!/usr/bin/env bash
# voxelbone — the one prepared check for a machine with an NVIDIA GPU (H100/H200).
#
# Runs, each part time-boxed, the whole under 8 minutes:
#   1. setup       a Python that imports voxelbone from this checkout (see "Python" below)
#   2. probe       nvidia-smi, the backend voxelbone resolves, CuPy/CUDA versions
#   3. gpu-tests   every GPU-marked test in tests/ (pytest -m gpu), the long-horizon test excepted
#   4. long-horizon  tests/test_device_path.py::test_gpu_equals_numpy_bit_for_bit_over_three_years
#                  (1095 simulated days, CuPy against the NumPy twin, bit for bit)
#   5. bench       voxelbone bench at 256³ and 512³: the remodeling step and its kernels
#                  (with the bandwidth floor), the metrics on the device, and the micro-FE
#                  cases (fe.*) when the package has them
# and writes into ${OUT:-benchmarks/device}:
#   device_check.json   one record: machine, commit, each part's status/time/summary and the
#                       bench records (environment + measurements) merged in
#   device_check.log    everything printed
#   bench_<size>.json   the bench records themselves (one `voxelbone bench` per size)
# then prints a summary. Exit status: 0 when every part that ran passed, 1 otherwise,
# 2 when it cannot start (no GPU without --dry-run, no usable Python).
#
# Usage, from the repository root:
#   benchmarks/device_check.sh             on a GPU machine
#   benchmarks/device_check.sh --dry-run   anywhere: NumPy backend, 48³/64³, GPU tests skip
#   (VB_DRY_RUN=1 is the same as --dry-run)
#
# Python: $PYTHON (default python3). On the nvidia-h200 machines of this workplace python3 is
# 3.12 with CuPy 14 (cuda13x), NumPy, SciPy, Numba, scikit-image, tifffile, tqdm and pytest
# already installed, and no package registry is reachable; voxelbone is then used from this
# checkout (PYTHONPATH, no install), and what it lacks there (edt for the exact CPU local
# thickness the device results are checked against) comes from a wheel folder:
#   here, once:  echo /.whl/ >> .git/info/exclude
#                python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#                  --platform manylinux2014_x86_64 -d .whl edt
#   device tool: run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=540)
# $WHEELS (default .whl) names the folder; its wheels are installed with --no-index --no-deps
# into a private target directory. With a registry, VB_VENV=1 instead makes a virtual
# environment (system site packages visible, so a preinstalled CuPy is kept) and runs
# pip install -e ".[dev,gpu]" in it.
#
# Time boxes (seconds; each part also stops at the overall deadline, VB_DEADLINE_S=470):
# probe 30, gpu-tests 110, long-horizon 45, bench 256³ 90, bench 512³ 190 (what is left).
# A bench part cut by its box leaves no record of that size: VB_SIZES="256" or
# VB_REPEATS=1 shorten it. The phantom (kernels, morphometry) and the random structure
# (metrics) are built on the CPU once per size.

set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)

DRY=${VB_DRY_RUN:-0}
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        -h|--help) sed -n '2,48p' "$0"; exit 0 ;;
        *) echo "device_check: unknown argument $arg (use --dry-run or nothing)" >&2; exit 2 ;;
    esac
done

OUT=${OUT:-benchmarks/device}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/device_check.log"
PARTS="$OUT/.parts.jsonl"
: > "$LOG"
: > "$PARTS"
exec > >(tee -a "$LOG") 2>&1

T0=$(date +%s)
DEADLINE_S=${VB_DEADLINE_S:-470}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

if [ "$DRY" = 1 ]; then
    MODE=dry-run
    BACKEND=numpy
    SIZES=${VB_SIZES:-48 64}
    REPEATS=${VB_REPEATS:-1}
    export VOXELBONE_BACKEND=numpy
else
    MODE=device
    BACKEND=cupy
    SIZES=${VB_SIZES:-256 512}
    REPEATS=${VB_REPEATS:-3}
fi
echo "== voxelbone device check ($MODE) $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

elapsed() { echo $(( $(date +%s) - T0 )); }

# box SECONDS: the part's time box, cut to what is left before the overall deadline
box() {
    local want=$1 left=$(( DEADLINE_S - $(elapsed) ))
    [ "$left" -lt "$want" ] && want=$left
    echo "$want"
}

# record NAME STATUS SECONDS SUMMARY
record() {
    "$PY_RECORD" - "$1" "$2" "$3" "$4" >> "$PARTS" <<'EOF'
import json, sys
name, status, seconds, summary = sys.argv[1:5]
print(json.dumps({"part": name, "status": status, "seconds": int(seconds), "summary": summary}))
EOF
}

# part NAME BOX COMMAND...: run with a time box; status passed / failed / timeout / skipped
FAILED=0
part() {
    local name=$1 want=$2; shift 2
    local limit; limit=$(box "$want")
    if [ "$limit" -lt 5 ]; then
        echo "-- $name: skipped (overall deadline reached)"
        record "$name" skipped 0 "overall deadline of ${DEADLINE_S} s reached"
        return 0
    fi
    echo "-- $name (time box ${limit} s): $*"
    local t=$(date +%s) rc
    timeout --kill-after=10 "$limit" "$@" > "$OUT/.part.out" 2>&1
    rc=$?
    cat "$OUT/.part.out"
    local dt=$(( $(date +%s) - t )) status=passed
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=timeout; FAILED=1
    elif [ $rc -ne 0 ]; then status=failed; FAILED=1; fi
    local summary
    summary=$(grep -E "(passed|failed|skipped|errors?|deselected|no tests ran)( in [0-9.]+s)?|^record: |^\{" "$OUT/.part.out" | tail -n 1)
    [ -z "$summary" ] && summary=$(tail -n 1 "$OUT/.part.out")
    [ "$status" = timeout ] && summary="stopped after ${limit} s; last line: $summary"
    echo "-- $name: $status in ${dt} s"
    record "$name" "$status" "$dt" "$summary"
    rm -f "$OUT/.part.out"
}

# ---------------------------------------------------------------------------- 1. setup
PY=${PYTHON:-python3}
PY_RECORD=$PY
if ! command -v "$PY" > /dev/null 2>&1; then
    echo "device_check: no Python interpreter '$PY' (set PYTHON)" >&2
    exit 2
fi

setup() {
    set -e
    if [ "${VB_VENV:-0}" = 1 ]; then
        "$PY" -m venv --system-site-packages "$REPO/.venv-device"
        "$REPO/.venv-device/bin/python" -m pip install -q -e "$REPO[dev,gpu]"
    fi
    local wheels=${WHEELS:-.whl}
    if compgen -G "$wheels/*.whl" > /dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/voxelbone-device-site "$wheels"/*.whl
        echo "installed offline: $(ls "$wheels" | tr '\n' ' ')"
    fi
}
SETUP_T=$(date +%s)
if (setup); then SETUP_STATUS=passed; else SETUP_STATUS=failed; FAILED=1; fi
if [ "${VB_VENV:-0}" = 1 ] && [ -x "$REPO/.venv-device/bin/python" ]; then PY="$REPO/.venv-device/bin/python"; fi
[ -d /tmp/voxelbone-device-site ] && export PYTHONPATH="/tmp/voxelbone-device-site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"   # voxelbone and kernels/ from this checkout
MISSING=$("$PY" - <<'EOF' || echo "(the import check itself failed)"
import importlib.util
need = ["numpy", "scipy", "numba", "skimage", "edt", "tifffile", "tqdm", "pytest", "voxelbone"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
EOF
)
if [ -n "$MISSING" ]; then
    SETUP_STATUS=failed; FAILED=1
    echo "missing Python packages: $MISSING (carry them as wheels in ${WHEELS:-.whl}, see the header)"
fi
record setup "$SETUP_STATUS" $(( $(date +%s) - SETUP_T )) "python $("$PY" -c 'import sys; print(sys.version.split()[0])'); missing: ${MISSING:-none}"
if ! "$PY" -c "import voxelbone" 2> /dev/null; then
    echo "device_check: voxelbone does not import with $PY; see the log" >&2
    exit 2
fi

# ---------------------------------------------------------------------------- 2. probe
if [ "$DRY" != 1 ]; then
    if ! nvidia-smi -L > /dev/null 2>&1; then
        echo "device_check: no NVIDIA GPU answers (nvidia-smi -L); run with --dry-run on a CPU machine" >&2
        record probe failed 0 "no GPU (nvidia-smi -L failed)"
        exit 2
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
fi
part probe 30 "$PY" - <<EOF
import json
from voxelbone.backend import get_backend
be = get_backend("$BACKEND")
print(json.dumps({"backend": be.name, "device": be.device, **{k: str(v) for k, v in be.details.items()}}))
EOF

# ---------------------------------------------------------------------------- 3./4. tests
GPU_TEST_FILES="tests"
# tests/test_metrics.py imports ITK at module level (its BoneMorphometry reference); ITK's wheels
# are too large to carry, so without it the file is left out and the summary says so
if ! "$PY" -c "import itk" > /dev/null 2>&1; then
    GPU_TEST_FILES="$GPU_TEST_FILES --ignore=tests/test_metrics.py"
    echo "-- note: itk is not installed: tests/test_metrics.py (its GPU tests included) is not collected;"
    echo "   the device metrics are still checked against NumPy by tests/test_device_path.py"
    record note-test_metrics skipped 0 "tests/test_metrics.py not collected: itk not installed"
fi
LONG=tests/test_device_path.py::test_gpu_equals_numpy_bit_for_bit_over_three_years
# shellcheck disable=SC2086
part gpu-tests 110 "$PY" -m pytest -m gpu -q -p no:cacheprovider -rs --continue-on-collection-errors \
    --deselect "$LONG" $GPU_TEST_FILES
part long-horizon 45 "$PY" -m pytest -q -p no:cacheprovider -rs "$LONG"

# ---------------------------------------------------------------------------- 5. bench
FE_CASES=$("$PY" -c "from voxelbone.bench_cases import CASES; print(','.join(sorted({c.name for g, c in CASES if g == 'fe' or c.name.startswith('fe.')})))" 2> /dev/null)
CASES="kernels,tb_th.local_thickness,tb_sp.local_thickness,euler,surface,morphometry"
if [ -n "$FE_CASES" ]; then
    CASES="$CASES,$FE_CASES"
else
    echo "-- bench: no micro-FE cases (fe.*) in this version"
    record bench-fe skipped 0 "no fe.* benchmark cases in this version"
fi
i=0
for size in $SIZES; do
    i=$((i + 1))
    want=90; [ "$i" -gt 1 ] && want=190
    part "bench-$size" "$want" "$PY" -m voxelbone bench --sizes "$size" --backend "$BACKEND" --cases "$CASES" \
        --repeats "$REPEATS" --json "$OUT/bench_$size.json"
done

# ---------------------------------------------------------------------------- record + summary
"$PY" - "$OUT" "$MODE" "$(elapsed)" <<'EOF'
import glob, json, os, platform, subprocess, sys, time

out, mode, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
parts = [json.loads(line) for line in open(os.path.join(out, ".parts.jsonl"), encoding="utf-8") if line.strip()]
bench = {}
for path in sorted(glob.glob(os.path.join(out, "bench_*.json"))):
    try:
        bench[os.path.basename(path)[:-5]] = json.load(open(path, encoding="utf-8"))
    except (OSError, ValueError) as exc:
        bench[os.path.basename(path)[:-5]] = {"error": str(exc)}
try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None
except OSError:
    commit = None
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip() or None
except OSError:
    gpu = None
record = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "mode": mode, "git_commit": commit, "gpu": gpu,
          "python": platform.python_version(), "total_seconds": total, "parts": parts, "bench": bench}
with open(os.path.join(out, "device_check.json"), "w", encoding="utf-8") as fh:
    json.dump(record, fh, indent=1, default=str)

print()
print(f"== summary ({mode}, {total} s, commit {(commit or '?')[:9]}, GPU: {gpu or 'none'})")
for p in parts:
    print(f"  {p['part']:<20} {p['status']:<8} {p['seconds']:>4} s  {p['summary'][:90]}")
rows = []
for name, rec in bench.items():
    for m in rec.get("measurements", []):
        if m.get("impl") != "voxelbone":
            continue
        if m.get("skipped"):
            rows.append(f"  {m['case']:<24} {m['size']:>4}³ {m['backend']:<6} skipped: {m['skipped']}")
            continue
        floor = f"  ×floor {m['ratio_to_floor']:.2f}" if m.get("ratio_to_floor") else ""
        timing = (m.get("extra") or {}).get("timing", "host clock")
        rows.append(f"  {m['case']:<24} {m['size']:>4}³ {m['backend']:<6} {m['median_s'] * 1e3:10.2f} ms{floor}  [{timing}]")
if rows:
    print("  bench (median of the repeats):")
    print("\n".join(rows))
bw = next((r["environment"].get("device_copy_bandwidth_bytes_per_s") for r in bench.values()
           if r.get("environment", {}).get("device_copy_bandwidth_bytes_per_s")), None)
if bw:
    print(f"  device copy bandwidth: {bw / 1e9:.0f} GB/s (bytes read + written)")
print(f"record: {os.path.join(out, 'device_check.json')}")
EOF
rm -f "$PARTS"
echo "log: $LOG"
exit $FAILED
