#!/bin/bash
# The 2026-12-06 (evening) figures of BENCHMARKS.md for issues 24-27, one after another on a quiet
# machine (each uses every core; never beside tests or another benchmark):
#   benchmarks/run_session_figures.sh [STEP...]      # steps: env corpus generate train minilm [train-large]
# Needs .venv (make install) and .venv-peers (make peers). Logs: out/bench/session/*.log
set -x
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cd "$(dirname "$0")/.."
L=out/bench/session; mkdir -p "$L"
STEPS=${*:-env corpus generate train minilm}
GEN_VARIANTS=${GEN_VARIANTS:-bf16-cast,int8-weight-only,int8-dynamic,static-cache-compile,bf16-cast+static-cache-compile,int8-weight-only+static-cache-compile,speculative,self-speculative,speculative-distilled}
for step in $STEPS; do
  date
  case $step in
    env) .venv/bin/accelkit env > "$L/env.txt" 2>&1 ;;
    # issue 25: the shipped openvino-int8 folder (what optimize chose on this CPU kind) over 100k sentences
    corpus) .venv/bin/python benchmarks/run_corpus.py --limit 100000 --plan openvino-int8 \
              --modes accelkit-ray,accelkit-local,st-ray,st-multi-process \
              --json "$L/run_corpus.json" > "$L/run_corpus.log" 2>&1 ;;
    # issue 24: retrains the target and the draft (the cache from an earlier run may be under-trained)
    generate) rm -rf "${ACCELKIT_CACHE:-$HOME/.cache/accelkit}/generate-llama"
              .venv/bin/python benchmarks/generate_llama.py --batch-sizes 1,8 --prompts 64 --new-tokens 64 \
                --repeats 3 --train-minutes 6 --variants "$GEN_VARIANTS" > "$L/generate.log" 2>&1 ;;
    # issue 26: the user's BERT-style classifier and Llama-style LM against the transformers Trainer
    train) .venv/bin/python benchmarks/train_user_model.py --threads 2 --repeats 5 --out out/bench/train-user \
             > "$L/train_user.log" 2>&1 ;;
    # issue 27: accelkit's variants and the peers (sentence-transformers backends, optimum-intel) in one table
    minilm) ACCELKIT_THREADS=2 .venv-peers/bin/accelkit bench -w minilm --batch-size 32 --repeats 5 \
              --variants bf16-cast,openvino,openvino-bf16,openvino-int8,int8-aware,int8-aware+parallel-streams \
              --peers --max-quality-drop 0.01 --min-quality cosine_min=0.97 --wide \
              --out "$L/minilm_peers.json" > "$L/minilm_peers.log" 2>&1 ;;
    # issue 26: gpt-mini --size large, every training variant against fp32 eager, with MFU
    train-large) .venv/bin/accelkit bench --task train --workload gpt-mini --size large --threads 2 --repeats 10 \
                   --out "$L/train_large.json" > "$L/train_large.log" 2>&1 ;;
  esac
done
date
echo ALLDONE
