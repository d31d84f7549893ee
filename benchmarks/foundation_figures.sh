#!/usr/bin/env bash
# Capture time, node count and artifact size per model; the round trips; the check against eager.
# Usage: benchmarks/foundation_figures.sh [OUTDIR]   (one line per model)
set -u
out=${1:-out/foundation}
mkdir -p "$out"
for spec in "mlp -b 2" "resnet18 -b 2 --image-size 64" "resnet152 -b 2" "bert-tiny -b 2 --seq-len 32" \
            "bert-base -b 2 --seq-len 64" "gpt2-tiny -b 2 --seq-len 32" "examples/user_model.py:make -b 8"; do
  name=$(basename "${spec%% *}" | tr ':' '_'); f="$out/$name"
  acir-capture $spec -o "$f.acir" 2> "$f.capture.log"
  acir-capture $spec -o "$f.again.acir" 2>/dev/null; cmp -s "$f.acir" "$f.again.acir" && same=yes || same=NO
  acir-opt "$f.acir" -p '' -o "$f.same.acir" && cmp -s "$f.acir" "$f.same.acir" && rt1=yes || rt1=NO
  acir-opt "$f.acir" --emit=text -o "$f.txt" && acir-opt "$f.txt" -o "$f.back.acir" && cmp -s "$f.acir" "$f.back.acir" && rt2=yes || rt2=NO
  acir-opt "$f.back.acir" --emit=text -o "$f.back.txt" && cmp -s "$f.txt" "$f.back.txt" && rt3=yes || rt3=NO
  acir-run "$f.acir" --check --json > "$f.run.json" 2>/dev/null
  echo "$name | $(grep -o '[0-9]* nodes' "$f.capture.log" | head -1) | $(stat -c %s "$f.acir") B | $(grep -o 'in [0-9.]* s' "$f.capture.log") | recapture identical: $same | opt -p '': $rt1 | bin-text-bin: $rt2 | text-bin-text: $rt3 | $(python3 -c "import json; d=json.load(open('$f.run.json')); print('check', d['check'], 'max_abs_diff', d['max_abs_diff'], 'tensors', d['compared'])")"
done
/usr/bin/time -f "%e s wall, max RSS %M KiB" acir-capture resnet152 -b 64 -o "$out/r152_b64.acir" 2>&1 | tail -2
/usr/bin/time -f "import torch alone: max RSS %M KiB" python3 -c "import torch" 2>&1 | tail -1
