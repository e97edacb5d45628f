#!/usr/bin/env bash
# The decisive first GPU run of the TensorRT path, as one command that prints a verdict (about 5-9 min).
#
#   bench/gpu_smoke.sh --images DIR --meta CSV [--bundle engines/starter] [--count 500] [--out runs/gpu_smoke]
#
# Needs an NVIDIA GPU and an environment where `python -m screening` works with the GPU extra
# (`make test-gpu` or `pip install -e '.[gpu]'`); PYTHON picks the interpreter (default:
# .venv/bin/python, else python3). The images are any dermoscopy folder with its metadata CSV
# (e.g. ../shared/data/ham10000_dev/images and labels.csv, copied to the GPU machine): the first
# --count of them are compared and timed. Steps, each PASS or FAIL, then one VERDICT line:
#   1 versions          TensorRT, pycuda, ONNX Runtime, driver, GPU
#   2 network           both FP16 models parsed as strongly typed networks; any FP16 shape tensor listed
#   3 build             screen engines build (batch 1..64, tuned for 32, detailed layers);
#                       FP16 vs FP32 layers counted with TensorRT's engine inspector
#   4 verify            screen engines verify on the images
#   5 agreement         screen folder --backend tensorrt vs onnxruntime: top-1, max |dp|, max |drisk|
#   6 models alone      TensorRT engines at batch 8/32/64 (images/s)
#   7 end to end        screen folder --backend tensorrt at batch 8/32/64 on 4 copies of the images
# Everything (logs, CSVs, JSON) lands in --out; the last lines are the figures to copy into
# docs/tensorrt.md.
set -uo pipefail
cd "$(dirname "$0")/.."

IMAGES="" META="" BUNDLE="engines/starter" COUNT=500 OUT="runs/gpu_smoke"
while [ $# -gt 0 ]; do
    case "$1" in
        --images) IMAGES="$2"; shift 2 ;;
        --meta) META="$2"; shift 2 ;;
        --bundle) BUNDLE="$2"; shift 2 ;;
        --count) COUNT="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$IMAGES" ] || [ -z "$META" ]; then
    echo "usage: bench/gpu_smoke.sh --images DIR --meta CSV [--bundle DIR] [--count N] [--out DIR]" >&2
    exit 2
fi
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
SCREEN=("$PY" -m screening)
mkdir -p "$OUT"
RESULTS=()
FAILED=()
START=$(date +%s)

step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, show the output, record PASS/FAIL
    local name="$1"; shift
    local began=$(date +%s)
    echo "== $name: $*"
    "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    local took=$(( $(date +%s) - began ))
    if [ "$rc" -eq 0 ]; then RESULTS+=("PASS $name (${took}s)"); else RESULTS+=("FAIL $name (exit $rc, ${took}s)"); FAILED+=("$name"); fi
    return "$rc"
}

versions() {
    "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("tensorrt", "pycuda", "onnxruntime", "onnx", "onnx_graphsurgeon", "onnxconverter_common", "numpy"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:
        print(name, "NOT AVAILABLE:", " ".join(str(exc).split()))
try:
    import pycuda.driver as cuda
    cuda.init()
    print("CUDA driver API", cuda.get_driver_version(), "| pycuda built for CUDA", ".".join(map(str, cuda.get_version())))
except Exception as exc:
    print("CUDA through pycuda: NOT AVAILABLE:", " ".join(str(exc).split()))
from screening.engines.environment import detect_environment
env = detect_environment()
print("GPU", env.gpu.describe() if env.gpu else "none", "| problem:", env.problem or "none")
raise SystemExit(1 if env.problem else 0)
EOF
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || true
}

