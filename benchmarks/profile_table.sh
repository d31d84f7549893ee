#!/usr/bin/env bash
# Simulated vs measured peak, and profiled node time vs iteration time, for the zoo.
# Usage: benchmarks/profile_table.sh [OUTDIR]   (prints a markdown table; artifacts kept in OUTDIR)
# CPU times depend on glibc malloc; this script keeps freed memory in the heap (TORCH-NOTES.md).
set -euo pipefail
out=${1:-out/profile-table}
mkdir -p "$out"
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
echo "| model | batch | nodes | simulated peak (MiB) | measured peak (MiB) | error | node times / iteration |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
while read -r model batch extra; do
  [ -z "$model" ] && continue
  f="$out/${model}_b${batch}"
  acir-capture "$model" -b "$batch" $extra -o "$f.acir" 2>/dev/null
  acir-opt "$f.acir" -p 'profile{reps=3,warmup=1},liveness' -o "$f.p.acir" 2>/dev/null
  acir-stats "$f.p.acir" --json > "$f.json" 2>/dev/null
  python3 - "$f.json" "$model" "$batch" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); m = sys.argv[2]; b = sys.argv[3]
s, me = d["simulated_peak_bytes"], d["measured_peak_bytes"]
nodes = sum(d["nodes_by_region"].values())
print(f"| {m} | {b} | {nodes} | {s/2**20:.1f} | {me/2**20:.1f} | {abs(s-me)/me*100:.3f}% | {d['profiled_over_iteration']:.3f} |")
PY
done <<'LIST'
mlp 4
mlp 64
resnet18 4
resnet18 16
resnet50 4
resnet50 8
resnet152 4
resnet152 8
bert-tiny 4 --seq-len 128
bert-tiny 16 --seq-len 128
bert-base 4 --seq-len 128
bert-base 8 --seq-len 128
gpt2-tiny 4 --seq-len 128
gpt2-tiny 16 --seq-len 128
gpt2 2 --seq-len 128
gpt2 4 --seq-len 128
LIST
