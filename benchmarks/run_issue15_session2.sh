#!/bin/bash
# Issue 15's second-session figures of BENCHMARKS.md, one after another on a quiet machine:
#   benchmarks/run_issue15_session2.sh
# Runs in .venv-peers (README: "Against the peers"): it holds openvino and nncf for openvino-int8,
# and the peer libraries. Needs out/data/package_readme_sentences.txt (benchmarks/readme_sentences.py).
set -x
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cd "$(dirname "$0")/.."
mkdir -p out/bench2
date
.venv-peers/bin/accelkit env > out/bench2/env.txt 2>&1
rm -rf out/opt-minilm-ov; /usr/bin/time -v .venv-peers/bin/accelkit optimize -w minilm --max-quality-drop 0.01 --time-budget 6m --out out/opt-minilm-ov > out/bench2/opt-minilm-ov.log 2>&1
date
.venv-peers/bin/python benchmarks/peers_minilm.py --threads 2 --repeats 5 --accelkit-model out/opt-minilm-ov/model --json out/bench2/peers_pydoc.json > out/bench2/peers_pydoc.log 2>&1
date
.venv-peers/bin/python benchmarks/peers_minilm.py --threads 2 --repeats 5 --accelkit-model out/opt-minilm-ov/model --text out/data/package_readme_sentences.txt --json out/bench2/peers_readme.json > out/bench2/peers_readme.log 2>&1
date
.venv/bin/accelkit bench --task train --workload gpt-mini --size large --threads 2 --repeats 10 --out out/bench2/train_large.json > out/bench2/train_large.log 2>&1
date
echo ALLDONE
