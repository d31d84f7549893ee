#!/usr/bin/env bash
# μ-TWO against the optimum (and the baselines) at 80/60/40% on ResNet-152 (b16) and BERT-base (b16, s128).
# Usage: benchmarks/planner_table.sh [OUTDIR]   (prints a markdown table; predictions of the simulator)
set -euo pipefail
out=${1:-out/planner-table}
mkdir -p "$out"
echo "| model | budget | planner | budget (MiB) | predicted peak (MiB) | predicted recompute (s) | recomputed | solve (s) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for spec in "resnet152 -b 16" "bert-base -b 16 --seq-len 128"; do
  name=${spec%% *}; f="$out/$name"
  acir-capture $spec -o "$f.acir" 2>/dev/null
  acir-opt "$f.acir" -p 'profile{reps=3,warmup=1},liveness' -o "$f.p.acir" 2>/dev/null
  for b in 80 60 40; do
    for pname in mutwo optimal; do
      extra=""; [ "$pname" = optimal ] && extra=",time-limit=60"
      if acir-opt "$f.p.acir" -p "${pname}{budget=$b%$extra}" -o "$f.$pname.$b.acir" > "$f.$pname.$b.log" 2>&1; then
        acir-stats "$f.$pname.$b.acir" --json 2>/dev/null | python3 -c "
import json, sys; p = json.load(sys.stdin)['plan']; M = 2**20
print(f\"| $name | $b% | $pname | {p['budget_bytes']/M:.1f} | {p['predicted_peak_bytes']/M:.1f} | {p['predicted_recompute_s']:.3f} | {p['recomputed']} | {p['solve_s']:.3f} |\")"
      else
        echo "| $name | $b% | $pname | - | $(tail -1 "$f.$pname.$b.log" | cut -c1-160) | | | |"
      fi
    done
  done
done
