#!/usr/bin/env bash
# Scale benchmark (issue 8): 10k, 100k and 1M reference cells, one JSON line per size.
#
#   scripts/bench_scale.sh [OUT.jsonl] [extra options, e.g. --quantization int8 --on-disk]
#
# Equivalent to `cellvec bench scale --sizes 10000,100000,1000000 --json ...` once the command is attached
# to the `bench` group; this calls the click command directly so it works either way. The 1M size takes
# 15-30 minutes on 2 cores: run it under nohup. Stores are kept under $WORK (default ./scale-work).
set -euo pipefail
OUT="${1:-scale.jsonl}"
shift || true
PY="${PYTHON:-python}"
WORK="${WORK:-./scale-work}"
SIZES="${SIZES:-10000,100000,1000000}"
"$PY" -c 'import sys; from annotator._cli._scale_cli import scale_cmd; scale_cmd.main(args=sys.argv[1:], prog_name="cellvec bench scale")' \
    --sizes "$SIZES" --queries 10000 --dim 384 --json --work-dir "$WORK" "$@" | tee "$OUT"