fp16_networks() {  # convert both models as the build does, then parse them as TensorRT will
    "$PY" - "$BUNDLE" "$OUT/fp16" <<'EOF' || return 1
import sys
from pathlib import Path
from screening.engines.fp16 import convert_file
from screening.manifest import load_manifest
bundle, out = Path(sys.argv[1]), Path(sys.argv[2])
manifest = load_manifest(bundle)
for spec in (manifest.segmenter, manifest.classifier):
    notes = convert_file(bundle / spec.file, out / spec.file.replace(".onnx", ".fp16.onnx"))
    print(f"converted {spec.file}: {len(notes)} converter notes")
EOF
    "$PY" bench/trt_inspect.py network "$OUT"/fp16/*.fp16.onnx --out "$OUT/network.json"
}

build() {
    "${SCREEN[@]}" engines build --bundle "$BUNDLE" --max-batch 64 --opt-batch 32 --detailed-layers || return 1
    local folder
    folder=$("$PY" -c "import sys; from screening.backends.tensorrt import probe_tensorrt; from screening.manifest import load_manifest; \
p = probe_tensorrt(sys.argv[1], load_manifest(sys.argv[1])); print(p.engine_dir or ''); sys.exit(0 if p.usable else 1)" "$BUNDLE") || return 1
    "$PY" bench/trt_inspect.py engine "$folder"/segmenter.plan "$folder"/classifier.plan --out "$OUT/layers.json"
}

agreement() {
    local ok=0
    for backend in onnxruntime tensorrt; do
        rm -f "$OUT/$backend.csv" "$OUT/$backend.csv.journal"
        "${SCREEN[@]}" folder "$OUT/subset/images" --meta "$OUT/subset/patients.csv" --bundle "$BUNDLE" \
            --backend "$backend" --batch-size 32 --out "$OUT/$backend.csv" --quiet || ok=1
    done
    [ "$ok" -eq 0 ] || return 1
    "$PY" bench/compare_results.py "$OUT/onnxruntime.csv" "$OUT/tensorrt.csv" --out "$OUT/agreement.json"
}

end_to_end() {
    for batch in 8 32 64; do
        rm -f "$OUT/e2e_$batch.csv" "$OUT/e2e_$batch.csv.journal"
        "${SCREEN[@]}" folder "$OUT/e2e/images" --meta "$OUT/e2e/patients.csv" --bundle "$BUNDLE" \
            --backend tensorrt --batch-size "$batch" --out "$OUT/e2e_$batch.csv" --quiet || return 1
        "$PY" -c "import json, sys; s = json.load(open(sys.argv[1])); \
print(f'end to end, batch {sys.argv[2]:>2}: {s[\"images_per_s\"]:.1f} images/s ({s[\"elapsed_s\"]:.1f} s, start-up included)')" \
            "$OUT/e2e_$batch.summary.json" "$batch" || return 1
    done
}

step versions versions
step network fp16_networks
"$PY" bench/smoke_subset.py --images "$IMAGES" --meta "$META" --count "$COUNT" --out "$OUT/subset" >/dev/null
"$PY" bench/smoke_subset.py --images "$IMAGES" --meta "$META" --count "$COUNT" --copies 4 --out "$OUT/e2e" >/dev/null
if step build build; then
    step verify "${SCREEN[@]}" engines verify --bundle "$BUNDLE" --images "$OUT/subset/images" \
        --meta "$OUT/subset/patients.csv"
    step agreement agreement
    step models_alone "$PY" bench/trt_throughput.py --bundle "$BUNDLE" --batch-sizes 8 32 64 --seconds 5 \
        --out "$OUT/models_alone.json"
    step end_to_end end_to_end
fi

echo
echo "== summary ($(( $(date +%s) - START )) s, $(date -u +%Y-%m-%dT%H:%M:%SZ), logs in $OUT)"
printf '%s\n' "${RESULTS[@]}"
grep -h "FP16 shape tensors\|layers, by output type\|top-1 agreement\|images/s" "$OUT"/*.log 2>/dev/null | sed 's/^/  /'
if [ ${#FAILED[@]} -eq 0 ]; then
    echo "VERDICT: PASS - TensorRT FP16 engines build, agree with ONNX Runtime and run end to end"
    exit 0
fi
echo "VERDICT: FAIL - ${FAILED[*]}"
exit 1
