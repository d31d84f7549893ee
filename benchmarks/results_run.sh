#!/usr/bin/env bash
# The one run behind docs/results.md: ResNet-152 (224 px) and BERT-base (sequence 128), no AC,
# torch.utils.checkpoint around every block, and acir at checkpoint's measured peak, at every
# batch size; at one batch size per model, a Pareto sweep as well (acir from its floor up to
# 75%, and at the memory-budget partitioner's measured peak). About 75 minutes on the 2-core
# CPU machine, with nothing else running.
#
#   bash benchmarks/results_run.sh [OUT]     # OUT defaults to docs/results/run
#   python benchmarks/results_tables.py OUT  # the page's tables, from what the run wrote
#
# Each acir-bench writes its results after every model and batch size, and --resume takes a
# stopped run up where it stopped: running this script again measures only what is missing.
set -euo pipefail
OUT=${1:-docs/results/run}
BENCH=${ACIR_BENCH:-acir-bench}
mkdir -p "$OUT"
common=(--iters 2 --profile-reps 2 --resume)
main=(--configs noac,acir-mutwo,checkpoint --budgets =checkpoint)
sweep=(--configs noac,acir-mutwo,checkpoint,torch-budget --torch-budgets 0.5
       --budgets floor,25%,50%,75%,=checkpoint,=torch-budget-0.5)
log() { echo "results_run: $(date -u +%H:%M:%S) $*" >&2; }

log "resnet152 b4,16,32"
$BENCH resnet152 -b 4,16,32 "${main[@]}" "${common[@]}" -o "$OUT/resnet152" 2>>"$OUT/run.log"
log "resnet152 b8 sweep"
$BENCH resnet152 -b 8 "${sweep[@]}" "${common[@]}" -o "$OUT/resnet152-sweep" 2>>"$OUT/run.log"
log "bert-base b8,32"
$BENCH bert-base --seq-len 128 -b 8,32 "${main[@]}" "${common[@]}" -o "$OUT/bert-base" 2>>"$OUT/run.log"
log "bert-base b16 sweep"
$BENCH bert-base --seq-len 128 -b 16 "${sweep[@]}" "${common[@]}" -o "$OUT/bert-base-sweep" 2>>"$OUT/run.log"
log "done"
