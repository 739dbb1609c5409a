#!/usr/bin/env bash
# The GPU figures in one call: bench/speed.py's training and inference rows (the rows of
# `make bench` that a GPU changes), bench/scaling.py, and recipes/imdb.toml trained and evaluated
# end to end, on a CUDA machine, each step under a time cap (9 min 30 s in all).
#
# Usage: bash bench/gpu.sh DATA [--out DIR] [--wheels DIR]
#        bash bench/gpu.sh --dry-run [--out DIR]
#
# DATA holds stanfordnlp/imdb and stanfordnlp/sst2 (the mirrors of bench/README.md).
# --out     where the step logs, summary.txt and the IMDB run go (default: $OUT where it is set,
#           else a new temp folder).
# --wheels  a folder of wheels for Python packages the machine lacks; they are installed without
#           an index into a temp folder put on PYTHONPATH (see bench/README.md, "GPU figures").
# --dry-run the same steps on the CPU, on tiny generated data (bench/tiny_mirror.py) and small
#           sizes, in about a minute: it shows every step still runs (make test runs it); its
#           figures mean nothing.
#
# textlstm runs from this checkout (PYTHONPATH), so the machine needs only the dependencies;
# PYTHON (default python3) names the interpreter.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
DRY=0
DATA=""
OUTDIR="${OUT:-}"
WHEELS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUTDIR="$2"; shift ;;
    --wheels) WHEELS="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench/gpu.sh: unknown option $1 (see bash bench/gpu.sh --help)" >&2; exit 2 ;;
    *) DATA="$1" ;;
  esac
  shift
done
if [ "$DRY" = 0 ] && { [ -z "$DATA" ] || [ ! -d "$DATA/stanfordnlp/imdb" ] ||
  [ ! -d "$DATA/stanfordnlp/sst2" ]; }; then
  echo "bench/gpu.sh needs DATA, a root holding stanfordnlp/imdb and stanfordnlp/sst2" \
    "(see bench/README.md, \"GPU figures\")" >&2
  exit 2
fi
OUTDIR="${OUTDIR:-$(mktemp -d -t textlstm-gpu-XXXXXX)}"
mkdir -p "$OUTDIR"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONWARNINGS=ignore

if [ -n "$WHEELS" ]; then
  site="$(mktemp -d -t textlstm-site-XXXXXX)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:$site"
fi

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  DATA="$OUTDIR/tiny-data"
  "$PY" "$ROOT/bench/tiny_mirror.py" "$DATA" --rows 96
  SPEED=(--rows 48 --repeats 1 --no-keras)
  IMDB=(--set train.epochs=1)
  GPUS=1
else
  DEVICE=cuda
  missing="$("$PY" - <<'EOF'
import importlib.util
need = ["torch", "datasets", "pyarrow", "pydantic", "typer", "rich", "safetensors", "sklearn",
        "tomli_w", "tokenizers", "onnx", "onnxscript", "onnxruntime", "matplotlib"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
EOF
)"
  if [ -n "$missing" ]; then
    echo "bench/gpu.sh: this Python lacks: $missing; bring them as wheels (--wheels DIR)" >&2
    exit 2
  fi
  if ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "bench/gpu.sh: torch sees no CUDA device here (for a CPU check: --dry-run)" >&2
    exit 2
  fi
  SPEED=(--repeats 1 --no-keras)
  IMDB=()
  GPUS="$("$PY" -c "import torch; print(torch.cuda.device_count())")"
fi
NPROC=1
[ "$GPUS" -gt 1 ] && NPROC="1,$GPUS"

failed=0
summary="$OUTDIR/summary.txt"
: >"$summary"
step() {  # step NAME CAP_SECONDS COMMAND...: run it under a cap, log it, note its time and status
  local name="$1" cap="$2"
  shift 2
  local start rc
  start="$(date +%s)"
  echo "== $name (cap ${cap} s): $*"
  set +e
  (cd "$ROOT" && timeout "$cap" "$@") 2>&1 | tee "$OUTDIR/$name.log"
  rc="${PIPESTATUS[0]}"
  set -e
  echo "$name: exit $rc, $(($(date +%s) - start)) s" | tee -a "$summary"
  [ "$rc" = 0 ] || failed=1
}

"$PY" -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(),
  '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" \
  | tee -a "$summary"
step speed 250 "$PY" bench/speed.py "$DATA" --device "$DEVICE" "${SPEED[@]}"
step scaling 90 "$PY" bench/scaling.py "$DATA" --recipe recipes/sst2.toml --nproc "$NPROC" \
  --rounds 1 --device "$DEVICE"
step imdb-train 180 "$PY" -m textlstm train recipes/imdb.toml --data-dir "$DATA" \
  --device "$DEVICE" --out "$OUTDIR/runs" ${IMDB[@]+"${IMDB[@]}"}
step imdb-evaluate 50 "$PY" -m textlstm evaluate "$OUTDIR/runs/imdb/latest" --split test \
  --data-dir "$DATA" --device "$DEVICE"
echo "logs and summary in $OUTDIR"
cat "$summary"
exit "$failed"
