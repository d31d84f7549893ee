#!/usr/bin/env bash
# acir on architectures outside its zoo and test suite (benchmarks/models/unseen.py), one model at a
# time, at low priority, each run capped at 15 minutes. Per model: OUT/NAME/results.{json,csv} and
# OUT/NAME.log (the table, and any error with its traceback).
#
#   bash benchmarks/unseen_models.sh [NAME ...]                      # run 1: OUT=/tmp/unseen, torch's default threads (2)
#   OMP_NUM_THREADS=1 OUT=/tmp/unseen/t1 bash benchmarks/unseen_models.sh [NAME ...]   # run 2: one thread
#
# What was run (2026-12-02 UTC, on the 2-core CPU machine, beside another engineer's jobs):
#   run 1 (17:56-18:03): bash benchmarks/unseen_models.sh          # the 14 models of ALL below, 2 threads
#   run 2 (18:06-18:11): OMP_NUM_THREADS=1 OUT=/tmp/unseen/t1 bash benchmarks/unseen_models.sh \
#              $ALL t5_small_nocache gptneo_tiny_nocache
#       (with two OpenMP threads and the other jobs' load, single iterations of some models ran 50-80x
#        slower than alone, in eager PyTorch as well, e.g. tied_lm 1.6 s against 0.03 s on one thread,
#        and profiles were distorted with them; run 2's figures are the ones to read)
#   run 3 (18:11-18:15): OMP_NUM_THREADS=1 OUT=/tmp/unseen/t1 bash benchmarks/unseen_models.sh \
#              llama_gc mixtral_tiny weightnorm_cnn fno autocast_mlp unet_small mixtral_tiny_eager fno_real llama_gc_nohook
#   weightnorm_cnn's blocks are ParametrizedConv1d (a class per instance, so not found as repeated):
#     OMP_NUM_THREADS=1 timeout 900 nice -n 19 .venv/bin/acir-bench benchmarks/models/unseen.py:weightnorm_cnn -b 4 \
#       --configs noac,acir-mutwo,checkpoint --budgets =checkpoint,floor --blocks ParametrizedConv1d --iters 2 \
#       --profile-reps 1 -o /tmp/unseen/t1/weightnorm_cnn_blocks -q --traceback
#   models that call torch.utils.checkpoint themselves, against eager PyTorch too:
#     for n in inner_checkpoint_dropout llama_gc_nohook; do OMP_NUM_THREADS=1 timeout 900 nice -n 19 \
#       .venv/bin/acir-bench benchmarks/models/unseen.py:$n -b 4 --configs eager,noac,acir-mutwo --budgets floor \
#       --iters 2 --profile-reps 1 -o /tmp/unseen/t1/${n}_eager -q --traceback; done
#   each model's captured step against eager PyTorch (acir-capture, then acir-run --check):
#     CHECK=1 bash benchmarks/unseen_models.sh vit_small convnext_tiny mobilenet_v3_small efficientnet_b0 swin_t t5_small \
#       roberta_cls distilbert_cls llama_tiny gptneo_tiny lstm_clf gru_clf tied_lm torch_transformer weightnorm_cnn \
#       fno_real autocast_mlp unet_small
#     (per model: OMP_NUM_THREADS=1 nice -n 19 .venv/bin/acir-capture benchmarks/models/unseen.py:NAME -b 4 \
#       -o /tmp/unseen/check/NAME.acir && OMP_NUM_THREADS=1 nice -n 19 .venv/bin/acir-run /tmp/unseen/check/NAME.acir --check)
#     and the same two commands, into /tmp/unseen/gc/, for inner_checkpoint, inner_checkpoint_dropout, llama_gc_nohook
#     (also with --schedule eager and with --optimizer sgd for llama_gc_nohook)
#     and for the scratch factories in /tmp/unseen/gc_variants.py (gc_eager_attn, gc_sdpa_1layer, gc_eager_1layer,
#     gc_sdpa_1layer_nogqa, sdpa_ckpt_causal, sdpa_ckpt_mask), to localise llama_gc_nohook's mismatch
#   diagnosis: acir-opt FILE -p 'profile{reps=1,warmup=1},liveness'; acir-stats (simulated vs measured peak) for
#     lstm_clf and autocast_mlp; acir-capture --schedule eager / --optimizer sgd, acir-run --check for llama_gc_nohook;
#     acir-capture benchmarks/models/unseen.py:mixtral_tiny -b 4 --traceback
# Python API (acir.compile vs the same eager loop on a deep copy, AdamW with 2 groups + LR scheduler, 3 steps):
#   for n in vit_small roberta_cls tied_lm t5_small inner_checkpoint_dropout; do
#       OMP_NUM_THREADS=1 timeout 600 nice -n 19 .venv/bin/python benchmarks/unseen_api_check.py $n 60%; done
#   for b in none 90%; do OMP_NUM_THREADS=1 timeout 600 nice -n 19 .venv/bin/python \
#       benchmarks/unseen_api_check.py inner_checkpoint_dropout $b; done
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/unseen}
mkdir -p "$OUT"
if [[ -n "${CHECK:-}" ]]; then  # capture and acir-run --check each model against eager PyTorch
    mkdir -p "$OUT/check"
    for n in "$@"; do
        OMP_NUM_THREADS=1 timeout 600 nice -n 19 .venv/bin/acir-capture benchmarks/models/unseen.py:$n -b 4 \
            -o "$OUT/check/$n.acir" > "$OUT/check/$n.log" 2>&1 \
          && OMP_NUM_THREADS=1 timeout 600 nice -n 19 .venv/bin/acir-run "$OUT/check/$n.acir" --check \
            >> "$OUT/check/$n.log" 2>&1
        echo "$n rc=$? :: $(grep -E '^check:|error' "$OUT/check/$n.log" | tail -1 | cut -c1-200)"
    done
    exit 0
fi
ALL="vit_small convnext_tiny mobilenet_v3_small efficientnet_b0 swin_t t5_small roberta_cls distilbert_cls
     llama_tiny gptneo_tiny lstm_clf gru_clf tied_lm torch_transformer"
NOBLOCKS="lstm_clf gru_clf unet_small"   # no repeated blocks: torch.utils.checkpoint has nothing to wrap
for NAME in ${@:-$ALL}; do
    if [[ " $NOBLOCKS " == *" $NAME "* ]]; then
        CONFIGS=noac,acir-mutwo; BUDGETS=60%,floor
    else
        CONFIGS=noac,acir-mutwo,checkpoint; BUDGETS==checkpoint,floor
    fi
    echo "== $NAME $(date -u +%T) OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
    ( time timeout 900 nice -n 19 .venv/bin/acir-bench benchmarks/models/unseen.py:$NAME -b 4 \
        --configs $CONFIGS --budgets $BUDGETS --iters 2 --profile-reps 1 -o "$OUT/$NAME" -q --traceback ) \
        > "$OUT/$NAME.log" 2>&1
    echo "   rc=$?"
done
