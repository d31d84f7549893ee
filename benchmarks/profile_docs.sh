#!/usr/bin/env bash
# The CSVs and memory plots of docs/profile.md: ResNet-152 (batch 8) and BERT-base (batch 8, seq 128).
set -euo pipefail
out=${1:-out/profile-docs}
mkdir -p "$out" docs/img
acir-capture resnet152 -b 8 -o "$out/r152.acir"
acir-opt "$out/r152.acir" -p 'profile,liveness' -o "$out/r152.p.acir"
acir-stats "$out/r152.p.acir" -o "$out/r152" --plot docs/img/resnet152-b8-memory.png | tee "$out/r152.txt"
acir-capture bert-base -b 8 --seq-len 128 -o "$out/bert.acir"
acir-opt "$out/bert.acir" -p 'profile,liveness' -o "$out/bert.p.acir"
acir-stats "$out/bert.p.acir" -o "$out/bert" --plot docs/img/bert-base-b8-memory.png | tee "$out/bert.txt"
