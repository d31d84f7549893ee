#!/usr/bin/env bash
# The rewrite, measured: for each workload and budget, plan with μ-TWO, rewrite, check the
# step bit for bit against eager PyTorch, and measure peak and latency against the
# un-rewritten graph in the same process (iterations interleaved). Prints a markdown table.
#
# Usage: benchmarks/rewrite_table.sh [OUTDIR] [WORKLOAD...]
#   a WORKLOAD is "NAME|capture flags|budgets", e.g. "resnet152|resnet152 -b 16|80 60 40"
#   (a bare number is a percentage; 2391552484B, 3GiB are bytes, e.g. a smallest reachable peak)
# Latency keeps freed memory in glibc's heap (../shared/TORCH-NOTES.md), as a GPU caching
# allocator would; the setting is printed with each row by acir-run.
set -uo pipefail
out=${1:-out/rewrite-table}
shift || true
mkdir -p "$out"
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
ITERS=${ITERS:-3}
if [ $# -eq 0 ]; then
  set -- "resnet152|resnet152 -b 16|80 60 40" \
         "bert-base|bert-base -b 16 --seq-len 128|80 60 40" \
         "gpt2|gpt2 -b 4 --seq-len 256|80 60 40" \
         "user|examples/user_model.py:make -b 64|80 60 40" \
         "resnet152-b32|resnet152 -b 32|50"
fi
echo "| model | budget | recomputed | budget (MiB) | predicted peak | simulated after rewrite | measured peak | no-AC measured | check | latency no-AC → AC (ms) | overhead (wall) | overhead (CPU time) | rewrite (s) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for w in "$@"; do
  IFS='|' read -r name spec budgets <<< "$w"
  f="$out/$name"
  if [ ! -s "$f.p.acir" ]; then
    acir-capture $spec -o "$f.acir" 2>"$f.capture.log" \
      && acir-opt "$f.acir" -p 'profile{reps=3,warmup=1},liveness' -o "$f.p.acir" 2>"$f.profile.log" \
      || { echo "| $name | - | capture/profile failed: $(tail -1 "$f.profile.log" "$f.capture.log" | tail -1 | cut -c1-120) |"; continue; }
  fi
  for b in $budgets; do
    bspec="$b"; [[ "$b" =~ ^[0-9]+$ ]] && bspec="$b%"   # 60 means 60%; 2391552484B is bytes
    if ! acir-opt "$f.p.acir" -p "mutwo{budget=$bspec},rewrite" -o "$f.$b.acir" --time-passes >"$f.$b.opt.log" 2>&1; then
      echo "| $name | $bspec | $(grep -o 'smallest reachable peak is [0-9]* bytes' "$f.$b.opt.log" | head -1 || tail -1 "$f.$b.opt.log" | cut -c1-120) | | | | | | | | | |"
      continue
    fi
    rw=$(awk '/ rewrite$/ {print $1}' "$f.$b.opt.log")
    acir-run "$f.$b.acir" --check --json >"$f.$b.check.json" 2>"$f.$b.check.log"
    acir-run "$f.$b.acir" --measure --against "$f.p.acir" --iters "$ITERS" --json >"$f.$b.run.json" 2>"$f.$b.run.log"
    python3 - "$f.$b.check.json" "$f.$b.run.json" "$name" "$bspec" "$rw" <<'EOF'
import json, sys
M = 2**20
try:
    c = json.load(open(sys.argv[1]))
except Exception:
    c = {"check": "failed to run"}
try:
    r = json.load(open(sys.argv[2]))
except Exception:
    print(f"| {sys.argv[3]} | {sys.argv[4]} | measure failed |"); sys.exit()
check = "bit-identical" if c.get("check") == "ok" and c.get("max_abs_diff") == 0 else f"{c.get('check')} {c.get('max_abs_diff', '')}"
within = "≤ budget" if r["peak_bytes"] <= r["budget_bytes"] else "OVER budget"
print(f"| {sys.argv[3]} | {sys.argv[4]} | {r['recomputed']} | {r['budget_bytes']/M:.1f} | {r['predicted_peak_bytes']/M:.1f} "
      f"| {r['simulated_peak_bytes']/M:.1f} | {r['peak_bytes']/M:.1f} ({within}) | {r['against_peak_bytes']/M:.1f} "
      f"| {check} | {r['against_latency_s']*1e3:.0f} → {r['latency_s']*1e3:.0f} | {100*r['latency_change']:+.1f}% "
      f"| {100*r['cpu_change']:+.1f}% | {sys.argv[5]} |")
EOF
  done
done
