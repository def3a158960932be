#!/usr/bin/env bash
# A biologist's first day with cellvec (issue 16), as a script: Voigt retina, 80% reference / 20% query.
#
#   scripts/first_day.sh [--keep] [--from-store STORE]
#
# Builds a reference from the 80% split (stratified by cluster_label, seed 0: 4,911 cells), annotates the
# 20% split (1,228 cells) twice with --out, --csv and --explain (the second run must embed 0 genes) and
# once more for the labels alone, searches genes and cells, lists and shows the reference, and prints
# each step's wall time. It fails on a non-zero exit or a traceback in any step.
#
# Environment:
#   CELLVEC_DATA_DIR         the data folder (default: what cellvec finds itself, e.g. ../shared/data)
#   CELLVEC_CMD              the command to run (default: .venv/bin/cellvec of this checkout)
#   CELLVEC_PYTHON           the interpreter for the split (default: .venv/bin/python of this checkout)
#   CELLVEC_FIRST_DAY_STORE  start from a copy of this store (same as --from-store): its cached gene
#                            vectors spare the build the MiniLM embedding of the panel (minutes on a CPU)
#
# Everything is written into one folder under $TMPDIR, named at the start and removed at the end
# (kept with --keep). The store given with --from-store is copied, never written.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEEP=0
FROM_STORE="${CELLVEC_FIRST_DAY_STORE:-}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --keep) KEEP=1; shift ;;
        --from-store) FROM_STORE="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "error: unknown option $1; use --keep or --from-store STORE" >&2; exit 2 ;;
    esac
done
read -r -a CELLVEC <<< "${CELLVEC_CMD:-$ROOT/.venv/bin/cellvec}"
PYTHON="${CELLVEC_PYTHON:-$ROOT/.venv/bin/python}"
if [[ -z "${CELLVEC_CMD:-}" && ! -x "${CELLVEC[0]}" ]]; then
    echo "error: ${CELLVEC[0]} is missing; create the README's venv first (python3 -m venv .venv && .venv/bin/pip install -e '.[dev,bench]') or set CELLVEC_CMD" >&2
    exit 2
fi
DATA="${CELLVEC_DATA_DIR:-$ROOT/../shared/data}"
VOIGT="$DATA/datasets/voigt2019_retina.h5ad"
if [[ ! -f "$VOIGT" ]]; then
    echo "error: $VOIGT is missing; set CELLVEC_DATA_DIR to the data folder" >&2
    exit 2
fi
export CELLVEC_DATA_DIR="$DATA"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cellvec-first-day.XXXXXX")"
STORE="$WORK/store"
cleanup() {
    if [[ $KEEP -eq 1 ]]; then
        echo "kept $WORK (remove it with rm -rf $WORK)"
    else
        rm -rf "$WORK"
        echo "removed $WORK"
    fi
}
trap cleanup EXIT
echo "working folder: $WORK (store: $STORE)"

declare -a NAMES=() TIMES=()
step() {  # step NAME COMMAND...: run, time, keep its output in $WORK/NAME.log, fail on an error or traceback
    local name="$1"; shift
    local log="$WORK/${name//[^A-Za-z0-9]/_}.log" t0 t1 rc=0
    t0=$(date +%s.%N)
    "$@" > "$log.out" 2> "$log" || rc=$?
    t1=$(date +%s.%N)
    NAMES+=("$name"); TIMES+=("$(echo "$t1 - $t0" | bc)")
    if [[ $rc -ne 0 ]] || grep -q "Traceback" "$log" "$log.out"; then
        echo "FAILED: $name (exit $rc); its stderr:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    printf '%-28s %7.1f s\n' "$name" "${TIMES[-1]}"
}

if [[ -n "$FROM_STORE" ]]; then
    step "copy store" cp -a "$FROM_STORE" "$STORE"
fi
step "split 80-20" "$PYTHON" "$ROOT/scripts/split_h5ad.py" "$VOIGT" cluster_label "$WORK"
step "reference build" "${CELLVEC[@]}" reference build --store "$STORE" --reference voigt \
    --adata "$WORK/ref.h5ad" --label-key cluster_label
step "annotate 1" "${CELLVEC[@]}" annotate --store "$STORE" --reference voigt --adata "$WORK/query.h5ad" \
    --out "$WORK/annotated.h5ad" --csv "$WORK/labels.csv" --explain
step "annotate 2" "${CELLVEC[@]}" annotate --store "$STORE" --reference voigt --adata "$WORK/query.h5ad" \
    --out "$WORK/annotated2.h5ad" --csv "$WORK/labels2.csv" --explain --json
embedded=$("$PYTHON" -c 'import json, sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["embedded_genes"])' \
    "$WORK/annotate_2.log.out")
if [[ "$embedded" != "0" ]]; then
    echo "FAILED: the second annotate embedded $embedded genes (expected 0)" >&2
    exit 1
fi
# The labels alone (no --out, --csv or --explain): what the ≥ 1,000 cells/s target of issue 16 is about.
step "annotate 3 (labels)" "${CELLVEC[@]}" annotate --store "$STORE" --reference voigt \
    --adata "$WORK/query.h5ad" --json
cell=$(sed -n '2p' "$WORK/labels.csv" | cut -d, -f1)
step "search genes" "${CELLVEC[@]}" search genes --store "$STORE" "axon regeneration after optic nerve injury"
step "search cells" "${CELLVEC[@]}" search cells --store "$STORE" --reference voigt --adata "$WORK/query.h5ad" \
    --cell "$cell"
step "reference list" "${CELLVEC[@]}" reference list --store "$STORE"
step "reference info" "${CELLVEC[@]}" reference info --store "$STORE" --reference voigt

echo
"$PYTHON" - "$WORK/annotate_2.log.out" "${TIMES[-6]}" "$WORK/annotate_3__labels_.log.out" "${TIMES[-5]}" <<'PY'
import json
import sys

for what, out, wall in (("second annotate (--out --csv --explain)", sys.argv[1], sys.argv[2]),
                        ("third annotate (labels only)", sys.argv[3], sys.argv[4])):
    d = json.loads(open(out).read().splitlines()[-1])
    wall = float(wall)
    n, step = d["n_cells"], d["seconds"]["annotate"]
    print(f"{what}: {n} cells; annotate step {step:.2f} s ({n / step:.0f} cells/s); whole command "
          f"{wall:.2f} s ({n / wall:.0f} cells/s); embedded {d['embedded_genes']} genes")
PY
echo "first annotate said:"
sed 's/^/  /' "$WORK/annotate_1.log.out" | tail -4
echo "all ${#NAMES[@]} steps passed; load average $(cut -d' ' -f1 /proc/loadavg)"
